"""The hot path: one purchase attempt, from the caller's identity to a typed answer.

Once the sale is warm an attempt makes no SQL query and at most one Redis round trip (two
with an Idempotency-Key, none when this process already saw the sale sell out); it never
waits for PostgreSQL or Celery. The order of the checks follows DESIGN.md's funnel: the local
sold-out marker, the proof of work in process, then ``purchase.lua``, atomic.
"""

from __future__ import annotations

import dataclasses
import json
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cachetools import TTLCache, cached
from celery import current_app
from django.conf import settings

from antibot import keys as antibot_keys
from antibot.admission import admission_limits
from antibot.challenges import Challenge, ChallengeRefused, challenge_issue, challenge_verify
from antibot.idempotency import IdempotentRequest, idempotency_begin, idempotency_finish, idempotency_release
from core.errors import InvalidRequest, NotFound
from core.process_state import forgets_process_state

from . import inventory, keys
from .inventory import ScriptAnswer, ScriptStatus
from .models import FlashSale
from .soldout import sold_out_markers
from .warming import sale_meta_for, sale_warm

DRAIN_TASK = "orders.tasks.drain_sale_orders"
"""Sent by name: the orders app, above this one, owns the drain."""


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
_meta_seen: TTLCache[int, inventory.SaleMeta] = TTLCache(maxsize=10_000, ttl=META_LOCAL_SECONDS)
forgets_process_state(_meta_seen.clear)


@cached(_meta_seen, lock=threading.Lock())
def sale_meta_current(sale_id: int) -> inventory.SaleMeta:
    """The sale's meta as loaded in Redis, remembered by this process for a moment.

    A sale missing from Redis is loaded from PostgreSQL if it exists: the one SQL query a
    purchase can cause, and only before beat or the admin warmed the sale.
    Raises ``SaleNotFound``.
    """
    if not 0 < sale_id <= _MAX_SALE_ID:
        raise SaleNotFound()
    meta = inventory.sale_meta(sale_id)
    if meta is None:
        sale = FlashSale.objects.select_related("product").filter(pk=sale_id).first()
        if sale is None:
            raise SaleNotFound()
        sale_warm(sale=sale)
        meta = sale_meta_for(sale)
    return meta


def sale_challenge_issue(*, sale_id: int, user_id: int, client_ip: str = "") -> Challenge:
    """A proof-of-work challenge for this shopper and sale, at the sale's difficulty floor
    (raised by the sale's challenge rate). Raises ``SaleNotFound`` and ``RateLimited``."""
    meta = sale_meta_current(sale_id)
    return challenge_issue(
        keyspace=keys.keyspace(sale_id),
        scope_id=sale_id,
        user_id=user_id,
        floor_difficulty=meta.pow_difficulty,
        client_ip=client_ip,
    )


def purchase_attempt(
    *,
    sale_id: int,
    user_id: int,
    client_ip: str = "",
    challenge: str | None = None,
    solution: str | None = None,
    idempotency: IdempotentRequest | None = None,
) -> PurchaseAnswer:
    """Try to buy one unit of ``sale_id`` for ``user_id``. The purchase script is atomic: any
    failure leaves nothing half-done.

    Raises ``SaleNotFound``, ``IdempotencyKeyReused``, and Redis connection errors (the API
    answers 503).
    """
    meta = sale_meta_current(sale_id)
    record_key = (
        antibot_keys.idempotency_record_key(keys.keyspace(sale_id), user_id, idempotency.digest)
        if idempotency is not None
        else ""
    )
    if idempotency is not None:
        held = idempotency_begin(record_key=record_key, request=idempotency)
        if held is not None:
            return answer_from_record(held)
    try:
        return _purchase(
            meta,
            user_id=user_id,
            client_ip=client_ip,
            challenge=challenge,
            solution=solution,
            idempotency=idempotency,
            record_key=record_key,
        )
    except Exception:
        if idempotency is not None:
            idempotency_release(record_key=record_key)
        raise


def _purchase(
    meta: inventory.SaleMeta,
    *,
    user_id: int,
    client_ip: str,
    challenge: str | None,
    solution: str | None,
    idempotency: IdempotentRequest | None,
    record_key: str,
) -> PurchaseAnswer:
    sale_id = meta.sale_id
    if sold_out_markers.is_sold_out(sale_id):
        return _decided_before_script(
            PurchaseAnswer(PurchaseStatus.SOLD_OUT, detail=_DETAILS[PurchaseStatus.SOLD_OUT]),
            idempotency=idempotency,
            record_key=record_key,
        )
    nonce = ""
    if meta.pow_difficulty > 0:
        try:
            nonce = challenge_verify(
                challenge=challenge,
                solution=solution,
                scope_id=sale_id,
                user_id=user_id,
                now_ms=int(time.time() * 1000),
            )
        except ChallengeRefused as refused:
            return _decided_before_script(
                PurchaseAnswer(PurchaseStatus.POW_INVALID, detail=refused.reason),
                idempotency=idempotency,
                record_key=record_key,
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
    if ran.status is ScriptStatus.NO_SALE:  # Reset between the meta read and the script.
        _meta_seen.pop(sale_id, None)
        raise SaleNotFound("The sale is being reloaded; try again.")
    if ran.status is ScriptStatus.ALREADY_PURCHASED and ran.order_id == order_id:
        # The connection dropped after the script ran and the client ran it again: the unit
        # held is the one this very request won.
        ran = dataclasses.replace(ran, status=ScriptStatus.SUCCESS)
    if ran.status is ScriptStatus.SOLD_OUT or (ran.status is ScriptStatus.SUCCESS and ran.remaining == 0):
        sold_out_markers.mark(sale_id, seen_at_ms=ran.now_ms)
    return answer_from_script(ran)


def _decided_before_script(
    answer: PurchaseAnswer, *, idempotency: IdempotentRequest | None, record_key: str
) -> PurchaseAnswer:
    """An answer given without the script, stored under the Idempotency-Key as the script
    stores its own."""
    if idempotency is not None:
        record = {"status": answer.status.value, "detail": answer.detail}
        idempotency_finish(record_key=record_key, request=idempotency, record=record)
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


def _rate_limited(retry_after_ms: int) -> PurchaseAnswer:
    retry_after = max(1, math.ceil(retry_after_ms / 1000))
    return PurchaseAnswer(
        PurchaseStatus.RATE_LIMITED,
        retry_after_seconds=retry_after,
        detail=f"Too many attempts; try again in {retry_after} s.",
    )


def answer_from_script(ran: ScriptAnswer) -> PurchaseAnswer:
    """The contract's answer to what ``purchase.lua`` decided."""
    if ran.status is ScriptStatus.RATE_LIMITED:
        return _rate_limited(ran.retry_after_ms)
    status = PurchaseStatus.POW_INVALID if ran.status is ScriptStatus.POW_REUSED else PurchaseStatus(ran.status)
    return PurchaseAnswer(
        status,
        order_id=ran.order_id or None,
        remaining_stock=ran.remaining if ran.remaining >= 0 else None,
        detail=_DETAILS[status],
        kick_drain=ran.kick_drain,
    )


def answer_from_record(record: dict[str, Any]) -> PurchaseAnswer:
    """The answer stored under an Idempotency-Key (by the script or by ``purchase_attempt``)."""
    raw_status = record["status"]
    status = PurchaseStatus.POW_INVALID if raw_status == ScriptStatus.POW_REUSED else PurchaseStatus(raw_status)
    if status is PurchaseStatus.RATE_LIMITED:
        return _rate_limited(int(record.get("retry_after_ms") or 0))
    remaining = record.get("remaining")
    return PurchaseAnswer(
        status,
        order_id=record.get("order_id") or None,
        remaining_stock=remaining if isinstance(remaining, int) and remaining >= 0 else None,
        detail=record.get("detail") or _DETAILS[status],
    )


def drain_kick(sale_id: int) -> None:
    """Ask a worker to move the sale's won orders into PostgreSQL now (after the answer)."""
    current_app.send_task(DRAIN_TASK, args=(sale_id,))


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
