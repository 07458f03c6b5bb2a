"""Moving won orders from a sale's Redis stream into PostgreSQL.

The hand-off is at-least-once from the stream and exactly-once in PostgreSQL: an entry is
acknowledged (``XACK``) only after the transaction that inserted its order committed, and
the insert ignores an order that is already there (same id, or same sale and user). A crash
anywhere in between replays the entry onto the same single row.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, cast

from celery import current_app
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from redis.exceptions import ResponseError

from core.redis_store import inventory_redis
from sales import keys

from .models import Order, WebhookEventType
from .webhooks import events_record

logger = logging.getLogger(__name__)

CONFIRMATIONS_TASK = "orders.tasks.send_order_confirmations"
"""Sent by name on commit (``tasks`` builds on this module, not the other way)."""


def consumer_name() -> str:
    """This process's name in a sale's consumer group."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class WonOrder:
    """One entry of a sale's order stream."""

    entry_id: str
    order_id: uuid.UUID
    user_id: int
    sale_id: int
    price: Decimal
    won_at: datetime

    @classmethod
    def from_entry(cls, entry_id: str, fields: dict[str, str]) -> WonOrder:
        return cls(
            entry_id=entry_id,
            order_id=uuid.UUID(fields["order_id"]),
            user_id=int(fields["user_id"]),
            sale_id=int(fields["sale_id"]),
            price=Decimal(fields["price"]),
            won_at=datetime.fromtimestamp(int(fields["ts"]) / 1000, tz=UTC),
        )


def _group_ensure(sale_id: int) -> None:
    try:
        inventory_redis().xgroup_create(keys.orders_stream_key(sale_id), keys.ORDERS_GROUP, id="0", mkstream=True)
    except ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


def _dead_letter(sale_id: int, entry_id: str, fields: dict[str, str] | None, reason: str) -> None:
    logger.error("sale %s: stream entry %s cannot become an order (%s): %s", sale_id, entry_id, reason, fields)
    record: dict[Any, Any] = {"entry_id": entry_id, "reason": reason, **(fields or {})}
    inventory_redis().xadd(keys.dead_letter_key(sale_id), record)


def orders_insert(orders: Sequence[WonOrder]) -> None:
    """Insert orders that are not there yet, in one transaction with their ``order.created``
    events; confirmations and webhook deliveries go out after it commits. Called with a
    batch; falls back to one row at a time when a row breaks a foreign key (a deleted user),
    so one bad entry cannot block the rest."""
    rows = [
        Order(
            id=won.order_id,
            sale_id=won.sale_id,
            user_id=won.user_id,
            unit_price=won.price,
            created_at=won.won_at,
        )
        for won in orders
    ]
    with transaction.atomic():
        # Django's foreign keys are deferred to COMMIT; checked here, a bad row fails at the
        # insert, inside this savepoint, wherever the caller's transaction boundary is.
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        Order.objects.bulk_create(rows, ignore_conflicts=True)
        ids = [str(row.id) for row in rows]
        # order.created for the orders this batch brought in (none for a replayed entry),
        # sent to the endpoints once the orders are committed.
        events_record(order_ids=ids, event_type=WebhookEventType.ORDER_CREATED)
        transaction.on_commit(lambda: _confirmations_enqueue(ids))


def _confirmations_enqueue(order_ids: list[str]) -> None:
    current_app.send_task(CONFIRMATIONS_TASK, args=(order_ids,))


def _persist_and_ack(sale_id: int, entries: list[tuple[str, dict[str, str] | None]]) -> int:
    """Turn stream entries into orders, then acknowledge them. Returns entries handled."""
    stream = keys.orders_stream_key(sale_id)
    orders: list[WonOrder] = []
    for entry_id, fields in entries:
        if not fields:  # Trimmed from the stream while pending: nothing to insert.
            continue
        try:
            orders.append(WonOrder.from_entry(entry_id, fields))
        except (KeyError, ValueError, InvalidOperation) as error:
            _dead_letter(sale_id, entry_id, fields, f"malformed entry: {error!r}")
    drained = list(orders)
    if orders:
        try:
            orders_insert(orders)
        except IntegrityError:
            for won in orders:
                try:
                    orders_insert([won])
                except IntegrityError as error:
                    _dead_letter(sale_id, won.entry_id, None, f"insert refused: {error}")
                    drained.remove(won)
    ids = [entry_id for entry_id, _ in entries]
    if ids:
        inventory_redis().xack(stream, keys.ORDERS_GROUP, *ids)
    for won in drained:
        # The order id the win logged: one win followed from the answer to its row.
        logger.info(
            "order drained",
            extra={"order_id": str(won.order_id), "sale_id": sale_id, "user_id": won.user_id, "entry_id": won.entry_id},
        )
    return len(ids)


@dataclass
class DrainResult:
    sale_id: int
    delivered: int = 0
    claimed: int = 0


def sale_orders_drain(
    *, sale_id: int, consumer: str | None = None, claim_idle_ms: int | None = None, batch_size: int | None = None
) -> DrainResult:
    """Move every waiting order of the sale into PostgreSQL: first entries another consumer
    took and left unacknowledged for ``claim_idle_ms`` (a worker that died), then new ones,
    until the stream has nothing more. Idempotent and safe to run concurrently."""
    consumer = consumer or consumer_name()
    idle = settings.FLASHSALE_CLAIM_IDLE_MS if claim_idle_ms is None else claim_idle_ms
    batch_size = batch_size or settings.FLASHSALE_DRAIN_BATCH_SIZE
    result = DrainResult(sale_id=sale_id)
    _group_ensure(sale_id)
    client = inventory_redis()
    stream = keys.orders_stream_key(sale_id)

    start = "0-0"
    while True:
        reply = client.xautoclaim(stream, keys.ORDERS_GROUP, consumer, idle, start_id=start, count=batch_size)
        start, claimed = reply[0], reply[1]
        if claimed:
            result.claimed += _persist_and_ack(sale_id, claimed)
        if start == "0-0":
            break

    while True:
        reply = cast(list[Any], client.xreadgroup(keys.ORDERS_GROUP, consumer, {stream: ">"}, count=batch_size))
        if not reply or not reply[0][1]:
            break
        result.delivered += _persist_and_ack(sale_id, reply[0][1])
    if result.delivered or result.claimed:
        logger.info(
            "sale %s: %s won order(s) moved to PostgreSQL (%s reclaimed from a stalled worker)",
            sale_id,
            result.delivered + result.claimed,
            result.claimed,
        )
    return result


def drain_kick_window_ms(sale_id: int) -> int:
    """Milliseconds left in the sale's drain-kick window (0: closed). A win inside it did not
    kick a task of its own; it counts on a drain that runs after it."""
    return max(0, int(inventory_redis().pttl(keys.drain_kick_key(sale_id))))


def sale_backlog(sale_id: int) -> int:
    """Won orders not yet in PostgreSQL: entries never delivered to a worker plus entries
    delivered and not acknowledged (the seed's consumer-lag figure)."""
    client = inventory_redis()
    stream = keys.orders_stream_key(sale_id)
    try:
        groups = client.xinfo_groups(stream)
    except ResponseError:  # No stream yet: nothing was won.
        return 0
    group = next((g for g in groups if g["name"] == keys.ORDERS_GROUP), None)
    if group is None:
        return int(client.xlen(stream))
    pending = int(group["pending"])
    lag = group.get("lag")
    if lag is None:
        # Redis < 7 reports no lag: count what follows the last delivered id.
        last = group["last-delivered-id"]
        lag = len(cast(list[Any], client.xrange(stream, min=f"({last}", max="+", count=1_000_000)))
    return pending + int(lag)
