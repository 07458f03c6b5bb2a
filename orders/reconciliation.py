"""Proving that Redis and PostgreSQL agree on a sale (invariants I1 and I2), and repairing
what a crash left behind."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from core.redis_store import inventory_redis
from sales import inventory, keys

from .drain import WonOrder, orders_insert, sale_backlog, sale_orders_drain
from .models import Order, OrderStatus, WebhookEventType
from .services import ACTIVE_STATUSES
from .webhooks import events_record

logger = logging.getLogger(__name__)


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
            with transaction.atomic():
                if Order.objects.filter(id=order_id, status=OrderStatus.PENDING).update(status=OrderStatus.CANCELLED):
                    events_record(order_ids=[order_id], event_type=WebhookEventType.ORDER_CANCELLED)
            logger.warning("sale %s: finished the release of order %s of user %s", sale_id, order_id, user_id)
            report.repaired.append(order_id)
            _count(sale_id, "repairs")
        else:
            report.unexplained.append(f"user {user_id}: order {order_id} in PostgreSQL, no buyer in Redis")
    if repair and missing and meta is not None:
        won_at = timezone.now()
        orders_insert(
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
