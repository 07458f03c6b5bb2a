"""Reads of the naive shop: the oversell check the benchmark reports."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count

from .models import NaiveOrder, NaiveStock


@dataclass(frozen=True, slots=True)
class NaiveStockCheck:
    total: int
    remaining: int
    orders: int
    users_with_more_than_one: int

    @property
    def oversold(self) -> int:
        """Units sold beyond the stock (0 when the shop kept its promise)."""
        return max(0, self.orders - self.total)

    @property
    def consistent(self) -> bool:
        return self.remaining + self.orders == self.total and self.users_with_more_than_one == 0


def naive_stock_check(*, stock_id: int) -> NaiveStockCheck:
    """The stock row and its order count read in one statement (one snapshot), so purchases
    committing meanwhile cannot make a consistent shop look inconsistent."""
    stock = NaiveStock.objects.annotate(order_count=Count("orders")).get(pk=stock_id)
    doubles = (
        NaiveOrder.objects.filter(stock_id=stock_id)
        .values("user_id")
        .annotate(units=Count("id"))
        .filter(units__gt=1)
        .count()
    )
    return NaiveStockCheck(
        total=stock.total,
        remaining=stock.remaining,
        orders=stock.order_count,  # type: ignore[attr-defined]
        users_with_more_than_one=doubles,
    )
