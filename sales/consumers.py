"""The storefront's WebSocket, ``/ws/sales/<id>/`` (DESIGN.md, "WebSocket contract").

A thin adapter: the socket joins the sale's room in this process's ``LiveHub`` (see
``sales.live`` for the fan-out and why it does not use channel-layer groups), which sends
``hello`` and then every live message. Clients only listen; what they send is ignored.
"""

from __future__ import annotations

import logging
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.metrics import WS_CONNECTIONS

from .live import live_hub

logger = logging.getLogger(__name__)

NO_SUCH_SALE = 4404
"""Close code for an unknown sale: the page stops reconnecting and shows what it has."""
TRY_AGAIN_LATER = 1013


class SaleLiveConsumer(AsyncWebsocketConsumer):
    # No channel layer: a per-connection inbox in Redis is what ``sales.live`` avoids.
    channel_layer_alias = "storefront-sockets-use-no-channel-layer"

    sale_id: int
    counted = False

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels closes stale database connections (a thread hop) before every handler;
        # this consumer reads the database only through ``database_sync_to_async``, which
        # does that itself, so 2,000 sockets connecting cost no 2,000 thread hops.
        handler = getattr(self, message["type"].replace(".", "_"), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self) -> None:
        self.sale_id = int(self.scope["url_route"]["kwargs"]["sale_id"])
        await self.accept()
        WS_CONNECTIONS.inc()
        self.counted = True
        try:
            joined = await live_hub().join(self.sale_id, self, self.live_send)
        except (RedisConnectionError, RedisTimeoutError, OSError) as error:
            # The page polls the REST API meanwhile and reconnects with backoff.
            logger.warning("sale %s socket refused: Redis unavailable (%s)", self.sale_id, error)
            await self.close(code=TRY_AGAIN_LATER)
            return
        if not joined:
            await self.close(code=NO_SUCH_SALE)

    async def disconnect(self, code: int) -> None:
        if self.counted:
            self.counted = False
            WS_CONNECTIONS.dec()
            live_hub().leave(self.sale_id, self)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        return None

    async def live_send(self, text: str) -> None:
        await self.send(text_data=text)
