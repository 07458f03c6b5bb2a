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


def sale_shadow_create(*, sale: FlashSale, stock: int, starts_at: datetime) -> FlashSale:
    """A rehearsal's shadow of ``sale`` from ``starts_at``: the same product, price and
    admission settings (window length, proof of work, bucket, crowd factor, mode, line, the
    pre-queue as long before the start), a stock of its own. Not loaded into Redis."""
    if sale.is_shadow:
        raise ValueError("a shadow sale is not rehearsed")
    ends_at = starts_at + (sale.ends_at - sale.starts_at)
    opens_at = starts_at - (sale.starts_at - sale.pre_queue_opens_at) if sale.pre_queue_opens_at else None
    shadow = FlashSale(
        product=sale.product,
        price=sale.price,
        total_stock=stock,
        starts_at=starts_at,
        ends_at=ends_at,
        per_user_limit=sale.per_user_limit,
        pow_difficulty=sale.pow_difficulty,
        bucket_capacity=sale.bucket_capacity,
        bucket_refill_per_second=sale.bucket_refill_per_second,
        crowd_factor=sale.crowd_factor,
        admission=sale.admission,
        pre_queue_opens_at=opens_at,
        shuffle_pre_queue=sale.shuffle_pre_queue,
        serving_rate=sale.serving_rate,
        rehearsal_of=sale,
    )
    shadow.full_clean()
    shadow.save()
    return shadow


def sale_shadow_move(*, shadow: FlashSale, starts_at: datetime) -> FlashSale:
    """Move a shadow sale's window (and its line's opening) to start at ``starts_at``, as an
    operator's edit does: every process hears it at once."""
    if not shadow.is_shadow:
        raise ValueError("only a shadow sale is moved by a rehearsal")
    shift = starts_at - shadow.starts_at
    shadow.starts_at, shadow.ends_at = starts_at, shadow.ends_at + shift
    if shadow.pre_queue_opens_at is not None:
        shadow.pre_queue_opens_at += shift
    return sale_update(sale=shadow)


def sale_shadow_delete(*, shadow: FlashSale) -> int:
    """Unload a shadow sale from Redis (every key, its console's figures included) and delete
    its row; its orders must be gone first (``orders.services.sale_orders_delete``). Returns
    the Redis keys deleted."""
    if not shadow.is_shadow:
        raise ValueError("only a shadow sale is deleted by a rehearsal")
    deleted = inventory.sale_unload(shadow.pk)
    cache.delete(sale_cache_key(shadow.pk))
    FlashSale.objects.filter(pk=shadow.pk).delete()
    return deleted


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
