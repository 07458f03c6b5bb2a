"""ASGI entry point: the WebSocket side (``/ws/sales/<id>/``), served by uvicorn.

HTTP also works here (Django's ASGI handler) but production sends HTTP to the WSGI servers:
Django's ASGI path measured 3-5x slower on this kind of machine (see DESIGN.md).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flashsale_project.settings.production")

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from sales.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(URLRouter(websocket_urlpatterns)),
    }
)
