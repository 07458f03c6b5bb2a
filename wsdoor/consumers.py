"""The storefront's WebSocket, ``/ws/sales/<id>/`` (docs/design.md, "The WebSocket").

A plain ASGI application, not a Channels consumer: a socket here only listens, and the
consumer's machinery (a dispatch loop, a task per receive, a consumer object) was most of what
each of 15,000 sockets cost a process (docs/websockets.md). The socket joins its sale's room
in this process's ``LiveHub`` (``wsdoor.hub``), which sends ``hello`` and then every live
message; what a client sends is read and ignored.

A page from another site is refused before the handshake (HTTP 403, as Channels' origin
check did). Every other refusal is a WebSocket close after the handshake, never an HTTP
error, so a page sees its code, from the transports' one table (``core.errors``): ``4404``
(``NotFound``) for a path that names no sale, ``1013`` (``Unavailable``: try again later)
when the process is full, the client's address holds ``WS_MAX_CONNECTIONS_PER_IP`` sockets,
or Redis (or, for a sale not loaded into Redis yet, PostgreSQL) is away.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlparse

from channels.security.websocket import AllowedHostsOriginValidator, OriginValidator

from core.errors import DEPENDENCY_ERRORS, Unavailable
from core.metrics import WS_CONNECTIONS
from sales.selectors import UnknownSale

from .hub import live_hub

logger = logging.getLogger(__name__)

NO_SUCH_SALE = UnknownSale().close_code
"""An unknown sale: the page stops reconnecting and shows what it has."""
TRY_AGAIN_LATER = Unavailable().close_code
_AWAY: tuple[type[BaseException], ...] = (*DEPENDENCY_ERRORS, Unavailable, OSError)
"""Redis (or, for a sale not loaded into Redis yet, PostgreSQL) cannot answer the join."""
SALE_SOCKET_PATH = re.compile(r"/ws/sales/(?P<sale_id>[0-9]{1,18})/")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@functools.cache
def _origins() -> OriginValidator:
    """Channels' check of a page's ``Origin`` against ``ALLOWED_HOSTS``, made once."""
    return AllowedHostsOriginValidator(None)


def _origin_allowed(scope: Scope) -> bool:
    origin = None
    for name, value in scope["headers"]:
        if name == b"origin":
            with contextlib.suppress(UnicodeDecodeError):
                origin = urlparse(value.decode("latin1"))
    return bool(_origins().valid_origin(origin))


async def _refuse(send: Send, code: int, reason: str) -> None:
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": code, "reason": reason})


async def sale_socket(scope: Scope, receive: Receive, send: Send) -> None:
    """One page's live feed of one sale: the whole life of the socket in one coroutine
    (each frame an idle socket keeps alive is memory, times 15,000)."""
    if (await receive())["type"] != "websocket.connect":
        return
    if not _origin_allowed(scope):
        # Before the handshake, as Channels' origin check does: the page gets HTTP 403.
        await send({"type": "websocket.close"})
        return
    match = SALE_SOCKET_PATH.fullmatch(scope["path"])
    if match is None:
        await _refuse(send, NO_SUCH_SALE, "no such sale")
        return
    sale_id = int(match["sale_id"])
    hub = live_hub()
    client = scope.get("client")
    address = client[0] if client else ""
    refusal = hub.admit(address)
    if refusal is not None:
        await _refuse(send, TRY_AGAIN_LATER, refusal)
        return
    listener = None
    try:
        await send({"type": "websocket.accept"})
        WS_CONNECTIONS.inc()
        listener = hub.socket_for(send)
        try:
            joined = await hub.join(sale_id, listener)
        except _AWAY as error:
            # A sale not in Redis yet is read from PostgreSQL. The page polls the REST API
            # meanwhile and reconnects with backoff.
            logger.warning("sale %s socket refused: Redis or PostgreSQL unavailable (%s)", sale_id, error)
            await send({"type": "websocket.close", "code": TRY_AGAIN_LATER})
            return
        if not joined:
            await send({"type": "websocket.close", "code": NO_SUCH_SALE})
            return
        while (await receive())["type"] != "websocket.disconnect":
            pass  # A page only listens; what it sends is read and dropped.
    finally:
        if listener is not None:
            hub.leave(sale_id, listener)
            WS_CONNECTIONS.dec()
        hub.release(address)
