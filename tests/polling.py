"""Waiting, boundedly, for something a real server or worker does on its own time."""

from __future__ import annotations

import time
from collections.abc import Callable

from orders.models import Order


def wait_for(condition: Callable[[], bool], *, what: str, timeout: float = 60.0, interval: float = 0.05) -> None:
    """Return once ``condition()`` holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def wait_for_confirmations(sale_id: int, orders: int, *, timeout: float = 120.0) -> None:
    """Wait until the worker turned ``orders`` wins of the sale into order rows and sent their
    confirmations: after that it touches none of this test's rows (a transactional test's
    flush must not meet a confirmation's transaction halfway)."""

    def settled() -> bool:
        rows = Order.objects.filter(sale_id=sale_id)
        return rows.count() >= orders and not rows.filter(confirmation_sent_at__isnull=True).exists()

    wait_for(settled, what=f"{orders} orders of sale {sale_id} confirmed", timeout=timeout)
