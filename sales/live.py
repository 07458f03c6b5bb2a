"""Live sale events for the storefront's WebSockets (``/ws/sales/<id>/``, DESIGN.md).

Fan-out: one Redis pub/sub subscription per server process, not one per connection, and no
channel-layer groups. A process keeps one ``SaleRoom`` per sale that has open sockets; the
room serializes each message once and writes the same text to every socket it holds.

- ``LiveHub._listen``: one asyncio task, one connection subscribed to ``flashsale_events``
  (stock) and ``flashsale_sale_updates`` (window or plan changed), for the whole process.
- ``SaleRoom._tick``: one task per sale with listeners: ``countdown`` each second before the
  start, ``sale_started`` at the start second, ``sale_ended`` at the end, by the Redis clock
  (the clock ``purchase.lua`` judges the window by), estimated once a minute.
- ``SaleRoom._deliver``: one task per sale that writes every message, in order, to every
  socket; a socket gets its ``hello`` in the same queue, so nothing reaches it before that.

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
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

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

SendText = Callable[[str], Awaitable[None]]


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

    Only the room's own tasks write to its sockets, one message at a time in order.
    """

    def __init__(self, hub: LiveHub, sale_id: int, window: SaleWindow, remaining: int) -> None:
        self.hub = hub
        self.sale_id = sale_id
        self.window = window
        self.remaining = remaining
        self.listeners: dict[object, SendText] = {}
        self._joining: dict[object, SendText] = {}
        # Items: a broadcast text, or (listener, None) meaning "send its hello, then add it".
        self._outbox: asyncio.Queue[str | tuple[object, None]] = asyncio.Queue()
        self._stock_sent_at = 0.0
        self._stock_flush: asyncio.TimerHandle | None = None
        self._sold_out_sent = remaining <= 0
        self._deliverer = asyncio.create_task(self._deliver(), name=f"sale-{sale_id}-deliver")
        self._ticker = asyncio.create_task(self._tick(), name=f"sale-{sale_id}-tick")

    @property
    def size(self) -> int:
        return len(self.listeners) + len(self._joining)

    def join(self, listener: object, send: SendText) -> None:
        self._joining[listener] = send
        self._outbox.put_nowait((listener, None))

    def leave(self, listener: object) -> None:
        self.listeners.pop(listener, None)
        self._joining.pop(listener, None)

    def close(self) -> None:
        self._deliverer.cancel()
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
        self._outbox.put_nowait(text)

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
                await asyncio.sleep((left_ms - (seconds - 1) * 1000 + 1) / 1000)
                continue
            if now < window.ends_at_ms:
                watched_open = True
                if counted_down:
                    counted_down = False
                    self.broadcast(_message("sale_started"))
                await asyncio.sleep((window.ends_at_ms - now + 1) / 1000)
                continue
            # Sockets that arrive after the end learn it from their hello.
            if watched_open:
                self.broadcast(_message("sale_ended"))
            return

    async def _deliver(self) -> None:
        while True:
            item = await self._outbox.get()
            if isinstance(item, tuple):
                listener = item[0]
                send = self._joining.pop(listener, None)
                if send is not None and await self._send(listener, send, self.hello()):
                    self.listeners[listener] = send
                continue
            # Sequential writes: a write only waits when a client's socket buffer is full,
            # which a few small messages a second never fill. Measured with 2,000 clients
            # (tests/storefront/test_fanout.py): the last got ``sale_started`` 55-80 ms after
            # the start; with one task per client per message (gather), 60-157 ms.
            for listener, send in tuple(self.listeners.items()):
                await self._send(listener, send, item)

    async def _send(self, listener: object, send: SendText, text: str) -> bool:
        try:
            await send(text)
        except Exception:  # noqa: BLE001 - a client that went away must not stop the others
            self.leave(listener)
            return False
        return True


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

    async def join(self, sale_id: int, listener: object, send: SendText) -> bool:
        """Watch ``sale_id``: ``send`` gets ``hello``, then every message of the sale.
        Returns False when there is no such sale."""
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen(), name="live-hub-listen")
        while True:
            room = self.rooms.get(sale_id)
            if room is None:
                room = await self._open_room(sale_id)
                if room is None:
                    return False
                if self.rooms.get(sale_id) is not room:
                    continue  # Its last socket left while this one waited for the read.
            room.join(listener, send)
            return True

    def leave(self, sale_id: int, listener: object) -> None:
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
