"""Live sale events for the storefront's WebSockets (``/ws/sales/<id>/``, DESIGN.md).

Fan-out: one Redis pub/sub subscription per server process, not one per connection, and no
channel-layer groups. A process keeps one ``SaleRoom`` per sale that has open sockets; the
room encodes each message once, as text and as a finished WebSocket frame, and hands the same
bytes to every socket it holds (docs/websockets.md has the measurements behind this).

- ``LiveHub._listen``: one asyncio task, one connection subscribed to ``flashsale_events``
  (stock) and ``flashsale_sale_updates`` (window or plan changed), for the whole process.
- ``SaleRoom._tick``: one task per sale with listeners: ``countdown`` each second before the
  start, ``sale_started`` at the start second, ``sale_ended`` at the end, by the Redis clock
  (the clock ``purchase.lua`` judges the window by), estimated once a minute.
- ``SaleRoom.broadcast``: pushes one message to every socket without waiting for any of
  them. A socket is a ``FrameSocket`` where the server lets the room write the frame to the
  connection's transport itself (uvicorn), else an ``AsgiSocket`` (one ASGI ``send`` per
  socket, queued). A socket gets its ``hello`` when it joins, before any broadcast.
- ``LiveHub._sweep``: once a second, drops sockets whose unsent bytes waited longer than
  ``WS_SEND_TIMEOUT_SECONDS``; a socket with more than ``WS_SEND_BUFFER_BYTES`` unsent is
  dropped at once. A reader that stops reading costs at most that, then nothing.

Why not channels-redis groups (measured on this machine, one process, a 2,000-member group):
a ``group_send`` took ~97 ms (it reads all 2,000 member names from Redis and ships them in
every message), and 200 concurrent ``group_send`` calls, a stampede's stock updates from
several web processes, reached each member only 101 times: the process's inbox in Redis
holds 100 messages (``capacity``) and silently drops the rest, for every member at once.
Here a message costs one Redis delivery per process and one socket write per client.

Stock updates are coalesced per sale to one message every ``STOCK_INTERVAL_SECONDS`` (the
latest count wins): a sale selling thousands of units a second would otherwise write
thousands of messages a second to every socket. Reaching zero is sent at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import resource
import socket
import struct
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import redis.asyncio as aioredis
from channels.db import database_sync_to_async
from django.conf import settings
from redis.asyncio.cluster import ClusterNode, RedisCluster

from core.redis_store import RedisUnavailable, cluster_addresses, inventory_clustered, subscription_urls

from . import keys
from .models import SaleStatus, sale_status
from .selectors import sale_get

logger = logging.getLogger(__name__)

STOCK_INTERVAL_SECONDS = 0.25
CLOCK_REFRESH_SECONDS = 60.0
CLIENT_NAME = "flashsale-live"
"""The Redis client name of a process's subscription (``CLIENT LIST`` shows one per process)."""

SWEEP_SECONDS = 1.0
SLOW_READER = 1013
"""Close code for a socket cut off for not reading (where the server lets a close through)."""
FILES_KEPT = 100
"""Open files a ws process keeps for itself (Redis, PostgreSQL, logs, the listening socket)."""

AsgiSend = Callable[[dict[str, Any]], Awaitable[None]]


def sockets_allowed(open_file_limit: int) -> int:
    """How many sockets a process with ``open_file_limit`` can hold."""
    return max(0, open_file_limit - FILES_KEPT)


def open_file_limit_raise() -> tuple[int, int]:
    """Raise this process's open-file soft limit to its hard limit (one socket is one open
    file); return (before, after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return soft, hard
    return soft, soft


def sockets_capacity() -> int:
    """The sockets this process takes: ``WS_MAX_CONNECTIONS`` (0: no cap of its own), never
    more than its open-file limit allows."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    allowed = sockets_allowed(soft) if soft != resource.RLIM_INFINITY else 1_000_000
    configured = settings.WS_MAX_CONNECTIONS
    return min(configured, allowed) if configured > 0 else allowed


def ws_process_prepare() -> None:
    """At the start of a ws process: take every open file the hard limit allows, and say
    how many sockets that makes room for."""
    before, after = open_file_limit_raise()
    logger.info(
        "ws process %d: open-file limit %d (was %d): room for %d sockets"
        " (WS_MAX_CONNECTIONS=%d, WS_MAX_CONNECTIONS_PER_IP=%d; 0 is no cap)",
        os.getpid(),
        after,
        before,
        sockets_capacity(),
        settings.WS_MAX_CONNECTIONS,
        settings.WS_MAX_CONNECTIONS_PER_IP,
    )


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

    def __init__(self, hub: LiveHub, connection: Any, transport: asyncio.WriteTransport) -> None:
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
    def for_send(cls, hub: LiveHub, send: AsgiSend) -> FrameSocket | None:
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

    def __init__(self, hub: LiveHub, send: AsgiSend) -> None:
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


def _message(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, **fields}, separators=(",", ":"))


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True, slots=True)
class SaleWindow:
    starts_at_ms: int
    ends_at_ms: int
    total: int

    def status(self, now_ms: int, *, remaining: int) -> SaleStatus:
        return sale_status(
            now_ms=now_ms, starts_at_ms=self.starts_at_ms, ends_at_ms=self.ends_at_ms, remaining_stock=remaining
        )


class SaleRoom:
    """The sockets of one process watching one sale, and the sale's live state.

    Every write to a socket happens synchronously in the room's methods, so messages reach
    each socket in the order the room made them, ``hello`` first.
    """

    def __init__(self, hub: LiveHub, sale_id: int, window: SaleWindow, remaining: int) -> None:
        self.hub = hub
        self.sale_id = sale_id
        self.window = window
        self.remaining = remaining
        # A dict keeps the order sockets joined in and removes one in O(1).
        self.listeners: dict[LiveSocket, None] = {}
        self._stock_sent_at = 0.0
        self._stock_flush: asyncio.TimerHandle | None = None
        self._sold_out_sent = remaining <= 0
        self._ticker = asyncio.create_task(self._tick(), name=f"sale-{sale_id}-tick")

    @property
    def size(self) -> int:
        return len(self.listeners)

    def join(self, listener: LiveSocket) -> None:
        listener.push(Outgoing.of(self.hello()))
        self.listeners[listener] = None

    def leave(self, listener: LiveSocket) -> None:
        self.listeners.pop(listener, None)

    def close(self) -> None:
        self._ticker.cancel()
        if self._stock_flush is not None:
            self._stock_flush.cancel()

    def hello(self) -> str:
        now = self.hub.now_ms()
        return _message(
            "hello",
            server_time=_iso(now),
            starts_at=_iso(self.window.starts_at_ms),
            ends_at=_iso(self.window.ends_at_ms),
            remaining_stock=max(self.remaining, 0),
            status=self.window.status(now, remaining=self.remaining).value,
        )

    def broadcast(self, text: str) -> None:
        message = Outgoing.of(text)
        for listener in tuple(self.listeners):
            listener.push(message)

    # --- What the hub heard -------------------------------------------------------------

    def stock_heard(self, remaining: int) -> None:
        """A purchase or a stock return changed the count (events arrive in script order)."""
        if remaining == self.remaining:
            return
        self.remaining = remaining
        if remaining <= 0:
            self._flush_stock()
            return
        self._sold_out_sent = False
        if self._stock_flush is not None:
            return  # A flush is due; it sends the latest count.
        wait = self._stock_sent_at + STOCK_INTERVAL_SECONDS - time.monotonic()
        if wait <= 0:
            self._flush_stock()
        else:
            self._stock_flush = asyncio.get_running_loop().call_later(wait, self._flush_stock)

    def _flush_stock(self) -> None:
        if self._stock_flush is not None:
            self._stock_flush.cancel()
            self._stock_flush = None
        self._stock_sent_at = time.monotonic()
        self.broadcast(_message("stock", remaining_stock=max(self.remaining, 0)))
        if self.remaining <= 0 and not self._sold_out_sent:
            self._sold_out_sent = True
            self.broadcast(_message("sold_out"))

    def window_changed(self, window: SaleWindow, remaining: int | None) -> None:
        """The operator moved the window or reloaded the sale: every socket gets a fresh
        ``hello`` and the countdown starts over from the new start."""
        self.window = window
        if remaining is not None:
            self.remaining = remaining
            self._sold_out_sent = remaining <= 0
        self._ticker.cancel()
        self._ticker = asyncio.create_task(self._tick(), name=f"sale-{self.sale_id}-tick")
        self.broadcast(self.hello())

    # --- The room's tasks ---------------------------------------------------------------

    async def _tick(self) -> None:
        counted_down = False
        watched_open = False
        last_second = -1
        while True:
            now = self.hub.now_ms()
            window = self.window
            if now < window.starts_at_ms:
                watched_open = True
                left_ms = window.starts_at_ms - now
                seconds = math.ceil(left_ms / 1000)
                if seconds != last_second:  # A wake-up a hair early must not repeat a second.
                    self.broadcast(_message("countdown", seconds_remaining=seconds))
                    last_second = seconds
                    counted_down = True
                # Wake on the next whole second before the start, a millisecond late rather
                # than early: ``sale_started`` must never precede the Redis clock's start.
                # The clock is read again: writing the countdown to every socket takes time.
                next_second_ms = window.starts_at_ms - (seconds - 1) * 1000 + 1
                await asyncio.sleep(max(0, next_second_ms - self.hub.now_ms()) / 1000)
                continue
            if now < window.ends_at_ms:
                watched_open = True
                if counted_down:
                    counted_down = False
                    late_ms = self.hub.now_ms() - window.starts_at_ms
                    began = time.perf_counter()
                    self.broadcast(_message("sale_started"))
                    # The benchmark reads this line (bench/websocket.py): the server's share.
                    logger.info(
                        "sale %d started: sale_started written to %d sockets in %.1f ms, from %d ms after the start",
                        self.sale_id,
                        len(self.listeners),
                        (time.perf_counter() - began) * 1000,
                        late_ms,
                    )
                await asyncio.sleep((window.ends_at_ms - now + 1) / 1000)
                continue
            # Sockets that arrive after the end learn it from their hello.
            if watched_open:
                self.broadcast(_message("sale_ended"))
            return


async def _sale_window_from_database(sale_id: int) -> SaleWindow | None:
    """A sale not loaded into Redis yet (beat loads it within the lead time)."""
    sale = await database_sync_to_async(sale_get)(sale_id)
    if sale is None:
        return None
    return SaleWindow(
        starts_at_ms=int(sale.starts_at.timestamp() * 1000),
        ends_at_ms=int(sale.ends_at.timestamp() * 1000),
        total=sale.total_stock,
    )


class LiveHub:
    """The process's live rooms and its one Redis subscription (one hub per event loop)."""

    def __init__(self, subscription_urls: list[str], *, cluster_nodes: list[tuple[str, int]] | None = None) -> None:
        self.subscription_urls = subscription_urls
        self.rooms: dict[int, SaleRoom] = {}
        self.listening = asyncio.Event()
        self.capacity = sockets_capacity()
        self.per_address = settings.WS_MAX_CONNECTIONS_PER_IP
        self.send_buffer_bytes = settings.WS_SEND_BUFFER_BYTES
        self.send_timeout = settings.WS_SEND_TIMEOUT_SECONDS
        self.connections = 0
        self.by_address: dict[str, int] = {}
        self.refused = 0
        self.cut_full = 0
        self.cut_late = 0
        self._backlog: dict[LiveSocket, float] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._loading: dict[int, asyncio.Future[SaleRoom | None]] = {}
        self._clock_offset_ms = 0.0
        self._clock_read_at = -math.inf
        # Reads (a sale's meta and stock, the clock): one server's client, or a cluster's,
        # which routes each sale's reads to its master.
        self._redis: aioredis.Redis | RedisCluster
        if cluster_nodes:
            self._redis = RedisCluster(
                startup_nodes=[ClusterNode(host, port) for host, port in cluster_nodes],
                decode_responses=True,
                socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
                socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT,
                require_full_coverage=False,
            )
        else:
            self._redis = aioredis.Redis.from_url(
                subscription_urls[0],
                decode_responses=True,
                socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
                socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT,
            )
        self._listener: asyncio.Task[None] | None = None
        self._closed = False

    def now_ms(self) -> int:
        """The Redis clock, estimated from this host's clock and the last measured offset."""
        return int(time.time() * 1000 + self._clock_offset_ms)

    # --- Admission: what one process takes ------------------------------------------------

    def admit(self, address: str) -> str | None:
        """Count a new socket from ``address`` in, or say why not (the socket is then closed
        with ``1013``, try again later). Every admitted socket is ``release``d once."""
        if self.connections >= self.capacity:
            self.refused += 1
            return "this server holds all the sockets it can"
        if self.per_address and self.by_address.get(address, 0) >= self.per_address:
            self.refused += 1
            return "too many sockets from this address"
        self.connections += 1
        self.by_address[address] = self.by_address.get(address, 0) + 1
        return None

    def release(self, address: str) -> None:
        self.connections -= 1
        left = self.by_address.get(address, 0) - 1
        if left > 0:
            self.by_address[address] = left
        else:
            self.by_address.pop(address, None)

    def socket_for(self, send: AsgiSend) -> LiveSocket:
        """The fastest way this server offers to write to the socket behind ``send``."""
        return FrameSocket.for_send(self, send) or AsgiSocket(self, send)

    # --- Slow readers -------------------------------------------------------------------

    def backlogged(self, listener: LiveSocket) -> None:
        """``listener`` has bytes it could not send yet: watch it until they are gone."""
        if listener.unsent_bytes() > self.send_buffer_bytes:
            self.cut_full += 1
            self.drop(listener)
            return
        self._backlog.setdefault(listener, time.monotonic())

    def drop(self, listener: LiveSocket) -> None:
        """Stop writing to a socket that does not read and cut it off."""
        listener.drop()
        self._backlog.pop(listener, None)
        for room in self.rooms.values():
            room.leave(listener)

    async def _sweep(self) -> None:
        while not self._closed:
            await asyncio.sleep(SWEEP_SECONDS)
            now = time.monotonic()
            for listener, since in tuple(self._backlog.items()):
                if not listener.unsent_bytes():
                    del self._backlog[listener]
                elif now - since > self.send_timeout:
                    self.cut_late += 1
                    self.drop(listener)
            if self.refused or self.cut_full or self.cut_late:
                logger.warning(
                    "ws: refused %d sockets over a cap; cut off %d readers over WS_SEND_BUFFER_BYTES unsent and %d"
                    " whose bytes waited over WS_SEND_TIMEOUT_SECONDS (holding %d of %d)",
                    self.refused,
                    self.cut_full,
                    self.cut_late,
                    self.connections,
                    self.capacity,
                )
                self.refused = self.cut_full = self.cut_late = 0

    # --- Rooms --------------------------------------------------------------------------

    async def join(self, sale_id: int, listener: LiveSocket) -> bool:
        """Watch ``sale_id``: ``listener`` gets ``hello``, then every message of the sale.
        Returns False when there is no such sale."""
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen(), name="live-hub-listen")
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep(), name="live-hub-sweep")
        while True:
            room = self.rooms.get(sale_id)
            if room is None:
                room = await self._open_room(sale_id)
                if room is None:
                    return False
                if self.rooms.get(sale_id) is not room:
                    continue  # Its last socket left while this one waited for the read.
            room.join(listener)
            return True

    def leave(self, sale_id: int, listener: LiveSocket) -> None:
        self._backlog.pop(listener, None)
        room = self.rooms.get(sale_id)
        if room is None:
            return
        room.leave(listener)
        if room.size == 0:
            room.close()
            del self.rooms[sale_id]

    async def close(self) -> None:
        """Stop listening and forget every room (tests; uvicorn just ends the loop)."""
        self._closed = True
        for loop, hub in tuple(_hubs.items()):
            if hub is self:
                del _hubs[loop]
        for room in self.rooms.values():
            room.close()
        self.rooms.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()
        listener = self._listener
        # Python 3.11's ``wait_for`` (inside redis-py) can swallow a cancellation that
        # lands as its inner call completes; ask again until the task is really done.
        while listener is not None and not listener.done():
            listener.cancel()
            await asyncio.wait({listener}, timeout=0.5)
        await self._redis.aclose()

    async def _open_room(self, sale_id: int) -> SaleRoom | None:
        # Two thousand sockets opening at once read the sale from Redis once, not 2,000 times.
        loading = self._loading.get(sale_id)
        if loading is not None:
            return await asyncio.shield(loading)
        future: asyncio.Future[SaleRoom | None] = asyncio.get_running_loop().create_future()
        self._loading[sale_id] = future
        try:
            await self._refresh_clock()
            window, remaining = await self._read_sale(sale_id)
            if window is None:
                window = await _sale_window_from_database(sale_id)
            room = None
            if window is not None:
                room = SaleRoom(self, sale_id, window, window.total if remaining is None else remaining)
                self.rooms[sale_id] = room
            future.set_result(room)
            return room
        except Exception as error:
            future.set_exception(error)
            future.exception()  # Retrieved: waiters, if any, raise it themselves.
            raise
        finally:
            if not future.done():
                future.cancel()
            del self._loading[sale_id]

    async def _read_sale(self, sale_id: int) -> tuple[SaleWindow | None, int | None]:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hmget(keys.meta_key(sale_id), ["starts_at_ms", "ends_at_ms", "total"])
            pipe.get(keys.stock_key(sale_id))
            (starts_at_ms, ends_at_ms, total), stock = await pipe.execute()
        if starts_at_ms is None:
            return None, None
        window = SaleWindow(starts_at_ms=int(starts_at_ms), ends_at_ms=int(ends_at_ms), total=int(total))
        return window, None if stock is None else int(stock)

    async def _refresh_clock(self) -> None:
        """Estimate the Redis clock's offset from three ``TIME`` round trips, trusting the
        fastest: the first may include connecting, and a busy loop may resume late, both
        of which would put the estimate ahead of Redis and start the sale early."""
        if time.monotonic() - self._clock_read_at < CLOCK_REFRESH_SECONDS:
            return
        best_rtt, best_offset = math.inf, 0.0
        for _ in range(3):
            before = time.time()
            seconds, microseconds = await self._redis.time()
            after = time.time()
            if after - before < best_rtt:
                best_rtt = after - before
                best_offset = int(seconds) * 1000 + int(microseconds) / 1000 - (before + after) * 500
        self._clock_offset_ms = best_offset
        self._clock_read_at = time.monotonic()

    async def _listen(self) -> None:
        """The process's one subscription. After a lost connection it subscribes again and
        re-reads every watched sale, so what was published meanwhile is not lost. On a
        cluster it subscribes on one node (a plain PUBLISH on any node reaches every node's
        subscribers) and moves to the next node listed when that one goes away."""
        backoff = 0.1
        attempt = 0
        while not self._closed:
            client = aioredis.Redis.from_url(
                self.subscription_urls[attempt % len(self.subscription_urls)],
                decode_responses=True,
                client_name=f"{CLIENT_NAME}:{os.getpid()}",
                socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT,
                health_check_interval=30,
            )
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(keys.EVENTS_CHANNEL, keys.SALE_UPDATES_CHANNEL)
                while not self._closed:
                    message = await pubsub.get_message(timeout=CLOCK_REFRESH_SECONDS)
                    await self._refresh_clock()
                    if message is None:
                        continue
                    if message["type"] == "message":
                        await self._heard(message["channel"], message["data"])
                    elif message["type"] == "subscribe" and message["data"] == 2:
                        # Both channels confirmed: from here on nothing published is missed;
                        # what was published before is read back from Redis.
                        await self._resync()
                        self.listening.set()
                        backoff = 0.1
            except (*RedisUnavailable, OSError) as error:
                # redis-py can turn a cancellation that lands mid-read into a connection
                # error; a hub being closed must stop here, not subscribe again forever.
                if self._closed or _cancelling():
                    raise asyncio.CancelledError from error
                attempt += 1
                logger.warning("live events lost Redis (%s); subscribing again", error)
            except Exception:
                if self._closed or _cancelling():
                    raise
                logger.exception("live events listener failed; subscribing again")
            finally:
                self.listening.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                    await client.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _heard(self, channel: str, data: str) -> None:
        try:
            event = json.loads(data)
            sale_id = int(event["sale_id"])
        except (ValueError, KeyError, TypeError):
            logger.warning("ignoring a malformed message on %s: %r", channel, data)
            return
        room = self.rooms.get(sale_id)
        if room is None:
            return
        if channel == keys.EVENTS_CHANNEL:
            with contextlib.suppress(KeyError, TypeError, ValueError):
                room.stock_heard(int(event["remaining"]))
            return
        window, remaining = await self._read_sale(sale_id)
        if window is not None:
            room.window_changed(window, remaining)

    async def _resync(self) -> None:
        for sale_id, room in tuple(self.rooms.items()):
            window, remaining = await self._read_sale(sale_id)
            if window is None:
                continue
            if window != room.window:
                room.window_changed(window, remaining)
            elif remaining is not None:
                room.stock_heard(remaining)


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LiveHub] = weakref.WeakKeyDictionary()


def live_hub() -> LiveHub:
    """This process's hub. One per event loop: uvicorn runs one loop per process; tests run
    one loop per test."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = LiveHub(
            subscription_urls(), cluster_nodes=cluster_addresses() if inventory_clustered() else None
        )
    return hub
