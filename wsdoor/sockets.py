"""What a room writes to: one socket, as the server lets it be written.

A message is encoded once (``Outgoing``: the JSON text and the finished WebSocket frame) and
handed to every socket as the same bytes. A socket is a ``FrameSocket`` where the server lets
the room write the frame to the connection's transport itself (uvicorn), else an
``AsgiSocket`` (one ASGI ``send`` per socket, queued). ``push`` never waits; a socket with
unsent bytes tells its ``Backlog`` (the hub), which cuts off a reader that stops reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

SLOW_READER = 1013
"""Close code for a socket cut off for not reading (where the server lets a close through)."""

AsgiSend = Callable[[dict[str, Any]], Awaitable[None]]


class Backlog(Protocol):
    """Who watches sockets with unsent bytes (the hub)."""

    send_buffer_bytes: int
    send_timeout: float

    def backlogged(self, listener: LiveSocket) -> None: ...


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One broadcast, encoded once: the JSON text and the WebSocket frame that carries it
    (server to client: unmasked, one final text frame; RFC 6455 section 5.2)."""

    text: str
    frame: bytes

    @classmethod
    def of(cls, text: str) -> Outgoing:
        payload = text.encode()
        size = len(payload)
        if size < 126:
            header = bytes((0x81, size))
        elif size < 65536:
            header = struct.pack("!BBH", 0x81, 126, size)
        else:
            header = struct.pack("!BBQ", 0x81, 127, size)
        return cls(text=text, frame=header + payload)


class LiveSocket(Protocol):
    """What a room holds for each socket: ``push`` never waits."""

    def push(self, message: Outgoing) -> None: ...

    def unsent_bytes(self) -> int: ...

    def drop(self) -> None: ...


class FrameSocket:
    """A socket whose server lets the room write finished frames to the connection's
    transport: uvicorn's ``websockets-sansio`` and ``wsproto`` protocols, whose ASGI ``send``
    is a method of the connection's ``asyncio.Protocol`` (``transport``, ``close_sent``).
    One ``transport.write`` per socket, no coroutine, no per-socket encoding.

    The handshake and the close still go through ASGI ``send``, so the server's protocol
    state stays its own; data frames are all a server may add between them.
    """

    __slots__ = ("connection", "hub", "transport")

    def __init__(self, hub: Backlog, connection: Any, transport: asyncio.WriteTransport) -> None:
        self.hub = hub
        self.connection = connection
        self.transport = transport
        # Bounded in the kernel as well: a reader that stops reading fills this much, then
        # the process's buffer, which the hub watches.
        raw = transport.get_extra_info("socket")
        if raw is not None:
            with contextlib.suppress(OSError, AttributeError):
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, hub.send_buffer_bytes)

    @classmethod
    def for_send(cls, hub: Backlog, send: AsgiSend) -> FrameSocket | None:
        connection = getattr(send, "__self__", None)
        transport = getattr(connection, "transport", None)
        if transport is None or not isinstance(getattr(connection, "close_sent", None), bool):
            return None
        if not all(hasattr(transport, name) for name in ("write", "get_write_buffer_size", "is_closing", "abort")):
            return None
        return cls(hub, connection, transport)

    def push(self, message: Outgoing) -> None:
        transport = self.transport
        if self.connection.close_sent or transport.is_closing():
            return  # Closing: its disconnect is on the way and takes it out of the room.
        transport.write(message.frame)
        if transport.get_write_buffer_size():
            self.hub.backlogged(self)

    def unsent_bytes(self) -> int:
        return int(self.transport.get_write_buffer_size())

    def drop(self) -> None:
        # Abort, not close: a close frame would queue behind what the reader never took.
        self.transport.abort()


class AsgiSocket:
    """Any other server: one ASGI ``send`` per message, from a task that exists only
    while the socket has messages waiting; at most ``WS_SEND_BUFFER_BYTES`` of them."""

    __slots__ = ("dropped", "hub", "send", "waiting", "waiting_bytes", "writer")

    def __init__(self, hub: Backlog, send: AsgiSend) -> None:
        self.hub = hub
        self.send = send
        self.waiting: deque[Outgoing] = deque()
        self.waiting_bytes = 0
        self.writer: asyncio.Task[None] | None = None
        self.dropped = False

    def push(self, message: Outgoing) -> None:
        if self.dropped:
            return
        self.waiting.append(message)
        self.waiting_bytes += len(message.frame)
        if self.writer is None:
            self.writer = asyncio.create_task(self._write())
        self.hub.backlogged(self)

    async def _write(self) -> None:
        try:
            while self.waiting:
                message = self.waiting[0]
                await self.send({"type": "websocket.send", "text": message.text})
                self.waiting.popleft()
                self.waiting_bytes -= len(message.frame)
        except Exception:  # noqa: BLE001 - a client that went away must not stop the others
            self.waiting.clear()
            self.waiting_bytes = 0
        finally:
            self.writer = None

    def unsent_bytes(self) -> int:
        return self.waiting_bytes

    def drop(self) -> None:
        self.dropped = True
        self.waiting.clear()
        self.waiting_bytes = 0
        if self.writer is not None:
            self.writer.cancel()
        self.writer = asyncio.create_task(self._close())

    async def _close(self) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.hub.send_timeout):
                await self.send({"type": "websocket.close", "code": SLOW_READER})
