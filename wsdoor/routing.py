"""The ws process's WebSocket routes: the storefront's ``/ws/sales/<id>/`` (a plain ASGI
application, ``wsdoor.consumers``, that answers every other path with a close, not an HTTP
error) and, under ``/ws/admin/``, the operator console's feed (``wsdoor.console``)."""

from typing import Any

from .console import CONSOLE_PATH_PREFIX, console_application
from .consumers import sale_socket


async def websocket_application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["path"].startswith(CONSOLE_PATH_PREFIX):
        await console_application(scope, receive, send)
    else:
        await sale_socket(scope, receive, send)
