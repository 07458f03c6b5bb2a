"""The ws process's WebSocket protocol for uvicorn: ``uvicorn --ws wsdoor.protocol:ListenerProtocol``.

uvicorn's ``websockets-sansio`` protocol, trimmed for 15,000 sockets that only listen
(docs/websockets.md has the measurements):

- after the handshake it lets go of what the handshake parsed (the request and response
  and their headers, the scope's header list), which a browser's cookies and user agent
  make the largest part of an idle socket;
- its inbox is a list and one waiter instead of an ``asyncio.Queue`` (four deques and an
  event per socket), since a socket that only listens receives a message or two in its life;
  its flow-control flag is a boolean and a list made only while someone waits, not an
  ``asyncio.Event`` with its deque.

Everything else, the handshake, keepalive pings, the closing handshake and the ASGI
interface, is uvicorn's. The rooms of ``wsdoor.hub`` write finished frames to its
``transport`` (``FrameSocket``). This module imports nothing of Django: uvicorn loads it
before the application.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


class Inbox:
    """What ``asyncio.Queue`` does for uvicorn's protocol (``put_nowait``, ``get``,
    ``empty``), unbounded as uvicorn's is, with one waiter: only the app's task reads it."""

    __slots__ = ("items", "waiter")

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        self.items.append(item)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Any:
        while not self.items:
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        return self.items.pop(0)

    def empty(self) -> bool:
        return not self.items


class Writable:
    """What ``asyncio.Event`` does for uvicorn's flow control (``set``, ``clear``,
    ``is_set``, ``wait``), without a deque of waiters per socket."""

    __slots__ = ("flag", "waiters")

    def __init__(self) -> None:
        self.flag = True
        self.waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self.flag

    def set(self) -> None:
        self.flag = True
        waiters, self.waiters = self.waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self.flag = False

    async def wait(self) -> None:
        if self.flag:
            return
        waiter = asyncio.get_running_loop().create_future()
        if self.waiters is None:
            self.waiters = []
        self.waiters.append(waiter)
        await waiter


class ListenerProtocol(WebSocketsSansIOProtocol):
    """uvicorn's ``websockets-sansio`` protocol with a light inbox that forgets the
    handshake once it is done."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = Inbox()  # type: ignore[assignment]
        self.writable = Writable()  # type: ignore[assignment]

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept" and self.handshake_complete and not self.close_sent:
            # Read only while answering the handshake (uvicorn 0.54), never after. The
            # request's headers are emptied in place: websockets' parser keeps the request.
            self.request.headers.clear()
            self.response.headers.clear()
            self.request = None  # type: ignore[assignment]
            self.response = None  # type: ignore[assignment]
            self.scope["headers"] = []
