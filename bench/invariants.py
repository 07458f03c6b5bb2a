"""The invariants every benchmark run is checked against afterwards (docs/design.md, "Invariants").

- I1 ``remaining + buyers == total`` in Redis.
- I2 once the Celery worker drained the sale's stream: one PostgreSQL order per buyer, same id.
- I3 no user holds more than one unit: no user twice in the sale's order stream, none with
  two orders in PostgreSQL.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import cast

from django.db.models import Count

from core.redis_store import inventory_redis
from orders.drain import sale_backlog
from orders.models import Order
from orders.reconciliation import sale_reconcile
from sales import inventory, keys


@dataclass
class InvariantReport:
    i1: bool
    i2: bool | None
    i3: bool
    total: int
    remaining: int
    buyers: int
    orders: int
    wins_answered: int
    drain_wait_s: float
    drained_by_checker: int
    problems: list[str] = field(default_factory=list)

    @property
    def holds(self) -> bool:
        return self.i1 and self.i2 is True and self.i3


def _stream_users(sale_id: int) -> Counter[str]:
    client = inventory_redis()
    stream = keys.orders_stream_key(sale_id)
    seen: Counter[str] = Counter()
    start = "-"
    while True:
        batch = cast(list[tuple[str, dict[str, str]]], client.xrange(stream, min=start, max="+", count=5000))
        if not batch:
            return seen
        for _, fields in batch:
            seen[fields.get("user_id", "")] += 1
        last = batch[-1][0]
        millis, _, sequence = last.partition("-")
        start = f"{millis}-{int(sequence) + 1}"


def sale_invariants(*, sale_id: int, wins_answered: int, drain_timeout_s: float) -> InvariantReport:
    """Check I1 now, wait (bounded) for the worker to drain the stream, then I2 and I3.
    Reconciliation runs with ``repair=False``: it reports, it never fixes."""
    counts = inventory.sale_counts(sale_id)
    i1 = counts.stock_consistent
    started = time.monotonic()
    while sale_backlog(sale_id) > 0 and time.monotonic() - started < drain_timeout_s:
        time.sleep(0.2)
    waited = time.monotonic() - started
    report = sale_reconcile(sale_id=sale_id, full=True, repair=False)
    problems = list(report.unexplained)
    doubled_in_db = (
        Order.objects.filter(sale_id=sale_id).values("user_id").annotate(units=Count("id")).filter(units__gt=1).count()
    )
    doubled_in_stream = sum(1 for count in _stream_users(sale_id).values() if count > 1)
    if doubled_in_db or doubled_in_stream:
        problems.append(f"{doubled_in_db} users with >1 order in PostgreSQL, {doubled_in_stream} twice in the stream")
    if not i1:
        problems.append(f"I1: remaining {counts.remaining} + buyers {counts.buyers} != total {counts.total}")
    if wins_answered > report.buyers:
        problems.append(f"{wins_answered} wins answered but only {report.buyers} buyers in Redis")
    i2 = report.i2_holds if report.i2_holds is None else (report.i2_holds and report.orders == report.buyers)
    return InvariantReport(
        i1=i1,
        i2=i2,
        i3=doubled_in_db == 0 and doubled_in_stream == 0 and wins_answered <= report.buyers,
        total=report.total,
        remaining=report.remaining,
        buyers=report.buyers,
        orders=report.orders,
        wins_answered=wins_answered,
        drain_wait_s=round(waited, 2),
        drained_by_checker=report.drained,
        problems=problems,
    )


def funnel_counts(sale_id: int, *, settle_s: float = 2.5) -> dict[str, int]:
    """The sale's funnel as the web processes counted it (``sales.tally``): they flush once a
    second, so this waits for the last flush first."""
    time.sleep(settle_s)
    return inventory.sale_stats(sale_id)
