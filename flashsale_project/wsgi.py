"""WSGI entry point: the HTTP side (storefront, REST API, admin, /metrics), served by granian."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flashsale_project.settings.production")

application = get_wsgi_application()
