"""The operator console's feed: ``/ws/admin/sales/<id>/live/``, staff only, one point a second.

Who publishes: every ws process runs one ``ConsoleRecorder``, from its start (the ASGI
lifespan) on. Once a second it takes, for each sale being recorded (loaded into Redis, from
``RECORD_BEFORE_SECONDS`` before the start until ``RECORD_AFTER_SECONDS`` after the end) and
each sale one of its sockets watches, a short lease in Redis; the holder of a sale's lease
reads the sale's counters (stock, buyers, the answer counts and latency buckets the web and
tcp processes flush, the order stream's backlog, the line), the orders in PostgreSQL (every
``ORDERS_SECONDS``) and every ws process's open sockets of the sale, turns them into a point
(``wsdoor.figures``) and ``group_send``s it on the channel layer to the sale's group, which
every console socket of the sale in every ws process has joined. So one process reads a
sale per second, whatever the number of processes and consoles.

Kept figures: a point in which anything moved (and one every ``IDLE_KEEP_SECONDS`` when
nothing did) is appended to the sale's series in Redis, which a console receives first when
it connects; it outlives the sale by ``FLASHSALE_CONSOLE_KEEP_SECONDS``.

Who may listen: the admin's session cookie, read by Channels' ``AuthMiddlewareStack``; a
page from another site is refused before the handshake (HTTP 403), anyone but active staff
after it with close ``4403``, a sale that does not exist with ``4404``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import time
from collections import Counter
from datetime import timedelta
from typing import Any, cast

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.conf import settings
from django.db.models import Count, Q
from django.urls import re_path
from django.utils import timezone

from core.redis_store import inventory_redis
from orders.drain import sale_backlog
from orders.models import Order
from sales import inventory, keys
from sales.models import FlashSale, sale_status

from .figures import Reading, point_between, point_worth_keeping
from .hub import live_hub

logger = logging.getLogger(__name__)

CONSOLE_PATH_PREFIX = "/ws/admin/"
FORBIDDEN = 4403
"""Not staff: the page says to log in to the admin as staff."""
NO_SUCH_SALE = 4404
PUBLISH_SECONDS = 1.0
SALES_SECONDS = 5.0
"""How often a recorder asks PostgreSQL which sales to record."""
ORDERS_SECONDS = 2.0
"""How often the publisher of a sale counts its orders in PostgreSQL."""
RECORD_BEFORE_SECONDS = 600
RECORD_AFTER_SECONDS = 600
LEASE_MS = 2500
SOCKETS_FRESH_MS = 5000
SERIES_POINTS = 7200
"""Points kept per sale: two hours of a busy sale at one a second."""


def console_group(sale_id: int) -> str:
    return f"console.sale.{int(sale_id)}"


def _sales_to_record() -> set[int]:
    now = timezone.now()
    due = FlashSale.objects.filter(
        warmed_at__isnull=False,
        starts_at__lte=now + timedelta(seconds=RECORD_BEFORE_SECONDS),
        ends_at__gte=now - timedelta(seconds=RECORD_AFTER_SECONDS),
    )
    return set(due.values_list("pk", flat=True))


def _orders_counted(sale_id: int) -> tuple[int, int]:
    counted = Order.objects.filter(sale_id=sale_id).aggregate(
        stored=Count("pk"), emailed=Count("pk", filter=Q(confirmation_sent_at__isnull=False))
    )
    return int(counted["stored"] or 0), int(counted["emailed"] or 0)


def series_read(sale_id: int) -> list[dict[str, Any]]:
    """The sale's kept points, oldest first."""
    kept = cast(list[str], inventory_redis().lrange(keys.console_series_key(sale_id), 0, -1))
    return [json.loads(raw) for raw in kept]


class ConsoleRecorder:
    """This ws process's side of the console feed (module docstring). Runs on the process's
    event loop; its reads run in a worker thread, one sale after another."""

    def __init__(self) -> None:
        self.viewers: Counter[int] = Counter()
        self.token = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._recorded: set[int] = set()
        self._recorded_at = float("-inf")
        self._orders: dict[int, tuple[int, int, float]] = {}
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def watch(self, sale_id: int) -> None:
        self.viewers[sale_id] += 1
        if sale_id not in self._recorded:
            self._recorded_at = float("-inf")  # Perhaps a sale just made: record it from now.
        self.ensure_running()

    def unwatch(self, sale_id: int) -> None:
        self.viewers[sale_id] -= 1
        if self.viewers[sale_id] <= 0:
            del self.viewers[sale_id]

    def ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="console-recorder")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        layer = get_channel_layer()
        while True:
            started = time.monotonic()
            try:
                for sale_id, point in (await self.tick()).items():
                    if layer is not None:
                        await layer.group_send(console_group(sale_id), {"type": "console.point", "point": point})
                self._failing = False
            except Exception:  # Redis or PostgreSQL away: the next second tries again.
                if not self._failing:
                    logger.warning("console: could not read or publish the sales' figures", exc_info=True)
                    self._failing = True
            await asyncio.sleep(max(0.05, PUBLISH_SECONDS - (time.monotonic() - started)))

    async def tick(self) -> dict[int, dict[str, Any]]:
        """One second's work: the points this process published, by sale."""
        if time.monotonic() - self._recorded_at >= SALES_SECONDS:
            self._recorded = await database_sync_to_async(_sales_to_record)()
            self._recorded_at = time.monotonic()
        sale_ids = sorted(self._recorded | set(self.viewers))
        if not sale_ids:
            return {}
        rooms = live_hub().rooms
        sockets = {sale_id: rooms[sale_id].size if sale_id in rooms else 0 for sale_id in sale_ids}
        return cast(dict[int, dict[str, Any]], await database_sync_to_async(self._read_all)(sale_ids, sockets))

    def _read_all(self, sale_ids: list[int], sockets: dict[int, int]) -> dict[int, dict[str, Any]]:
        published = {}
        for sale_id in sale_ids:
            point = self._read(sale_id, own_sockets=sockets[sale_id], keep=sale_id in self._recorded)
            if point is not None:
                published[sale_id] = point
        return published

    def _read(self, sale_id: int, *, own_sockets: int, keep: bool) -> dict[str, Any] | None:
        client = inventory_redis()
        now_ms = inventory.redis_now_ms()
        sockets_key = keys.console_sockets_key(sale_id)
        client.hset(sockets_key, self.token, f"{own_sockets}:{now_ms}")
        client.pexpire(sockets_key, SOCKETS_FRESH_MS * 2)
        lease = keys.console_publisher_key(sale_id)
        if not client.set(lease, self.token, nx=True, px=LEASE_MS):
            if client.get(lease) != self.token:
                return None  # Another ws process publishes this sale now.
            client.pexpire(lease, LEASE_MS)
        meta = inventory.sale_meta(sale_id)
        if meta is None:
            return {"type": "not_loaded", "t": now_ms}
        counts = inventory.sale_counts(sale_id)
        stored, emailed = self._orders_of(sale_id)
        reading = Reading(
            at_ms=now_ms,
            total=counts.total,
            remaining=counts.remaining,
            buyers=counts.buyers,
            status=sale_status(
                now_ms=now_ms,
                starts_at_ms=meta.starts_at_ms,
                ends_at_ms=meta.ends_at_ms,
                remaining_stock=counts.remaining,
            ).value,
            stats=inventory.sale_stats(sale_id),
            latency=_histogram(sale_id),
            backlog=sale_backlog(sale_id),
            stored=stored,
            emailed=emailed,
            sockets=_sockets_counted(sale_id, now_ms=now_ms),
            line=_line(sale_id) if meta.queued else None,
        )
        last_key, series_key = keys.console_last_key(sale_id), keys.console_series_key(sale_id)
        before_raw = client.get(last_key)
        before = Reading.from_json(json.loads(before_raw)) if before_raw else None
        point = point_between(before, reading)
        keep_ms = settings.FLASHSALE_CONSOLE_KEEP_SECONDS * 1000
        client.set(last_key, json.dumps(reading.as_json()), px=keep_ms)
        if keep:
            kept_raw = client.lindex(series_key, -1)
            if point_worth_keeping(point, json.loads(kept_raw) if kept_raw else None):
                with client.pipeline(transaction=False) as pipe:
                    pipe.rpush(series_key, json.dumps(point))
                    pipe.ltrim(series_key, -SERIES_POINTS, -1)
                    pipe.pexpire(series_key, keep_ms)
                    pipe.execute()
        return point

    def _orders_of(self, sale_id: int) -> tuple[int, int]:
        known = self._orders.get(sale_id)
        if known is None or time.monotonic() - known[2] >= ORDERS_SECONDS:
            stored, emailed = _orders_counted(sale_id)
            self._orders[sale_id] = known = (stored, emailed, time.monotonic())
        return known[0], known[1]


def _histogram(sale_id: int) -> dict[str, int]:
    raw = cast(dict[str, str], inventory_redis().hgetall(keys.latency_key(sale_id)))
    return {name: int(count) for name, count in raw.items()}


def _sockets_counted(sale_id: int, *, now_ms: int) -> int:
    """Open storefront sockets of the sale over every ws process that reported lately."""
    total = 0
    for value in cast(dict[str, str], inventory_redis().hgetall(keys.console_sockets_key(sale_id))).values():
        count, _, at_ms = value.partition(":")
        if now_ms - int(at_ms or 0) <= SOCKETS_FRESH_MS:
            total += int(count or 0)
    return total


def _line(sale_id: int) -> dict[str, float]:
    state = inventory.line_state(sale_id)
    return {
        "joined": int(state.get("joined") or 0),
        "served": round(float(state.get("served") or 0), 1),
        "rate": round(float(state.get("measured") or 0), 2),
    }


_recorders: dict[asyncio.AbstractEventLoop, ConsoleRecorder] = {}


def console_recorder() -> ConsoleRecorder:
    """This process's recorder (one per event loop, as the hub)."""
    loop = asyncio.get_running_loop()
    recorder = _recorders.get(loop)
    if recorder is None:
        recorder = _recorders[loop] = ConsoleRecorder()
    return recorder


class SaleConsoleConsumer(AsyncJsonWebsocketConsumer):
    """One console page's feed of one sale: the kept series first, then every point."""

    sale_id: int = 0
    joined: bool = False

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not (user.is_active and user.is_staff):
            await self.accept()
            await self.close(code=FORBIDDEN)
            return
        self.sale_id = int(self.scope["url_route"]["kwargs"]["sale_id"])
        sale = await database_sync_to_async(_console_sale)(self.sale_id)
        if sale is None:
            await self.accept()
            await self.close(code=NO_SUCH_SALE)
            return
        await self.channel_layer.group_add(console_group(self.sale_id), self.channel_name)
        self.joined = True
        await self.accept()
        console_recorder().watch(self.sale_id)
        points = await database_sync_to_async(series_read)(self.sale_id)
        await self.send_json({"type": "history", "sale": sale, "points": points})

    async def disconnect(self, code: int) -> None:
        if self.joined:
            self.joined = False
            console_recorder().unwatch(self.sale_id)
            await self.channel_layer.group_discard(console_group(self.sale_id), self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """A console only listens."""

    async def console_point(self, event: dict[str, Any]) -> None:
        await self.send_json(event["point"])


def _console_sale(sale_id: int) -> dict[str, Any] | None:
    sale = FlashSale.objects.select_related("product").filter(pk=sale_id).first()
    if sale is None:
        return None
    return {
        "id": sale.pk,
        "name": str(sale),
        "product": sale.product.name,
        "total_stock": sale.total_stock,
        "starts_at": sale.starts_at.isoformat(),
        "ends_at": sale.ends_at.isoformat(),
        "admission": sale.admission,
        "rehearsal_of": sale.rehearsal_of_id,
    }


class NoConsoleConsumer(AsyncJsonWebsocketConsumer):
    """A path under /ws/admin/ that names no console: a close, never an HTTP error."""

    async def connect(self) -> None:
        await self.accept()
        await self.close(code=NO_SUCH_SALE)


console_application = AllowedHostsOriginValidator(
    AuthMiddlewareStack(
        URLRouter(
            [
                re_path(r"^ws/admin/sales/(?P<sale_id>[0-9]{1,18})/live/$", SaleConsoleConsumer.as_asgi()),
                re_path(r"", NoConsoleConsumer.as_asgi()),
            ]
        )
    )
)
"""``/ws/admin/...``: the origin checked against ``ALLOWED_HOSTS`` (HTTP 403 before the
handshake, as for the storefront's socket), then the session read, then the route."""


async def console_lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ws process's ASGI lifespan: the recorder runs from the start to the end."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            console_recorder().ensure_running()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await console_recorder().stop()
            await send({"type": "lifespan.shutdown.complete"})
            return
