"""Writes of the orders app: moving won orders from Redis to PostgreSQL, confirming them,
and proving that both sides agree (invariants I1 and I2).

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
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, cast

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, connection, transaction
from django.template.loader import render_to_string
from django.utils import timezone
from redis.exceptions import ResponseError

from flashsale_project.api_errors import ApplicationError
from flashsale_project.redis_store import inventory_redis
from sales import inventory, keys

from .models import Order, OrderStatus

logger = logging.getLogger(__name__)


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


def _orders_insert(orders: Sequence[WonOrder]) -> None:
    """Insert orders that are not there yet, in one transaction; confirmations go out after
    it commits. Called with a batch; falls back to one row at a time when a row breaks a
    foreign key (a deleted user), so one bad entry cannot block the rest."""
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
        transaction.on_commit(lambda: _confirmations_enqueue(ids))


def _confirmations_enqueue(order_ids: list[str]) -> None:
    from .tasks import send_order_confirmations

    send_order_confirmations.delay(order_ids)


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
    if orders:
        try:
            _orders_insert(orders)
        except IntegrityError:
            for won in orders:
                try:
                    _orders_insert([won])
                except IntegrityError as error:
                    _dead_letter(sale_id, won.entry_id, None, f"insert refused: {error}")
    ids = [entry_id for entry_id, _ in entries]
    if ids:
        inventory_redis().xack(stream, keys.ORDERS_GROUP, *ids)
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


def order_confirmations_send(*, order_ids: Sequence[str]) -> int:
    """Email each order's buyer once. The row is locked while its mail goes out and marked
    sent in the same transaction: a crash may send a mail twice, never zero times (beat
    re-sends what stays unmarked). Returns how many were sent."""
    sent = 0
    for order_id in order_ids:
        with transaction.atomic():
            order = (
                Order.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("sale__product", "user")
                .filter(id=order_id, confirmation_sent_at__isnull=True)
                .first()
            )
            if order is None:
                continue
            if order.user.email:
                context = {"order": order, "sale": order.sale, "product": order.sale.product, "user": order.user}
                send_mail(
                    subject=render_to_string("emails/order_confirmation_subject.txt", context).strip(),
                    message=render_to_string("emails/order_confirmation.txt", context),
                    from_email=None,
                    recipient_list=[order.user.email],
                    html_message=render_to_string("emails/order_confirmation.html", context),
                )
                sent += 1
            else:
                logger.info("order %s: buyer %s has no email address; nothing to send", order.id, order.user_id)
            order.confirmation_sent_at = timezone.now()
            order.save(update_fields=["confirmation_sent_at"])
    return sent


# --- After the sale: payment, cancellation, the payment window ---------------------------

ACTIVE_STATUSES = (OrderStatus.PENDING, OrderStatus.PAID)
"""Orders that hold a unit; cancelled and expired ones gave theirs back."""


class OrderNotPending(ApplicationError):
    http_status = 409
    code = "ORDER_NOT_PENDING"
    default_detail = "Only an unpaid (pending) order can be paid, cancelled or expired."


def order_mark_paid(*, order: Order) -> Order:
    updated = Order.objects.filter(pk=order.pk, status=OrderStatus.PENDING).update(
        status=OrderStatus.PAID, paid_at=timezone.now()
    )
    if not updated:
        raise OrderNotPending()
    order.refresh_from_db()
    return order


def order_release(*, order: Order, status: OrderStatus) -> Order:
    """Cancel or expire an unpaid order and give its unit back to the sale.

    Redis first (stock +1, buyer moved to the returned hash, the stock-return event that
    clears every web process's sold-out marker), then the row. A crash in between leaves a
    pending row whose unit is already back; reconciliation finishes it. Idempotent.
    """
    if status not in (OrderStatus.CANCELLED, OrderStatus.EXPIRED):
        raise ValueError(f"an order is released as cancelled or expired, not {status}")
    if order.status != OrderStatus.PENDING:
        raise OrderNotPending()
    inventory.unit_release(sale_id=order.sale_id, user_id=order.user_id, order_id=str(order.id))
    Order.objects.filter(pk=order.pk, status=OrderStatus.PENDING).update(status=status)
    order.refresh_from_db()
    logger.info("order %s %s; its unit is back in sale %s", order.id, status.label.lower(), order.sale_id)
    return order


def orders_expire_unpaid(*, window_seconds: int, limit: int = 1000) -> int:
    """Expire orders left unpaid longer than the payment window; their units go back."""
    cutoff = timezone.now() - timedelta(seconds=window_seconds)
    overdue = Order.objects.filter(status=OrderStatus.PENDING, created_at__lt=cutoff).order_by("created_at")[:limit]
    expired = 0
    for order in overdue:
        try:
            order_release(order=order, status=OrderStatus.EXPIRED)
        except OrderNotPending:  # Paid or cancelled meanwhile.
            continue
        expired += 1
    return expired


# --- Reconciliation ------------------------------------------------------------------------


@dataclass
class ReconcileReport:
    """Redis against PostgreSQL for one sale, after draining what was waiting."""

    sale_id: int
    loaded: bool
    total: int = 0
    remaining: int = 0
    buyers: int = 0
    orders: int = 0
    backlog: int = 0
    i1_holds: bool = True
    i2_holds: bool | None = True  # None: not judged, orders were still waiting in the stream
    repaired: list[str] = field(default_factory=list)
    unexplained: list[str] = field(default_factory=list)
    drained: int = 0


def _count(sale_id: int, name: str, amount: int = 1) -> None:
    inventory_redis().hincrby(keys.reconcile_key(sale_id), name, amount)


def sale_reconcile(*, sale_id: int, repair: bool = True, full: bool = False, drain: bool = True) -> ReconcileReport:
    """Drain the sale, then check I1 (stock + buyers == total) and I2 (one order per buyer,
    same id). A buyer whose order is missing from PostgreSQL once nothing is waiting in the
    stream gets the order recreated from the buyers hash; each repair and mismatch is logged
    and counted in the sale's reconcile hash.

    The buyer-by-buyer comparison runs when the counts differ or ``full`` is set; equal
    counts with nothing waiting is taken as agreement. ``drain=False`` only looks (the
    operator's status command).
    """
    counts = inventory.sale_counts(sale_id)
    report = ReconcileReport(sale_id=sale_id, loaded=counts.loaded)
    if not counts.loaded:
        return report
    if drain:
        drained = sale_orders_drain(sale_id=sale_id)
        report.drained = drained.delivered + drained.claimed
    counts = inventory.sale_counts(sale_id)
    report.total, report.remaining, report.buyers = counts.total, counts.remaining, counts.buyers
    report.backlog = sale_backlog(sale_id)
    report.i1_holds = counts.stock_consistent
    if not report.i1_holds:
        logger.error(
            "I1 broken for sale %s: remaining %s + buyers %s != total %s (the stock counter was changed "
            "outside the purchase script)",
            sale_id,
            counts.remaining,
            counts.buyers,
            counts.total,
        )
        _count(sale_id, "violations_i1")

    active = Order.objects.filter(sale_id=sale_id, status__in=ACTIVE_STATUSES)
    report.orders = active.count()
    if report.backlog == 0 and (full or report.orders != counts.buyers):
        _compare_buyers(report, repair=repair)
        if repair and report.repaired:
            report.orders = active.count()
    elif report.backlog:
        report.i2_holds = None
    return report


def _compare_buyers(report: ReconcileReport, *, repair: bool) -> None:
    sale_id = report.sale_id
    buyers = inventory.sale_buyers(sale_id)
    returned = inventory.sale_returned_buyers(sale_id)
    rows = Order.objects.filter(sale_id=sale_id).values_list("user_id", "id", "status")
    in_db = {user_id: str(order_id) for user_id, order_id, status in rows if status in ACTIVE_STATUSES}
    released = {user_id: str(order_id) for user_id, order_id, status in rows if status not in ACTIVE_STATUSES}
    meta = inventory.sale_meta(sale_id)
    missing = [
        (user_id, order_id) for user_id, order_id in buyers.items() if user_id not in in_db and user_id not in released
    ]
    for user_id, order_id in buyers.items():
        if user_id in in_db and in_db[user_id] != order_id:
            report.unexplained.append(f"user {user_id}: Redis says order {order_id}, PostgreSQL {in_db[user_id]}")
        elif user_id in released:
            report.unexplained.append(f"user {user_id}: order {order_id} released in PostgreSQL, held in Redis")
    for user_id, order_id in in_db.items():
        if user_id in buyers:
            continue
        if repair and returned.get(user_id) == order_id:
            # A release that returned the unit and died before updating the row.
            Order.objects.filter(id=order_id, status=OrderStatus.PENDING).update(status=OrderStatus.CANCELLED)
            logger.warning("sale %s: finished the release of order %s of user %s", sale_id, order_id, user_id)
            report.repaired.append(order_id)
            _count(sale_id, "repairs")
        else:
            report.unexplained.append(f"user {user_id}: order {order_id} in PostgreSQL, no buyer in Redis")
    if repair and missing and meta is not None:
        won_at = timezone.now()
        _orders_insert(
            [
                WonOrder(
                    entry_id="",
                    order_id=uuid.UUID(order_id),
                    user_id=user_id,
                    sale_id=sale_id,
                    price=Decimal(meta.price),
                    won_at=won_at,
                )
                for user_id, order_id in missing
            ]
        )
        for user_id, order_id in missing:
            logger.warning("sale %s: recreated missing order %s of buyer %s from Redis", sale_id, order_id, user_id)
            report.repaired.append(order_id)
        _count(sale_id, "repairs", len(missing))
    elif missing:
        report.unexplained.extend(f"user {u}: order {o} missing from PostgreSQL" for u, o in missing)
    report.i2_holds = not report.unexplained
    if report.unexplained:
        for line in report.unexplained:
            logger.error("I2 broken for sale %s: %s", sale_id, line)
        _count(sale_id, "violations_i2")


def confirmations_overdue(*, older_than: timedelta = timedelta(minutes=1)) -> list[str]:
    """Orders whose confirmation should have gone out by now (beat re-sends them)."""
    cutoff = timezone.now() - older_than
    return [
        str(order_id)
        for order_id in Order.objects.filter(confirmation_sent_at__isnull=True, created_at__lt=cutoff).values_list(
            "id", flat=True
        )[:1000]
    ]
