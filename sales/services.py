"""Writes of the sales app's catalogue: products, sales, their edits and resets.

Loading a sale into Redis is ``warming``; a purchase attempt is ``purchase``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from core.errors import ApplicationError

from . import inventory
from .models import Admission, FlashSale, Product
from .selectors import sale_cache_key
from .warming import SaleLocked, sale_warm


def product_create(*, slug: str, name: str, list_price: Decimal, description: str = "", image_url: str = "") -> Product:
    product = Product(slug=slug, name=name, list_price=list_price, description=description, image_url=image_url)
    product.full_clean()
    product.save()
    return product


def sale_create(
    *,
    product: Product,
    price: Decimal,
    total_stock: int,
    starts_at: datetime,
    ends_at: datetime,
    pow_difficulty: int = 0,
    bucket_capacity: int = 1000,
    bucket_refill_per_second: int = 500,
    crowd_factor: Decimal | float = Decimal("2.0"),
    admission: str = Admission.DIRECT,
    pre_queue_opens_at: datetime | None = None,
    shuffle_pre_queue: bool = False,
    serving_rate: int | None = None,
) -> FlashSale:
    """A new sale (not loaded into Redis: ``warming.sale_warm``). ``admission`` ``queue`` puts
    its shoppers in a line (``sales.waiting_room``); ``serving_rate`` None is auto."""
    sale = FlashSale(
        product=product,
        price=price,
        total_stock=total_stock,
        starts_at=starts_at,
        ends_at=ends_at,
        pow_difficulty=pow_difficulty,
        bucket_capacity=bucket_capacity,
        bucket_refill_per_second=bucket_refill_per_second,
        crowd_factor=Decimal(str(crowd_factor)),
        admission=admission,
        pre_queue_opens_at=pre_queue_opens_at,
        shuffle_pre_queue=shuffle_pre_queue,
        serving_rate=serving_rate,
    )
    sale.full_clean()
    sale.save()
    return sale


def sale_update(*, sale: FlashSale) -> FlashSale:
    """Save an edited sale (admin) and refresh Redis when it is already loaded there."""
    sale.full_clean()
    if sale.warmed_at is not None:
        current = inventory.sale_meta(sale.pk)
        if current is not None and current.total != sale.total_stock:
            raise SaleLocked()
    with transaction.atomic():
        sale.save()
    if sale.warmed_at is not None:
        sale_warm(sale=sale)
    cache.delete(sale_cache_key(sale.pk))
    return sale


class SaleIsLive(ApplicationError):
    code = "SALE_LIVE"
    default_detail = "The sale is live; resetting it would erase real purchases. Use --force to do it anyway."


@dataclass(frozen=True)
class ResetResult:
    sale_id: int
    redis_keys_deleted: int


def sale_reset(*, sale: FlashSale, force: bool = False) -> ResetResult:
    """Erase the sale's Redis state (stock, buyers, stream, counters) so it can be warmed
    afresh. Refuses a live sale unless ``force``. Its orders in PostgreSQL are the orders
    app's (``orders.services.sale_orders_delete``)."""
    now = timezone.now()
    if sale.starts_at <= now < sale.ends_at and not force:
        raise SaleIsLive()
    deleted = inventory.sale_unload(sale.pk)
    FlashSale.objects.filter(pk=sale.pk).update(warmed_at=None)
    sale.warmed_at = None
    cache.delete(sale_cache_key(sale.pk))
    return ResetResult(sale_id=sale.pk, redis_keys_deleted=deleted)
