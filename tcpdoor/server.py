"""The TCP front door's server: connections, framing, pipelining, limits, timeouts, shutdown.

One asyncio protocol object per connection (uvloop in production). Bytes are cut into frames
(``frames.FrameBuffer``); each frame goes to the ``Door`` in arrival order, and its answer is
written in that order whatever finished first (pipelining). A local answer is written in the
same callback that read the frame, several answers of one read in one write.

What bounds each connection, so no client can grow memory or hold others up:

- a frame's payload is at most ``max_payload`` bytes: a longer LENGTH, or an unknown TYPE,
  is answered ERROR (type 0x7F) and the connection closed, before any payload is read;
- at most ``max_in_flight`` frames are being answered at once; past that the server stops
  reading the connection (the kernel's buffers and then TCP flow control hold the client);
- a client that stops reading: once its answers fill the transport's buffer the server stops
  reading it too, and after ``write_timeout`` aborts it;
- a frame begun must be whole ``frame_timeout`` after its first byte (a slow or truncated
  sender gets ERROR and is closed); a connection with nothing in flight is closed after
  ``idle_timeout`` without a frame;
- connections in all and per address are capped; one over the cap gets ERROR and is closed.

Behind a TCP balancer (``TCP_PROXY_PROTOCOL``), a connection from a trusted balancer may
start with a PROXY protocol v2 header (``proxy_protocol``): the address it names is the
shopper's, for the per-address cap and the per-IP windows. Such a connection counts
against the total cap at once and against its shopper's address once the header is read.

So a connection holds at most one frame being received plus one read, ``max_in_flight``
answers, and the transport's write buffer (``WRITE_BUFFER_HIGH`` bytes before it pauses).

Shutdown (``DoorServer.shutdown``): stop accepting, stop reading, answer every frame already
being answered, close each connection once its answers are written; whatever is left after
``shutdown_grace`` is aborted.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from django.conf import settings

from core.client_address import IPNetwork, address_in
from core.metrics import TCP_CONNECTIONS

from .door import Door, Reply
from .frames import FrameBuffer, FramingError, MessageType, error_frame
from .proxy_protocol import FIRST_BYTE, ProxyHeaderError, proxy_header_parse

logger = logging.getLogger(__name__)

WRITE_BUFFER_HIGH = 256 * 1024
SWEEP_SECONDS = 0.25


@dataclass(frozen=True)
class Limits:
    max_payload: int = 64 * 1024
    max_connections: int = 10_000
    max_per_ip: int = 256
    max_in_flight: int = 64
    idle_timeout: float = 60.0
    frame_timeout: float = 10.0
    write_timeout: float = 10.0
    shutdown_grace: float = 10.0

    @classmethod
    def from_settings(cls) -> Limits:
        return cls(
            max_payload=settings.TCP_MAX_FRAME_BYTES,
            max_connections=settings.TCP_MAX_CONNECTIONS,
            max_per_ip=settings.TCP_MAX_CONNECTIONS_PER_IP,
            max_in_flight=max(1, settings.TCP_MAX_IN_FLIGHT),
            idle_timeout=settings.TCP_IDLE_TIMEOUT_SECONDS,
            frame_timeout=settings.TCP_FRAME_TIMEOUT_SECONDS,
            write_timeout=settings.TCP_WRITE_TIMEOUT_SECONDS,
            shutdown_grace=settings.TCP_SHUTDOWN_GRACE_SECONDS,
        )


class _Slot:
    """One frame's place in its connection's answer order."""

    __slots__ = ("reply",)

    def __init__(self) -> None:
        self.reply: Reply | None = None


class Connection(asyncio.Protocol):
    """One client. Every method runs on the event loop; none blocks."""

    def __init__(self, server: DoorServer) -> None:
        self.server = server
        self.limits = server.limits
        self.buffer = FrameBuffer(max_payload=self.limits.max_payload)
        self.transport: asyncio.Transport | None = None
        self.ip = ""  # the shopper's address: the peer's, or what a trusted balancer named
        self.peer = ""
        self.counted_ip: str | None = None  # the address this connection counts against
        self.awaiting_proxy = False
        self.preamble = bytearray()
        self.queue: collections.deque[_Slot] = collections.deque()
        self.reading = True
        self.closing = False
        self.closed = False
        self.admitted = False
        self.frame_started: float | None = None
        self.last_frame_at = time.monotonic()
        self.write_blocked_since: float | None = None

    # --- asyncio callbacks --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass, but is one
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.ip = self.peer = str(peer[0]) if peer else ""
        self.awaiting_proxy = self.server.reads_proxy_header(self.peer)
        refusal = self.server.admit(self, per_ip=not self.awaiting_proxy)
        if refusal is not None:
            self.closed = True
            transport.write(error_frame(MessageType.ERROR, refusal))
            transport.close()
            return
        self.admitted = True
        transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.buffer.clear()
        if self.admitted:
            self.admitted = False
            self.server.forget(self)

    def data_received(self, data: bytes) -> None:
        if self.closing or self.closed:
            return
        if self.awaiting_proxy:
            rest = self._proxy_header(data)
            if rest is None:
                return
            data = rest
        self.buffer.feed(data)
        self._take()

    def _proxy_header(self, data: bytes) -> bytes | None:
        """What follows the PROXY header once it is read (the whole of ``data`` when the
        connection does not start with one); None while it is incomplete or was refused."""
        self.preamble += data
        if self.preamble[0] != FIRST_BYTE:
            rest = bytes(self.preamble)
        else:
            try:
                header = proxy_header_parse(self.preamble)
            except ProxyHeaderError as error:
                self.fail(str(error))
                return None
            if header is None:
                return None
            rest = bytes(self.preamble[header.length :])
            if header.source is not None:
                self.ip = header.source
        self.preamble = bytearray()
        self.awaiting_proxy = False
        refusal = self.server.admit_address(self)
        if refusal is not None:
            self.fail(refusal)
            return None
        return rest

    def pause_writing(self) -> None:
        self.write_blocked_since = time.monotonic()
        self._update_reading()

    def resume_writing(self) -> None:
        self.write_blocked_since = None
        self._update_reading()

    # --- Frames in, answers out ---------------------------------------------------------

    def _take(self) -> None:
        """Answer the whole frames received, as far as the pipelining limit allows."""
        written: list[bytes] = []
        took = False
        door, queue, limit = self.server.door, self.queue, self.limits.max_in_flight
        while len(queue) < limit and self.write_blocked_since is None and not self.closing:
            try:
                popped = self.buffer.pop()
            except FramingError as error:
                self._write_now(written)
                self.fail(str(error))
                return
            if popped is None:
                break
            took = True
            kind, payload = popped
            reply = door.answer(kind, payload, self.ip)
            if isinstance(reply, Reply):
                if queue:
                    slot = _Slot()
                    slot.reply = reply
                    queue.append(slot)
                else:
                    written.append(reply.frame)
                    if reply.after is not None:
                        self.server.after(reply.after)
            else:
                slot = _Slot()
                queue.append(slot)
                self.server.spawn(self._answered_later(slot, reply))
        now = time.monotonic()
        if took:
            self.last_frame_at = now
            self.frame_started = now if self.buffer.holding else None
        elif self.buffer.holding and self.frame_started is None:
            self.frame_started = now
        self._write_now(written)
        self._update_reading()

    async def _answered_later(self, slot: _Slot, pending: Any) -> None:
        slot.reply = await pending
        self._flush()

    def _flush(self) -> None:
        """Write the answers at the head of the queue that are ready, in order."""
        written: list[bytes] = []
        queue = self.queue
        while queue and queue[0].reply is not None:
            reply = queue.popleft().reply
            assert reply is not None
            written.append(reply.frame)
            if reply.after is not None:
                self.server.after(reply.after)
        self._write_now(written)
        if self.closing:
            if not queue:
                self._close()
            return
        self._update_reading()
        if self.reading and self.buffer.holding:
            self._take()

    def _write_now(self, frames: list[bytes]) -> None:
        if frames and not self.closed and self.transport is not None:
            self.transport.write(frames[0] if len(frames) == 1 else b"".join(frames))

    def _update_reading(self) -> None:
        """Read while the connection can take frames: not closing, answers not piling up."""
        if self.closed or self.transport is None:
            return
        want = not self.closing and len(self.queue) < self.limits.max_in_flight and self.write_blocked_since is None
        if want != self.reading:
            self.reading = want
            if want:
                self.transport.resume_reading()
            else:
                self.transport.pause_reading()

    # --- Ending -------------------------------------------------------------------------

    def fail(self, error: str) -> None:
        """The framing broke (or a frame timed out): ERROR, then close."""
        if self.closed or self.transport is None:
            return
        self.transport.write(error_frame(MessageType.ERROR, error))
        self.buffer.clear()
        self.closing = True
        self.queue.clear()  # Answers still coming are dropped: the stream is already broken.
        self._close()

    def finish(self) -> None:
        """Shutdown: read no more, answer what is in flight, then close."""
        if self.closed:
            return
        self.closing = True
        self.buffer.clear()
        self.frame_started = None
        self._update_reading()
        if not self.queue:
            self._close()

    def _close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()  # Writes what is buffered first.

    def abort(self) -> None:
        if self.transport is not None:
            self.closed = True
            self.transport.abort()

    def sweep(self, now: float) -> None:
        """The timeouts, checked a few times a second by the server."""
        if self.closed:
            return
        limits = self.limits
        if self.write_blocked_since is not None:
            if now - self.write_blocked_since > limits.write_timeout:
                self.abort()  # It reads nothing: nothing more can be told.
            return
        if self.frame_started is not None and len(self.queue) < limits.max_in_flight:
            if now - self.frame_started > limits.frame_timeout:
                self.fail(f"timed out: a frame was not complete {limits.frame_timeout:g} s after it began")
            return
        if not self.queue and not self.buffer.holding and now - self.last_frame_at > limits.idle_timeout:
            self.fail(f"idle for {limits.idle_timeout:g} s: closing")


class DoorServer:
    """The listening socket and every connection of one process."""

    def __init__(
        self,
        *,
        door: Door,
        limits: Limits,
        trusted: tuple[IPNetwork, ...] | None = None,
        proxies: tuple[IPNetwork, ...] | None = None,
    ) -> None:
        """``trusted``: None lets any address connect; a tuple (trusted mode) lets only loopback
        and those networks in. ``proxies``: None reads no PROXY header; a tuple reads one from
        loopback and those networks (the balancer's)."""
        self.door = door
        self.limits = limits
        self.trusted = trusted
        self.proxies = proxies
        self.connections: set[Connection] = set()
        self.per_ip: collections.Counter[str] = collections.Counter()
        self.tasks: set[asyncio.Future[Any]] = set()
        self.listener: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def listen(self, host: str, port: int) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        self.listener = await loop.create_server(lambda: Connection(self), host, port, backlog=4096, reuse_address=True)
        self._sweeper = asyncio.create_task(self._sweep_forever())
        return self.listener

    @property
    def port(self) -> int:
        assert self.listener is not None
        return int(self.listener.sockets[0].getsockname()[1])

    def reads_proxy_header(self, peer: str) -> bool:
        return self.proxies is not None and address_in(peer, self.proxies)

    def admit(self, connection: Connection, *, per_ip: bool = True) -> str | None:
        """None to serve the connection, else why it is refused. ``per_ip`` False: the
        address is not known yet (``admit_address`` follows)."""
        limits = self.limits
        if self.trusted is not None and not address_in(connection.peer, self.trusted):
            return "this door trusts user_id: it serves loopback and TCP_TRUSTED_NETWORKS only"
        if limits.max_connections and len(self.connections) >= limits.max_connections:
            return f"too many connections: the door holds {limits.max_connections}"
        if per_ip:
            refusal = self.admit_address(connection)
            if refusal is not None:
                return refusal
        self.connections.add(connection)
        TCP_CONNECTIONS.inc()
        return None

    def admit_address(self, connection: Connection) -> str | None:
        """Count ``connection`` against its shopper's address; None, or why it is refused."""
        limits = self.limits
        if limits.max_per_ip and self.per_ip[connection.ip] >= limits.max_per_ip:
            return f"too many connections from {connection.ip}: at most {limits.max_per_ip}"
        self.per_ip[connection.ip] += 1
        connection.counted_ip = connection.ip
        return None

    def forget(self, connection: Connection) -> None:
        if connection in self.connections:
            self.connections.discard(connection)
            TCP_CONNECTIONS.dec()
        counted, connection.counted_ip = connection.counted_ip, None
        if counted is not None:
            self.per_ip[counted] -= 1
            if self.per_ip[counted] <= 0:
                del self.per_ip[counted]

    def spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def after(self, work: Callable[[], None]) -> None:
        """Blocking work to run once an answer is written (the drain's kick), in a thread."""
        self.spawn(self._after(work))

    @staticmethod
    async def _after(work: Callable[[], None]) -> None:
        try:
            await asyncio.to_thread(work)
        except Exception:
            logger.warning("work after an answer failed (beat's tick covers the drain)", exc_info=True)

    def _task_done(self, task: asyncio.Future[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("a TCP door task failed", exc_info=task.exception())

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            now = time.monotonic()
            for connection in list(self.connections):
                connection.sweep(now)

    async def shutdown(self) -> None:
        """Stop accepting, answer what is in flight, close every connection (module docstring)."""
        if self.listener is not None:
            self.listener.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for connection in list(self.connections):
            connection.finish()
        deadline = time.monotonic() + self.limits.shutdown_grace
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for connection in list(self.connections):
            connection.abort()
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=max(0.1, deadline - time.monotonic()))
