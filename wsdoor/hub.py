"""Live sale events for the storefront's WebSockets (``/ws/sales/<id>/``, docs/design.md).

Fan-out: the process's one Redis pub/sub subscription (``core.events``, driven by this event
loop) feeds the process's model of each sale (``sales.known``), and no channel-layer groups.
A process keeps one ``SaleRoom`` per sale that has open sockets; the room watches the sale's
model, encodes each message once, as text and as a finished WebSocket frame, and hands the
same bytes to every socket it holds (docs/websockets.md has the measurements behind this).

- ``SaleRoom._tick``: one task per sale with listeners: ``countdown`` each second before the
  start, ``sale_started`` at the start second, ``sale_ended`` at the end, by the Redis clock
  (the clock ``purchase.lua`` judges the window by), as the process's ``RedisClock`` has it.
- ``SaleRoom._line_tick``: for a queue-mode sale, once a second: one read of the sale
  (``known_sales.load_steps``: its meta, stock and line) for the whole room, then one
  ``queue`` message (the serving counter, the measured rate, how many wait) to every socket.
  A page knows its own place, so nothing is sent per socket.
- ``SaleRoom.broadcast``: pushes one message to every socket without waiting for any of them
  (``wsdoor.sockets``). A socket gets its ``hello`` when it joins, before any broadcast.
- ``LiveHub._sweep``: once a second, drops sockets whose unsent bytes waited longer than
  ``WS_SEND_TIMEOUT_SECONDS`` (a socket with more than ``WS_SEND_BUFFER_BYTES`` unsent is
  dropped at once), and asks Redis for its clock when the last sample is a minute old.

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
import json
import logging
import math
import os
import resource
import threading
import time
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from channels.db import database_sync_to_async
from django.conf import settings
from redis.asyncio.cluster import ClusterNode, RedisCluster

from core.events import subscription
from core.redis_store import cluster_addresses, inventory_clustered, subscription_urls
from core.steps import drive_async
from salelog.keys import CHECKPOINTS_CHANNEL
from sales.inventory import SaleMeta
from sales.known import KnownSale, known_sales
from sales.models import SaleStatus, sale_status
from sales.selectors import sale_get
from sales.warming import sale_meta_for

from .line_message import LineFigures, line_figures
from .sockets import AsgiSend, AsgiSocket, FrameSocket, LiveSocket, Outgoing

logger = logging.getLogger(__name__)

STOCK_INTERVAL_SECONDS = 0.25
LINE_INTERVAL_SECONDS = 1.0
"""A queue-mode sale's ``queue`` message goes out this often (and its one read of the sale)."""
SWEEP_SECONDS = 1.0
FILES_KEPT = 100
"""Open files a ws process keeps for itself (Redis, PostgreSQL, logs, the listening socket)."""


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


def _message(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, **fields}, separators=(",", ":"))


def _iso(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


class SaleRoom:
    """The sockets of one process watching one sale. The sale's window and stock are the
    model's (``KnownSale``); the room keeps only what it told its sockets.

    Every write to a socket happens synchronously in the room's methods, on the loop, so
    messages reach each socket in the order the room made them, ``hello`` first.
    """

    def __init__(self, hub: LiveHub, known: KnownSale) -> None:
        self.hub = hub
        self.known = known
        self.sale_id = known.sale_id
        # A dict keeps the order sockets joined in and removes one in O(1).
        self.listeners: dict[LiveSocket, None] = {}
        self.told_remaining = self._remaining()
        self._told_window = self._window()
        # Whether the sale lets shoppers in by their place in its line, as its sockets were told.
        self.told_queued = known.snapshot.plan.queued
        self._stale = False
        self._stock_sent_at = 0.0
        self._stock_flush: asyncio.TimerHandle | None = None
        self._sold_out_sent = self.told_remaining <= 0
        self._ticker = asyncio.create_task(self._tick(), name=f"sale-{self.sale_id}-tick")
        self._line: asyncio.Task[None] | None = None
        self._line_follow()

    @property
    def size(self) -> int:
        return len(self.listeners)

    def _window(self) -> tuple[int, int, int]:
        meta = self.known.meta
        assert meta is not None  # A room opens only on a sale whose meta is known.
        return meta.starts_at_ms, meta.ends_at_ms, meta.total

    def _remaining(self) -> int:
        """The stock as the model knows it; a sale whose stock was never read (not loaded
        into Redis yet) has sold nothing."""
        remaining = self.known.snapshot.remaining
        return self.known.snapshot.total if remaining is None else remaining

    def status(self, now_ms: float) -> SaleStatus:
        starts_at_ms, ends_at_ms, _ = self._told_window
        return sale_status(
            now_ms=int(now_ms), starts_at_ms=starts_at_ms, ends_at_ms=ends_at_ms, remaining_stock=self.told_remaining
        )

    def join(self, listener: LiveSocket) -> None:
        listener.push(Outgoing.of(self.hello()))
        self.listeners[listener] = None

    def leave(self, listener: LiveSocket) -> None:
        self.listeners.pop(listener, None)

    def close(self) -> None:
        self._ticker.cancel()
        if self._line is not None:
            self._line.cancel()
        if self._stock_flush is not None:
            self._stock_flush.cancel()

    def hello(self) -> str:
        now = self.hub.now_ms()
        starts_at_ms, ends_at_ms, _ = self._told_window
        # A queue-mode sale's hello carries the line, so a page need not wait for the next
        # ``queue`` message to place itself, and when joins open (an operator may move it);
        # its absence tells a page the sale admits directly.
        line_now = {}
        if self.told_queued:
            meta = self.known.meta
            opens_at_ms = (meta.pre_queue_opens_at_ms if meta is not None else 0) or starts_at_ms
            line_now = {"queue": {**self.line_figures(now).fields(), "opens_at": _iso(opens_at_ms)}}
        return _message(
            "hello",
            server_time=_iso(now),
            starts_at=_iso(starts_at_ms),
            ends_at=_iso(ends_at_ms),
            remaining_stock=max(self.told_remaining, 0),
            status=self.status(now).value,
            **line_now,
        )

    def line_figures(self, now_ms: float) -> LineFigures:
        return line_figures(self.known.snapshot, starts_at_ms=self._told_window[0], now_ms=now_ms)

    def broadcast(self, text: str) -> None:
        message = Outgoing.of(text)
        for listener in tuple(self.listeners):
            listener.push(message)

    # --- What the model told (on the loop) ----------------------------------------------

    def stock_heard(self, remaining: int) -> None:
        """A purchase or a stock return changed the count (events arrive in script order)."""
        if remaining == self.told_remaining:
            return
        self.told_remaining = remaining
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
        self.broadcast(_message("stock", remaining_stock=max(self.told_remaining, 0)))
        if self.told_remaining <= 0 and not self._sold_out_sent:
            self._sold_out_sent = True
            self.broadcast(_message("sold_out"))

    def meta_stale(self) -> None:
        """An operator changed the sale: the next read of it is announced even if its window
        stayed (the page reloads what it shows)."""
        self._stale = True

    def window_changed(self) -> None:
        """The model read the sale again: when its window or total moved, or an operator
        changed it, every socket gets a fresh ``hello`` and the countdown starts over."""
        if self.known.meta is None:
            return
        window = self._window()
        if window == self._told_window and not self._stale:
            return
        self._told_window = window
        self.told_queued = self.known.snapshot.plan.queued
        self._stale = False
        remaining = self.known.snapshot.remaining
        if remaining is not None:
            self.told_remaining = remaining
            self._sold_out_sent = remaining <= 0
        self._ticker.cancel()
        self._ticker = asyncio.create_task(self._tick(), name=f"sale-{self.sale_id}-tick")
        self._line_follow()
        self.broadcast(self.hello())

    def _line_follow(self) -> None:
        """Run the line's ticker while the sale is in queue mode (an operator may switch it)."""
        if self.told_queued and (self._line is None or self._line.done()):
            self._line = asyncio.create_task(self._line_tick(), name=f"sale-{self.sale_id}-line")
        elif not self.told_queued and self._line is not None:
            self._line.cancel()
            self._line = None

    # --- The room's task ----------------------------------------------------------------

    async def _tick(self) -> None:
        counted_down = False
        watched_open = False
        last_second = -1
        while True:
            now = self.hub.now_ms()
            starts_at_ms, ends_at_ms, _ = self._told_window
            if now < starts_at_ms:
                watched_open = True
                left_ms = starts_at_ms - now
                seconds = math.ceil(left_ms / 1000)
                if seconds != last_second:  # A wake-up a hair early must not repeat a second.
                    self.broadcast(_message("countdown", seconds_remaining=seconds))
                    last_second = seconds
                    counted_down = True
                # Wake on the next whole second before the start, a millisecond late rather
                # than early: ``sale_started`` must never precede the Redis clock's start.
                # The clock is read again: writing the countdown to every socket takes time.
                next_second_ms = starts_at_ms - (seconds - 1) * 1000 + 1
                await asyncio.sleep(max(0, next_second_ms - self.hub.now_ms()) / 1000)
                continue
            if now < ends_at_ms:
                watched_open = True
                if counted_down:
                    counted_down = False
                    late_ms = self.hub.now_ms() - starts_at_ms
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
                await asyncio.sleep((ends_at_ms - now + 1) / 1000)
                continue
            # Sockets that arrive after the end learn it from their hello.
            if watched_open:
                self.broadcast(_message("sale_ended"))
            return

    async def _line_tick(self) -> None:
        """Once a second until the end, for the whole room: one read of the sale from Redis
        (its meta, stock and line in one round trip), then one ``queue`` message, encoded
        once. The first goes a second after the room opened: the room's first read and every
        ``hello`` carry the line. A sold-out sale's line waits for nothing: neither read nor
        message until a unit comes back (``stock``). A sale Redis does not hold has no line
        yet (its loading announces it). A failed read sends nothing: the pages count down on
        their own until the next one."""
        failing = False
        due = time.monotonic()
        while True:
            # On the second's schedule, not a second after a slow read; never a burst to
            # catch up after a stall.
            due = max(due + LINE_INTERVAL_SECONDS, time.monotonic())
            await asyncio.sleep(due - time.monotonic())
            if not self.told_queued or self.hub.now_ms() >= self._told_window[1]:
                return
            if self.told_remaining <= 0 or self.known.meta is None:
                continue
            try:
                known = await self.hub.sale_read(self.sale_id)
            except Exception:  # Redis away: the next second reads again
                if not failing:
                    logger.warning("ws: could not read sale %s's line", self.sale_id, exc_info=True)
                failing = True
                continue
            failing = False
            if known is not None and self.told_queued:
                self.broadcast(_message("queue", **self.line_figures(self.hub.now_ms()).fields()))


class _RoomWatcher:
    """What the sale's model tells a room, brought onto the hub's loop from whichever
    thread heard it (the subscription's thread in a process that runs one, as the tests do)."""

    __slots__ = ("hub", "room")

    def __init__(self, hub: LiveHub, room: SaleRoom) -> None:
        self.hub = hub
        self.room = room

    def stock_changed(self, remaining: int) -> None:
        self.hub.on_loop(self.room.stock_heard, remaining)

    def window_changed(self) -> None:
        self.hub.on_loop(self.room.window_changed)

    def meta_stale(self) -> None:
        self.hub.on_loop(self.hub.reread, self.room)


async def _sale_meta_from_database(sale_id: int) -> SaleMeta | None:
    """A sale not loaded into Redis yet (beat loads it within the lead time)."""
    sale = await database_sync_to_async(sale_get)(sale_id)
    return None if sale is None else sale_meta_for(sale)


class LiveHub:
    """The process's live rooms (one hub per event loop)."""

    def __init__(self, *, cluster_nodes: list[tuple[str, int]] | None = None) -> None:
        self.rooms: dict[int, SaleRoom] = {}
        self.capacity = sockets_capacity()
        self.per_address = settings.WS_MAX_CONNECTIONS_PER_IP
        self.send_buffer_bytes = settings.WS_SEND_BUFFER_BYTES
        self.send_timeout = settings.WS_SEND_TIMEOUT_SECONDS
        self.connections = 0
        self.by_address: dict[str, int] = {}
        self.refused = 0
        self.cut_full = 0
        self.cut_late = 0
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._backlog: dict[LiveSocket, float] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._loading: dict[int, asyncio.Future[SaleRoom | None]] = {}
        self._watchers: dict[int, _RoomWatcher] = {}
        self._rereads: set[asyncio.Task[None]] = set()
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
                subscription_urls()[0],
                decode_responses=True,
                socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
                socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT,
            )
        self._closed = False

    def now_ms(self) -> float:
        """The Redis clock, as the process's clock estimates it."""
        return known_sales.clock.now_ms()

    def on_loop(self, call: Callable[..., None], *args: Any) -> None:
        """Run ``call`` on the hub's loop: at once when already there, else soon."""
        if self._closed:
            return
        if threading.get_ident() == self._loop_thread:
            call(*args)
        else:
            self._loop.call_soon_threadsafe(call, *args)

    # --- Admission: what one process takes ------------------------------------------------

    def admit(self, address: str) -> str | None:
        """Count a new socket from ``address`` in, or say why not (the socket is then closed
        as ``Unavailable`` is: try again later). Every admitted socket is ``release``d once."""
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
            if self.rooms and known_sales.clock.due():
                try:
                    await drive_async(known_sales.clock_steps(), self._redis)
                except Exception:  # the next sweep asks again
                    logger.warning("ws: could not read the Redis clock", exc_info=True)

    # --- Rooms --------------------------------------------------------------------------

    async def join(self, sale_id: int, listener: LiveSocket) -> bool:
        """Watch ``sale_id``: ``listener`` gets ``hello``, then every message of the sale.
        Returns False when there is no such sale."""
        subscription.ensure_running_async(self._redis)
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
            self._close_room(room)

    def _close_room(self, room: SaleRoom) -> None:
        room.close()
        self.rooms.pop(room.sale_id, None)
        watcher = self._watchers.pop(room.sale_id, None)
        if watcher is not None:
            known_sales.unwatch(room.known, watcher)

    def broadcast_to(self, sale_id: int, text: str) -> None:
        """One message to every socket watching ``sale_id`` in this process, if any."""
        room = self.rooms.get(sale_id)
        if room is not None:
            room.broadcast(text)

    def reread(self, room: SaleRoom) -> None:
        """Read the room's sale again (an operator changed it), off the caller's turn."""
        room.meta_stale()
        task = asyncio.create_task(self._reread(room), name=f"sale-{room.sale_id}-reread")
        self._rereads.add(task)
        task.add_done_callback(self._rereads.discard)

    async def sale_read(self, sale_id: int) -> KnownSale | None:
        """Read the sale from Redis into the process's model (meta, stock, line, clock)."""
        return await drive_async(known_sales.load_steps(sale_id), self._redis)

    async def _reread(self, room: SaleRoom) -> None:
        try:
            await self.sale_read(room.sale_id)
        except Exception:  # the subscription's next live read covers it
            logger.warning("ws: could not read sale %s again", room.sale_id, exc_info=True)
            return
        if self.rooms.get(room.sale_id) is room:
            room.window_changed()

    async def close(self) -> None:
        """Stop and forget every room (tests; uvicorn just ends the loop)."""
        self._closed = True
        for loop, hub in tuple(_hubs.items()):
            if hub is self:
                del _hubs[loop]
        for room in tuple(self.rooms.values()):
            self._close_room(room)
        if self._sweeper is not None:
            self._sweeper.cancel()
        for task in tuple(self._rereads):
            task.cancel()
        await subscription.stop_async()
        await self._redis.aclose()

    async def _open_room(self, sale_id: int) -> SaleRoom | None:
        # Two thousand sockets opening at once read the sale from Redis once, not 2,000 times.
        loading = self._loading.get(sale_id)
        if loading is not None:
            return await asyncio.shield(loading)
        future: asyncio.Future[SaleRoom | None] = asyncio.get_running_loop().create_future()
        self._loading[sale_id] = future
        try:
            if known_sales.clock.due():
                await drive_async(known_sales.clock_steps(), self._redis)
            known = await drive_async(known_sales.load_steps(sale_id), self._redis)
            if known is None:
                meta = await _sale_meta_from_database(sale_id)
                known = known_sales.heard_meta(meta) if meta is not None else None
            room = None
            if known is not None:
                room = SaleRoom(self, known)
                watcher = _RoomWatcher(self, room)
                self._watchers[sale_id] = watcher
                known_sales.watch(known, watcher)
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


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LiveHub] = weakref.WeakKeyDictionary()


def checkpoint_heard(event: dict[str, Any]) -> None:
    """A sale's log signed a checkpoint (``salelog``): every page watching the sale gets it,
    ``{"type": "checkpoint", "checkpoint": <the C2SP signed note>}``, as sent once."""
    try:
        sale_id, note = int(event["sale_id"]), event["checkpoint"]
    except (KeyError, TypeError, ValueError):
        return
    if not isinstance(note, str):
        return
    text = _message("checkpoint", checkpoint=note)
    for hub in tuple(_hubs.values()):
        hub.on_loop(hub.broadcast_to, sale_id, text)


subscription.listen(CHECKPOINTS_CHANNEL, checkpoint_heard)


def live_hub() -> LiveHub:
    """This process's hub. One per event loop: uvicorn runs one loop per process; tests run
    one loop per test."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = LiveHub(cluster_nodes=cluster_addresses() if inventory_clustered() else None)
    return hub
