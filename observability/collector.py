"""The stack-wide metrics, read at scrape time (django-prometheus supplies the standard ones,
``core.metrics`` the per-process ones).

Stack-wide values (stock, buyers, order backlog, orders in PostgreSQL, reconciliation
counters, a queue-mode sale's line, Celery workers) live in Redis, PostgreSQL and the broker already. ``StackCollector``
reads them when ``/metrics`` is scraped, on the scrape's registry only: once per scrape, never
per process, and always exactly what Redis holds (a gauge kept current by each web process
would be one process's last write, wrong as soon as another process sells).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from celery import current_app
from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count
from kombu.exceptions import OperationalError
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from redis.exceptions import RedisError

from core.redis_store import inventory_redis
from orders.drain import sale_backlog
from orders.models import Order
from sales import inventory, keys
from sales.inventory import LineCounts
from sales.selectors import sale_line_counts, sales_watched

from .health import postgresql_answers

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SaleReading:
    """One watched sale as Redis and PostgreSQL see it during a scrape."""

    sale_id: int
    total: int
    remaining: int
    buyers: int
    backlog: int
    orders: int
    repairs: int
    violations_i1: int
    violations_i2: int
    funnel: dict[str, int]
    line: LineCounts | None = None
    """A queue-mode sale's line (None: the sale admits directly)."""


def sales_read() -> list[SaleReading]:
    """Every watched sale loaded into Redis. PostgreSQL is read first, Redis after: an
    order committed in between shows as one more acknowledged buyer than orders for an
    instant, which the I2 alert's ``for: 1m`` absorbs. ``remaining`` and ``buyers`` come
    from one MULTI (``sale_counts``), so I1 is judged on one instant; a queue-mode sale's
    line from one read-only script call (``sale_line_counts``).

    Raises the database's or Redis's error when either cannot answer."""
    sale_ids = sales_watched()
    orders = dict(
        Order.objects.filter(sale_id__in=sale_ids)
        .values("sale_id")
        .annotate(orders=Count("pk"))
        .values_list("sale_id", "orders")
    )
    if not sale_ids:
        inventory_redis().ping()  # An empty watch list still proves Redis answers.
    readings = []
    for sale_id in sorted(sale_ids):
        counts = inventory.sale_counts(sale_id)
        if not counts.loaded:
            continue
        backlog = sale_backlog(sale_id)
        reconcile = inventory_redis().hgetall(keys.reconcile_key(sale_id))
        readings.append(
            SaleReading(
                sale_id=sale_id,
                total=counts.total,
                remaining=counts.remaining,
                buyers=counts.buyers,
                backlog=backlog,
                orders=orders.get(sale_id, 0),
                repairs=int(reconcile.get("repairs", 0)),
                violations_i1=int(reconcile.get("violations_i1", 0)),
                violations_i2=int(reconcile.get("violations_i2", 0)),
                funnel=inventory.sale_stats(sale_id),
                line=sale_line_counts(sale_id),
            )
        )
    return readings


def celery_workers_count(*, timeout: float) -> int:
    """Celery workers that answer a ping within ``timeout`` seconds (the broker's remote
    control, what ``celery inspect ping`` uses). The call always waits the full timeout."""
    replies = current_app.control.ping(timeout=timeout) or []
    return len({node for reply in replies for node in reply})


class StackCollector:
    """The stack-wide metrics, read fresh on every ``collect()``. A source that cannot answer
    leaves its metrics out of the scrape and reports ``flash_sale_scrape_source_up`` 0 for it,
    so one dead server never turns ``/metrics`` into an error page."""

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "flash_sale_scrape_source_up",
            "1 when the source answered this scrape's reads, 0 when it failed.",
            labels=["source"],
        )
        try:
            readings = sales_read()
        except DatabaseError:
            logger.warning("metrics: PostgreSQL did not answer the scrape", exc_info=True)
            up.add_metric(["postgresql"], 0)
        except RedisError:
            logger.warning("metrics: Redis did not answer the scrape", exc_info=True)
            up.add_metric(["postgresql"], 1)
            up.add_metric(["redis"], 0)
        else:
            up.add_metric(["postgresql"], 1)
            up.add_metric(["redis"], 1)
            yield from _sale_families(readings)

        timeout = settings.METRICS_CELERY_PING_SECONDS
        if timeout > 0:
            try:
                workers = celery_workers_count(timeout=timeout)
            except (OperationalError, RedisError, OSError):
                logger.warning("metrics: the Celery broker did not answer the ping", exc_info=True)
                up.add_metric(["celery_broker"], 0)
            else:
                up.add_metric(["celery_broker"], 1)
                yield GaugeMetricFamily(
                    "flash_sale_celery_workers", "Celery workers that answered a ping during this scrape.", workers
                )
        yield up


def _sale_families(readings: list[SaleReading]) -> Iterator[Metric]:
    gauges = {
        "flash_sale_stock_remaining": ("Units left in Redis.", lambda r: r.remaining),
        "flash_sale_stock_total": ("Units the sale started with (Redis meta).", lambda r: r.total),
        "flash_sale_buyers": ("Buyers recorded in Redis (units sold).", lambda r: r.buyers),
        "flash_sale_order_backlog": (
            "Won orders not yet in PostgreSQL: stream entries never delivered plus delivered and unacknowledged.",
            lambda r: r.backlog,
        ),
        "flash_sale_orders_persisted": ("Orders of the sale in PostgreSQL.", lambda r: r.orders),
    }
    for name, (documentation, value) in gauges.items():
        family = GaugeMetricFamily(name, documentation, labels=["sale"])
        for reading in readings:
            family.add_metric([str(reading.sale_id)], value(reading))
        yield family
    # Reconciliation counts live in Redis (beat's worker increments them), so they are exported
    # as counters read at scrape time: they only grow while the sale's keys exist, and a series
    # per sale means a sale leaving the watch list goes stale instead of looking like a reset.
    repairs = CounterMetricFamily(
        "flash_sale_reconcile_repairs",
        "Orders the reconciler recreated in PostgreSQL from Redis's buyers.",
        labels=["sale"],
    )
    violations = CounterMetricFamily(
        "flash_sale_invariant_violations",
        "Reconciliation runs that found an invariant broken (I1: stock + buyers == total; I2: one order per buyer).",
        labels=["sale", "invariant"],
    )
    # The funnel, counted by the web processes and flushed to Redis once a second: every
    # attempt, where it was answered, and every answer by status (docs/funnel.md).
    funnel = CounterMetricFamily(
        "flash_sale_funnel",
        "Purchase attempts by funnel stage: arrived, shed (answered in the process, by reason), "
        "script (sent to Redis), answered (by status).",
        labels=["sale", "stage", "detail"],
    )
    for reading in readings:
        for name, count in sorted(reading.funnel.items()):
            stage, _, detail = name.partition(":")
            funnel.add_metric([str(reading.sale_id), "answered" if stage == "answer" else stage, detail], count)
    yield funnel
    for reading in readings:
        sale = str(reading.sale_id)
        repairs.add_metric([sale], reading.repairs)
        violations.add_metric([sale, "I1"], reading.violations_i1)
        violations.add_metric([sale, "I2"], reading.violations_i2)
    yield repairs
    yield violations
    yield from _line_families({reading.sale_id: reading.line for reading in readings if reading.line is not None})


def _line_families(lines: dict[int, LineCounts]) -> Iterator[Metric]:
    """A queue-mode sale's line (docs/observability.md, "The waiting room"): what every
    process would answer now, computed from Redis's counter and the Redis clock."""
    gauges: dict[str, tuple[str, Callable[[LineCounts], float]]] = {
        "flash_sale_queue_joined": ("Numbers the line has given (gap-free: the last one).", lambda c: c.joined),
        "flash_sale_queue_waiting": (
            "Places still to be let in: joined - min(joined, served), the line's length.",
            lambda c: c.waiting,
        ),
        "flash_sale_queue_served": (
            "The serving counter (places up to it are let in; it may run a second's serving ahead of an empty line).",
            lambda c: c.served,
        ),
        "flash_sale_queue_admitted": ("Places let in: min(joined, served).", lambda c: c.admitted),
        "flash_sale_queue_admitted_unused": (
            "Admitted places whose shopper has not bought and whose turn has not passed.",
            lambda c: c.admitted_unused,
        ),
        "flash_sale_queue_abandoned": (
            "Admitted places whose turn passed without a purchase.",
            lambda c: c.abandoned,
        ),
        "flash_sale_queue_rate_per_second": (
            "Places let in per second now: the sale's serving rate, or auto from the units left.",
            lambda c: c.rate,
        ),
        "flash_sale_queue_window_open": (
            "1 while the sale's window is open by the Redis clock (the counter moves), else 0.",
            lambda c: int(c.window_open),
        ),
    }
    for name, (documentation, value) in gauges.items():
        family = GaugeMetricFamily(name, documentation, labels=["sale"])
        for sale_id, counts in lines.items():
            family.add_metric([str(sale_id)], value(counts))
        yield family


class PostgresqlCollector:
    """``flash_sale_postgresql_up``: PostgreSQL answered this scrape's ``SELECT 1``. Every
    process reports it, the ws process included: readiness leaves PostgreSQL out (web stays
    in rotation while it is away), so this gauge is where its absence shows."""

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "flash_sale_postgresql_up",
            "1 when PostgreSQL answered this scrape's SELECT 1, 0 when it did not.",
            1 if postgresql_answers() else 0,
        )


def scrape_registry() -> CollectorRegistry:
    """A registry for one scrape: every process's metrics (multiprocess mode) or this
    process's (single process), plus the stack-wide collector when this process reports it."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        registry.register(REGISTRY)
    registry.register(PostgresqlCollector())
    if settings.METRICS_STACK_COLLECTOR:
        registry.register(StackCollector())
    return registry
