"""Writes of the sales app: products, sales, loading sales into Redis, purchase attempts."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from antibot.services import (
    ChallengeRefused,
    IdempotentRequest,
    admission_limits,
    challenge_verify,
    idempotency_begin,
    idempotency_finish,
    idempotency_release,
)
from antibot.soldout import sold_out_markers
from flashsale_project.api_errors import ApplicationError, InvalidRequest, NotFound
from flashsale_project.redis_store import inventory_redis

from . import inventory, keys
from .models import FlashSale, Product, epoch_ms
from .selectors import SALE_CACHE_SECONDS, sale_cache_key

logger = logging.getLogger(__name__)


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
) -> FlashSale:
    sale = FlashSale(
        product=product,
        price=price,
        total_stock=total_stock,
        starts_at=starts_at,
        ends_at=ends_at,
        pow_difficulty=pow_difficulty,
        bucket_capacity=bucket_capacity,
        bucket_refill_per_second=bucket_refill_per_second,
    )
    sale.full_clean()
    sale.save()
    return sale


class SaleLocked(ApplicationError):
    http_status = 409
    code = "SALE_LOCKED"
    default_detail = "The sale is loaded into Redis; its stock can no longer change."


def sale_meta_for(sale: FlashSale) -> inventory.SaleMeta:
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
    meta = sale_meta_for(sale)
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
    http_status = 409
    code = "SALE_LIVE"
    default_detail = "The sale is live; resetting it would erase real purchases. Use --force to do it anyway."


@dataclass(frozen=True)
class ResetResult:
    sale_id: int
    redis_keys_deleted: int
    orders_deleted: int


def sale_reset(*, sale: FlashSale, force: bool = False, delete_orders: bool = False) -> ResetResult:
    """Erase the sale's Redis state (stock, buyers, stream, counters) so it can be warmed
    afresh. Refuses a live sale unless ``force``."""
    from orders.models import Order

    now = timezone.now()
    if sale.starts_at <= now < sale.ends_at and not force:
        raise SaleIsLive()
    deleted = inventory.sale_unload(sale.pk)
    orders_deleted = 0
    if delete_orders:
        orders_deleted, _ = Order.objects.filter(sale=sale).delete()
    FlashSale.objects.filter(pk=sale.pk).update(warmed_at=None)
    sale.warmed_at = None
    cache.delete(sale_cache_key(sale.pk))
    return ResetResult(sale_id=sale.pk, redis_keys_deleted=deleted, orders_deleted=orders_deleted)


# --- Purchase attempts (the hot path) -----------------------------------------------------


class PurchaseStatus(StrEnum):
    SUCCESS = "SUCCESS"
    SOLD_OUT = "SOLD_OUT"
    ALREADY_PURCHASED = "ALREADY_PURCHASED"
    NOT_STARTED = "NOT_STARTED"
    ENDED = "ENDED"
    RATE_LIMITED = "RATE_LIMITED"
    POW_INVALID = "POW_INVALID"
    IN_FLIGHT = "IN_FLIGHT"


@dataclass(frozen=True, slots=True)
class PurchaseAnswer:
    """The outcome of one attempt; the API turns it into the contract's answer."""

    status: PurchaseStatus
    order_id: str | None = None
    remaining_stock: int | None = None
    retry_after_seconds: int | None = None
    detail: str = ""
    kick_drain: bool = field(default=False, compare=False)


class SaleNotFound(NotFound):
    default_detail = "There is no such sale."


_MAX_SALE_ID = 2**63 - 1
META_LOCAL_SECONDS = 2.0
_meta_seen: dict[int, tuple[inventory.SaleMeta, float]] = {}


def sale_meta_current(sale_id: int) -> inventory.SaleMeta:
    """The sale's meta as loaded in Redis, remembered by this process for a moment.

    A sale missing from Redis is loaded from PostgreSQL if it exists: the one SQL query a
    purchase can cause, and only before beat or the admin warmed the sale.
    Raises ``SaleNotFound``.
    """
    hit = _meta_seen.get(sale_id)
    now = time.monotonic()
    if hit is not None and hit[1] > now:
        return hit[0]
    if not 0 < sale_id <= _MAX_SALE_ID:
        raise SaleNotFound()
    meta = inventory.sale_meta(sale_id)
    if meta is None:
        sale = FlashSale.objects.select_related("product").filter(pk=sale_id).first()
        if sale is None:
            raise SaleNotFound()
        sale_warm(sale=sale)
        meta = sale_meta_for(sale)
    _meta_seen[sale_id] = (meta, now + META_LOCAL_SECONDS)
    return meta


def purchase_attempt(
    *,
    sale_id: int,
    user_id: int,
    client_ip: str = "",
    challenge: str | None = None,
    solution: str | None = None,
    idempotency: IdempotentRequest | None = None,
) -> PurchaseAnswer:
    """Try to buy one unit of ``sale_id`` for ``user_id``.

    Once the sale is warm this makes no SQL query and one Redis round trip (two with an
    Idempotency-Key, none when this process already saw the sale sell out); it never waits
    for PostgreSQL or Celery. The purchase script is atomic: any failure leaves nothing
    half-done.

    Raises ``SaleNotFound``, ``IdempotencyKeyReused``, and Redis connection errors (the API
    answers 503).
    """
    meta = sale_meta_current(sale_id)
    if idempotency is not None:
        held = idempotency_begin(sale_id=sale_id, user_id=user_id, request=idempotency)
        if held is not None:
            return _answer_from_record(held)
    try:
        answer = _purchase(
            meta, user_id=user_id, client_ip=client_ip, challenge=challenge, solution=solution, idempotency=idempotency
        )
    except Exception:
        if idempotency is not None:
            idempotency_release(sale_id=sale_id, user_id=user_id, request=idempotency)
        raise
    return answer


def _purchase(
    meta: inventory.SaleMeta,
    *,
    user_id: int,
    client_ip: str,
    challenge: str | None,
    solution: str | None,
    idempotency: IdempotentRequest | None,
) -> PurchaseAnswer:
    sale_id = meta.sale_id
    if sold_out_markers.is_sold_out(sale_id):
        return _decided_before_script(
            PurchaseAnswer(PurchaseStatus.SOLD_OUT, detail=_DETAILS[PurchaseStatus.SOLD_OUT]),
            sale_id=sale_id,
            user_id=user_id,
            idempotency=idempotency,
        )
    nonce = ""
    if meta.pow_difficulty > 0:
        try:
            nonce = challenge_verify(
                challenge=challenge, solution=solution, sale_id=sale_id, user_id=user_id, now_ms=int(time.time() * 1000)
            )
        except ChallengeRefused as refused:
            return _decided_before_script(
                PurchaseAnswer(PurchaseStatus.POW_INVALID, detail=refused.reason),
                sale_id=sale_id,
                user_id=user_id,
                idempotency=idempotency,
            )
    order_id = str(uuid.uuid4())
    ran = inventory.purchase_run(
        sale_id=sale_id,
        user_id=user_id,
        order_id=order_id,
        client_ip=client_ip,
        limits=admission_limits(),
        challenge_nonce=nonce,
        idempotency_digest=idempotency.digest if idempotency else "",
        idempotency_fingerprint=idempotency.fingerprint if idempotency else "",
        idempotency_ttl_seconds=settings.ANTIBOT_IDEMPOTENCY_TTL_SECONDS,
        drain_kick_ms=settings.FLASHSALE_DRAIN_KICK_MS,
    )
    if ran.status == "NO_SALE":  # Reset between the meta read and the script.
        _meta_seen.pop(sale_id, None)
        raise SaleNotFound("The sale is being reloaded; try again.")
    if ran.status == "ALREADY_PURCHASED" and ran.order_id == order_id:
        # The connection dropped after the script ran and the client ran it again: the unit
        # held is the one this very request won.
        ran = dataclasses.replace(ran, status="SUCCESS")
    if ran.status == "SOLD_OUT" or (ran.status == "SUCCESS" and ran.remaining == 0):
        sold_out_markers.mark(sale_id, seen_at_ms=ran.now_ms)
    return _answer_from_record(
        {
            "status": ran.status,
            "order_id": ran.order_id,
            "remaining": ran.remaining,
            "retry_after_ms": ran.retry_after_ms,
        },
        kick_drain=ran.kick_drain,
    )


def _decided_before_script(
    answer: PurchaseAnswer, *, sale_id: int, user_id: int, idempotency: IdempotentRequest | None
) -> PurchaseAnswer:
    if idempotency is not None:
        idempotency_finish(
            sale_id=sale_id,
            user_id=user_id,
            request=idempotency,
            record={"status": answer.status.value, "detail": answer.detail},
        )
    return answer


_DETAILS = {
    PurchaseStatus.SUCCESS: "You won a unit; your order is being confirmed.",
    PurchaseStatus.SOLD_OUT: "Sold out: every unit has been sold.",
    PurchaseStatus.ALREADY_PURCHASED: "You already hold this sale's limit of one unit.",
    PurchaseStatus.NOT_STARTED: "The sale has not started yet.",
    PurchaseStatus.ENDED: "The sale has ended.",
    PurchaseStatus.IN_FLIGHT: "A request with this Idempotency-Key is still being answered; retry shortly.",
    PurchaseStatus.POW_INVALID: "reused: this challenge was already spent.",
}


def _answer_from_record(record: dict[str, Any], *, kick_drain: bool = False) -> PurchaseAnswer:
    """A purchase answer from the script's result or a stored Idempotency-Key record."""
    raw_status = record["status"]
    status = PurchaseStatus.POW_INVALID if raw_status == "POW_REUSED" else PurchaseStatus(raw_status)
    remaining = record.get("remaining")
    remaining = remaining if isinstance(remaining, int) and remaining >= 0 else None
    if status is PurchaseStatus.RATE_LIMITED:
        retry_after = max(1, math.ceil(int(record.get("retry_after_ms") or 0) / 1000))
        return PurchaseAnswer(
            status, retry_after_seconds=retry_after, detail=f"Too many attempts; try again in {retry_after} s."
        )
    return PurchaseAnswer(
        status,
        order_id=record.get("order_id") or None,
        remaining_stock=remaining,
        detail=record.get("detail") or _DETAILS[status],
        kick_drain=kick_drain,
    )


def purchase_body_parse(raw: bytes) -> dict[str, str]:
    """The purchase body: empty, or a JSON object with optional string ``challenge`` and
    ``solution`` (at most 64 characters)."""
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The body must be a JSON object.")
    unknown = set(body) - {"challenge", "solution"}
    if unknown:
        raise InvalidRequest(f"Unknown field(s): {', '.join(sorted(map(str, unknown)))}.")
    for name in ("challenge", "solution"):
        value = body.get(name)
        if value is not None and not isinstance(value, str):
            raise InvalidRequest(f"{name} must be a string.")
    if len(body.get("solution") or "") > 64:
        raise InvalidRequest("solution must be at most 64 characters.")
    if len(body.get("challenge") or "") > 512:
        raise InvalidRequest("challenge is too long to be one of ours.")
    return {name: value for name, value in body.items() if value is not None}
