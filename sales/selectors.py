"""Reads of the sales app. Sale rows are cached (the storefront polls them); the live stock
always comes from Redis."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db.models import QuerySet
from django.utils import timezone

from . import inventory
from .models import FlashSale, SaleStatus

SALE_CACHE_SECONDS = 30


def sale_cache_key(sale_id: int) -> str:
    return f"sales:row:{int(sale_id)}"


@dataclass(frozen=True)
class SaleView:
    """A sale as the API and the storefront show it."""

    sale: FlashSale
    remaining_stock: int
    status: SaleStatus


def _view(sale: FlashSale, remaining: int | None, now: datetime) -> SaleView:
    # A sale not loaded into Redis yet has sold nothing.
    left = sale.total_stock if remaining is None else remaining
    return SaleView(sale=sale, remaining_stock=left, status=sale.status_at(now, remaining_stock=left))


def sales_visible(*, now: datetime | None = None) -> QuerySet[FlashSale]:
    """Sales a shopper may see: upcoming, live, and those ended within the watch period."""
    now = now or timezone.now()
    since = now - timedelta(seconds=settings.FLASHSALE_WATCH_AFTER_END_SECONDS)
    return FlashSale.objects.select_related("product").filter(ends_at__gt=since).order_by("starts_at", "id")


def sale_list(*, now: datetime | None = None) -> list[SaleView]:
    now = now or timezone.now()
    sales = list(sales_visible(now=now))
    remaining = inventory.remaining_stock_many([sale.pk for sale in sales])
    return [_view(sale, remaining[sale.pk], now) for sale in sales]


def sale_get(sale_id: int) -> FlashSale | None:
    """The sale with its product, from the cache when possible."""
    if not 0 < sale_id < 2**63:
        return None
    key = sale_cache_key(sale_id)
    sale = cache.get(key)
    if sale is None:
        sale = FlashSale.objects.select_related("product").filter(pk=sale_id).first()
        if sale is None:
            return None
        cache.set(key, sale, SALE_CACHE_SECONDS)
    return sale


def sale_detail(sale_id: int, *, now: datetime | None = None) -> SaleView | None:
    sale = sale_get(sale_id)
    if sale is None:
        return None
    now = now or timezone.now()
    return _view(sale, inventory.remaining_stock_many([sale.pk])[sale.pk], now)


def sales_watched(*, now: datetime | None = None) -> list[int]:
    """Sales loaded into Redis that beat keeps draining and reconciling: running, or ended
    within the watch period."""
    since = (now or timezone.now()) - timedelta(seconds=settings.FLASHSALE_WATCH_AFTER_END_SECONDS)
    return list(FlashSale.objects.filter(warmed_at__isnull=False, ends_at__gt=since).values_list("pk", flat=True))
