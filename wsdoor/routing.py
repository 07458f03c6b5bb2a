"""The ws process's one WebSocket route, ``/ws/sales/<id>/``: a plain ASGI application
(``wsdoor.consumers``) that answers every other path with a close, not an HTTP error."""

from .consumers import sale_socket

websocket_application = sale_socket
