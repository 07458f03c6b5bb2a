"""Celery tasks of the orders app: load by id, call one service, return."""

from __future__ import annotations

import logging
from smtplib import SMTPException

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError
from redis.exceptions import RedisError

from sales.selectors import sales_watched

from .drain import drain_kick_window_ms, sale_orders_drain
from .reconciliation import sale_reconcile
from .services import confirmations_overdue, order_confirmations_send, orders_expire_unpaid
from .webhooks import deliveries_overdue_send, deliveries_run

logger = logging.getLogger(__name__)

# Redis or PostgreSQL away for a moment: try again later, the work is idempotent.
PASSING_FAILURES = (RedisError, DatabaseError, OSError)


@shared_task(
    acks_late=True,
    autoretry_for=PASSING_FAILURES,
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=None,
)
def drain_sale_orders(sale_id: int) -> int:
    """Kicked after a win (and by beat): move the sale's won orders into PostgreSQL."""
    result = sale_orders_drain(sale_id=sale_id)
    window_ms = drain_kick_window_ms(sale_id)
    if window_ms:
        # Wins later in this kick window were not kicked (debounced) and may have missed
        # this pass: one more when the window closes, so none waits for beat.
        drain_sale_orders.apply_async((sale_id,), countdown=window_ms / 1000)
    return result.delivered + result.claimed


@shared_task(
    acks_late=True,
    autoretry_for=(*PASSING_FAILURES, SMTPException),
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=20,
)
def send_order_confirmations(order_ids: list[str]) -> int:
    return order_confirmations_send(order_ids=order_ids)


@shared_task(acks_late=True, autoretry_for=PASSING_FAILURES, retry_backoff=True, max_retries=3)
def reconcile_sales() -> dict[str, dict[str, object]]:
    """Beat's safety net, every few seconds: drain leftovers, reclaim what dead workers
    held, check I1 and I2 and repair missing orders, re-send overdue confirmations."""
    summary: dict[str, dict[str, object]] = {}
    for sale_id in sales_watched():
        report = sale_reconcile(sale_id=sale_id)
        if report.loaded:
            summary[str(sale_id)] = {
                "drained": report.drained,
                "backlog": report.backlog,
                "i1": report.i1_holds,
                "i2": report.i2_holds,
                "repaired": len(report.repaired),
            }
    overdue = confirmations_overdue()
    if overdue:
        logger.info("re-sending %s overdue order confirmations", len(overdue))
        send_order_confirmations.delay(overdue)
    return summary


@shared_task(acks_late=True, autoretry_for=PASSING_FAILURES, retry_backoff=True, max_retries=3)
def expire_unpaid_orders() -> int:
    """Beat: the payment window. Orders unpaid past it expire and their units go back on
    sale (the stock-return event clears every web process's sold-out marker)."""
    window = settings.FLASHSALE_PAYMENT_WINDOW_SECONDS
    if window <= 0:
        return 0
    return orders_expire_unpaid(window_seconds=window)


@shared_task(acks_late=True, autoretry_for=PASSING_FAILURES, retry_backoff=True, retry_backoff_max=60, max_retries=None)
def deliver_webhooks(endpoint_id: int, order_ids: list[str]) -> int:
    """The endpoint's deliveries for these orders, each order's in sequence (a retry, a
    second copy of this task or beat's sweep may run the same chains: the row lock of each
    chain's next delivery lets one through). Acknowledged late: a worker killed during a
    delivery leaves it pending and this task goes back to the queue."""
    return deliveries_run(endpoint_id=endpoint_id, order_ids=order_ids).delivered


@shared_task(acks_late=True, autoretry_for=PASSING_FAILURES, retry_backoff=True, max_retries=3)
def send_overdue_webhooks() -> int:
    """Beat: chains whose next delivery is overdue (a long retry wait, or a task lost with
    its worker) are sent again."""
    return deliveries_overdue_send()
