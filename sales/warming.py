"""Loading sales into Redis (and the row cache) before they start: the admin's action and
beat's tick. Idempotent: a live stock counter is never reset."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from core.errors import ApplicationError
from core.redis_store import inventory_redis

from . import inventory, keys
from .line import shuffle_commitment
from .models import Admission, FlashSale, epoch_ms
from .selectors import SALE_CACHE_SECONDS, sale_cache_key

logger = logging.getLogger(__name__)


class SaleLocked(ApplicationError):
    code = "SALE_LOCKED"
    default_detail = "The sale is loaded into Redis; its stock can no longer change."


def sale_meta_for(sale: FlashSale, *, shuffle_commitment: str = "") -> inventory.SaleMeta:
    return inventory.SaleMeta(
        sale_id=sale.pk,
        product_id=sale.product_id,
        total=sale.total_stock,
        starts_at_ms=epoch_ms(sale.starts_at),
        ends_at_ms=epoch_ms(sale.ends_at),
        price=str(sale.price),
        per_user_limit=sale.per_user_limit,
        pow_difficulty=sale.pow_difficulty,
        bucket_capacity=sale.bucket_capacity,
        bucket_refill_per_second=sale.bucket_refill_per_second,
        crowd_factor=float(sale.crowd_factor),
        admission=sale.admission,
        pre_queue_opens_at_ms=epoch_ms(sale.pre_queue_opens_at) if sale.pre_queue_opens_at else 0,
        shuffle_pre_queue=sale.shuffle_pre_queue and sale.admission == Admission.QUEUE,
        shuffle_commitment=shuffle_commitment,
        serving_rate=sale.serving_rate or 0,
    )


@dataclass(frozen=True)
class WarmResult:
    sale_id: int
    stock_initialized: bool
    window_changed: bool


def sale_warm(*, sale: FlashSale) -> WarmResult:
    """Load the sale into Redis and the cache. Idempotent: the stock counter is created only
    when absent, so warming a live sale again never resets it.

    Raises ``SaleLocked`` when the sale's total differs from the one already in Redis: the
    live counter would no longer satisfy invariant I1.
    """
    commitment = ""
    if sale.admission == Admission.QUEUE and sale.shuffle_pre_queue:
        # The seed is drawn once and kept with the line; what is published is its hash.
        commitment = shuffle_commitment(inventory.line_seed_ensure(sale.pk))
    meta = sale_meta_for(sale, shuffle_commitment=commitment)
    current = inventory.sale_meta(sale.pk)
    if current is not None and current.total != meta.total:
        raise SaleLocked(
            f"Sale {sale.pk} is loaded with {current.total} units; it cannot become {meta.total}. "
            "Reset it first (flashsale reset) if it has not started."
        )
    loaded = inventory.sale_load(meta)
    window_changed = loaded.previous is not None and (
        (loaded.previous.starts_at_ms, loaded.previous.ends_at_ms) != (meta.starts_at_ms, meta.ends_at_ms)
    )
    if loaded.previous is None or loaded.previous != meta:
        # Open storefront pages and WebSocket servers re-read the sale.
        inventory_redis().publish(
            keys.SALE_UPDATES_CHANNEL,
            json.dumps(
                {
                    "sale_id": sale.pk,
                    "starts_at_ms": meta.starts_at_ms,
                    "ends_at_ms": meta.ends_at_ms,
                    "total": meta.total,
                }
            ),
        )
    now = timezone.now()
    FlashSale.objects.filter(pk=sale.pk).update(warmed_at=now)
    sale.warmed_at = now
    sale.product  # noqa: B018 - loaded now so the cached copy carries it
    cache.set(sale_cache_key(sale.pk), sale, SALE_CACHE_SECONDS)
    return WarmResult(sale_id=sale.pk, stock_initialized=loaded.stock_initialized, window_changed=window_changed)


def sales_warm_upcoming(*, lead_seconds: int | None = None) -> list[WarmResult]:
    """Warm every sale that starts within the lead time or is running now (beat's tick)."""
    lead = settings.FLASHSALE_WARM_LEAD_SECONDS if lead_seconds is None else lead_seconds
    now = timezone.now()
    due = FlashSale.objects.filter(starts_at__lte=now + timedelta(seconds=lead), ends_at__gt=now)
    results = []
    for sale in due.select_related("product"):
        try:
            results.append(sale_warm(sale=sale))
        except SaleLocked as error:
            logger.error("not warming sale %s: %s", sale.pk, error.detail)
    return results
