"""The purchase the way a plain Django app does it: in the request, in one PostgreSQL
transaction, under a ``SELECT ... FOR UPDATE`` lock on the stock row.

This is the benchmark's baseline, not a way to sell anything: every buyer of the item
queues on one row lock, so throughput is bounded by one transaction (and its commit's
fsync) at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from django.db import transaction

from .models import NaiveOrder, NaiveStock


class NaiveStatus(StrEnum):
    SUCCESS = "SUCCESS"
    SOLD_OUT = "SOLD_OUT"
    ALREADY_PURCHASED = "ALREADY_PURCHASED"


@dataclass(frozen=True, slots=True)
class NaiveAnswer:
    status: NaiveStatus
    order_id: str | None = None
    remaining_stock: int | None = None


def naive_stock_create(*, name: str, total: int) -> NaiveStock:
    return NaiveStock.objects.create(name=name, total=total, remaining=total)


def naive_purchase(*, stock_id: int, user_id: int) -> NaiveAnswer:
    """Buy one unit for ``user_id``: lock the stock row, check, decrement, insert the order,
    commit. Atomic; the row lock is held until the commit.

    Raises ``NaiveStock.DoesNotExist``.
    """
    with transaction.atomic():
        stock = NaiveStock.objects.select_for_update().get(pk=stock_id)
        if stock.remaining <= 0:
            return NaiveAnswer(NaiveStatus.SOLD_OUT, remaining_stock=0)
        held = NaiveOrder.objects.filter(stock_id=stock_id, user_id=user_id).values_list("id", flat=True).first()
        if held is not None:
            return NaiveAnswer(NaiveStatus.ALREADY_PURCHASED, order_id=str(held))
        stock.remaining -= 1
        stock.save(update_fields=["remaining"])
        order = NaiveOrder.objects.create(stock_id=stock_id, user_id=user_id)
    return NaiveAnswer(NaiveStatus.SUCCESS, order_id=str(order.id), remaining_stock=stock.remaining)
