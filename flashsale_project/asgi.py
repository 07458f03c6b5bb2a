"""ASGI entry point: the WebSocket side (``/ws/sales/<id>/``, the console's
``/ws/admin/sales/<id>/live/``), served by uvicorn.

HTTP also works here (Django's ASGI handler) but production sends HTTP to the WSGI servers:
Django's ASGI path measured 3-5x slower on this kind of machine (docs/benchmark.md, "The
first probe").
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flashsale_project.settings.production")

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402

from wsdoor.console import console_lifespan  # noqa: E402
from wsdoor.hub import ws_process_prepare  # noqa: E402
from wsdoor.routing import websocket_application  # noqa: E402

# One socket is one open file: the process takes what the hard limit allows (docs/websockets.md).
ws_process_prepare()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Checks the page's Origin against ALLOWED_HOSTS itself (wsdoor.consumers, wsdoor.console).
        "websocket": websocket_application,
        # The operator console's recorder runs from the process's start (wsdoor.console).
        "lifespan": console_lifespan,
    }
)
