"""WSGI entry point: the HTTP side (storefront, REST API, admin, /metrics), served by granian."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flashsale_project.settings.production")

django_application = get_wsgi_application()

from core import connection_cap  # noqa: E402 - the settings are set up by now
from core.client_address import EdgeHeaders  # noqa: E402
from core.events import subscription  # noqa: E402
from core.hot_path import HotPathRouter  # noqa: E402
from core.request_bodies import RequestBodies  # noqa: E402
from flashsale_project.urls import hot_path_urlpatterns  # noqa: E402

# Every body is read first, within a deadline, so a slow client holds no request thread
# (core/request_bodies.py); then a token bearer's purchase and challenge skip Django's
# middleware (core/hot_path.py). The balancer's headers are judged and the request id set
# before either (core/client_address.py), so a refusal of a body carries the id too.
application = EdgeHeaders(RequestBodies(HotPathRouter(django_application, hot_path_urlpatterns)))

# The process's one event subscription (winners, sold-out markers, revocations) starts with
# it, so the first requests find it live instead of asking Redis.
subscription.ensure_running()

# Connections one address holds past WEB_MAX_CONNECTIONS_PER_IP are closed by a thread of the
# process's own, off every request's path (core/connection_cap.py).
connection_cap.from_settings().start()
