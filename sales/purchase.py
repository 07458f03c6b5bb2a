"""The hot path: one purchase attempt, from the caller's identity to a typed answer.

The attempt is written once, as steps (``core.steps``): the WSGI processes drive it on a
blocking Redis client, the TCP door on an asyncio one. In the funnel's order
(DESIGN.md, "The purchase path"), each layer answering what it can without the next:

1. the sale's meta, remembered by the process for ``FLASHSALE_META_LOCAL_SECONDS`` (one
   call when stale, which also brings the stock and the Redis clock);
2. the local answers (``sales.funnel``): a winner's order, the window, the sold-out marker,
   the per-user and per-IP windows, stock-aware crowd admission;
3. the proof of work, checked in process;
4. a bucket token, leased from Redis in batches;
5. ``purchase.lua``: one round trip, atomic.

A winning attempt costs the script's round trip (and a lease call per batch); a "no" from
layers 2-4 costs none once the process knows the sale. Every answer is counted
(``sales.tally``). Nothing here waits for PostgreSQL or Celery.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cachetools import TLRUCache
from celery import current_app
from django.conf import settings

from antibot import keys as antibot_keys
from antibot.admission import NO_LIMITS, RateLimited
from antibot.challenges import Challenge, ChallengeRefused, challenge_issue_steps, challenge_verify
from antibot.idempotency import (
    IdempotentRequest,
    idempotency_begin_call,
    idempotency_finish_call,
    idempotency_held,
    idempotency_release_call,
)
from core.errors import InvalidRequest, NotFound
from core.events import event_listener
from core.process_state import forgets_process_state
from core.steps import DatabaseWork, Steps, drive
from core.strict_json import json_body_load

from . import inventory, keys
from .funnel import Shed, Verdict, funnel, lease_batch
from .inventory import Lease, ScriptAnswer, ScriptStatus
from .models import FlashSale
from .tally import tally
from .warming import sale_meta_for, sale_warm

logger = logging.getLogger(__name__)

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
    """The outcome of one attempt; the API turns it into the contract's answer.
    ``reason`` names what said RATE_LIMITED: ``bucket``, ``crowd``, ``user`` or ``ip``."""

    status: PurchaseStatus
    order_id: str | None = None
    remaining_stock: int | None = None
    retry_after_seconds: int | None = None
    retry_after_ms: int | None = None
    detail: str = ""
    reason: str = ""
    kick_drain: bool = field(default=False, compare=False)
    decided_here: bool = field(default=False, compare=False)
    """Answered without the script, which stores its own answers under an Idempotency-Key."""


class SaleNotFound(NotFound):
    default_detail = "There is no such sale."


_MAX_SALE_ID = 2**63 - 1


def _meta_expiry(_sale_id: int, _meta: inventory.SaleMeta, now: float) -> float:
    return now + settings.FLASHSALE_META_LOCAL_SECONDS


_meta_seen: TLRUCache[int, inventory.SaleMeta] = TLRUCache(maxsize=10_000, ttu=_meta_expiry)
_meta_lock = threading.Lock()
forgets_process_state(_meta_seen.clear)


def _sale_updated(event: dict[str, object]) -> None:
    """An operator moved the sale's window or plan (``warming.sale_warm`` publishes it): the
    next attempt reads the meta afresh instead of waiting out ``FLASHSALE_META_LOCAL_SECONDS``."""
    try:
        sale_id = int(event["sale_id"])  # type: ignore[call-overload]
    except (KeyError, TypeError, ValueError):
        return
    _forget_meta(sale_id)
    funnel.forget_window(sale_id)


event_listener.listen(keys.SALE_UPDATES_CHANNEL, _sale_updated)


def sale_meta_steps(sale_id: int) -> Steps[inventory.SaleMeta]:
    """The sale's meta as loaded in Redis, remembered by this process for
    ``FLASHSALE_META_LOCAL_SECONDS``; each read also tells the funnel the stock and the Redis
    clock.

    A sale missing from Redis is loaded from PostgreSQL if it exists: the one SQL query a
    purchase can cause, and only before beat or the admin warmed the sale.
    Raises ``SaleNotFound``.
    """
    with _meta_lock:
        meta = _meta_seen.get(sale_id)
    if meta is not None:
        return meta
    if not 0 < sale_id <= _MAX_SALE_ID:
        raise SaleNotFound()
    asked_at_ms = time.time() * 1000
    raw_meta, remaining, redis_now_ms = yield inventory.sale_state_call(sale_id)
    answered_at_ms = time.time() * 1000
    if raw_meta:
        meta = inventory.SaleMeta.from_hash(dict(zip(raw_meta[::2], raw_meta[1::2], strict=True)))
    else:
        meta = yield DatabaseWork(lambda: _warm_from_database(sale_id))
        if meta is None:
            raise SaleNotFound()
        remaining = -1
    funnel.heard_state(
        sale_id,
        starts_at_ms=meta.starts_at_ms,
        ends_at_ms=meta.ends_at_ms,
        crowd_factor=meta.crowd_factor,
        remaining=int(remaining),
        redis_now_ms=int(redis_now_ms),
        local_now_ms=(asked_at_ms + answered_at_ms) / 2,
    )
    with _meta_lock:
        _meta_seen[sale_id] = meta
    return meta


def _warm_from_database(sale_id: int) -> inventory.SaleMeta | None:
    sale = FlashSale.objects.select_related("product").filter(pk=sale_id).first()
    if sale is None:
        return None
    sale_warm(sale=sale)
    return sale_meta_for(sale)


def sale_meta_current(sale_id: int) -> inventory.SaleMeta:
    return drive(sale_meta_steps(sale_id))


def sale_challenge_steps(*, sale_id: int, user_id: int, client_ip: str = "") -> Steps[Challenge]:
    """A proof-of-work challenge for this shopper and sale, at the sale's difficulty floor
    (raised by the sale's challenge rate), as steps. A challenge request counts in the same
    per-user and per-IP windows as purchases (in this process). Raises ``SaleNotFound`` and
    ``RateLimited``."""
    meta = yield from sale_meta_steps(sale_id)
    over = funnel.count_windows(sale_id, user_id=user_id, client_ip=client_ip)
    if over.shed is not None:
        raise RateLimited(over.retry_after_ms, reason=over.shed.value)
    return (
        yield from challenge_issue_steps(
            keyspace=keys.keyspace(sale_id),
            scope_id=sale_id,
            user_id=user_id,
            floor_difficulty=meta.pow_difficulty,
            client_ip=client_ip,
            limits=NO_LIMITS,
        )
    )


def sale_challenge_issue(*, sale_id: int, user_id: int, client_ip: str = "") -> Challenge:
    """``sale_challenge_steps`` on this process's blocking client."""
    return drive(sale_challenge_steps(sale_id=sale_id, user_id=user_id, client_ip=client_ip))


def purchase_steps(
    *,
    sale_id: int,
    user_id: int,
    client_ip: str = "",
    challenge: str | None = None,
    solution: str | None = None,
    idempotency: IdempotentRequest | None = None,
) -> Steps[PurchaseAnswer]:
    """One attempt to buy a unit of ``sale_id`` for ``user_id``, as steps (module docstring).

    Raises ``SaleNotFound``, ``IdempotencyKeyReused``, and Redis connection errors (the API
    answers 503); the purchase script is atomic, so a failure leaves nothing half-done.
    """
    meta = yield from sale_meta_steps(sale_id)
    tally.count(sale_id, "arrived")
    record_key = ""
    if idempotency is not None:
        record_key = antibot_keys.idempotency_record_key(keys.keyspace(sale_id), user_id, idempotency.digest)
        held = idempotency_held(
            (yield idempotency_begin_call(record_key=record_key, request=idempotency)), request=idempotency
        )
        if held is not None:
            answer = answer_from_record(held)
            tally.count(sale_id, f"answer:{answer.status}")
            return answer
    try:
        answer = yield from _attempt(
            meta, user_id=user_id, client_ip=client_ip, challenge=challenge, solution=solution, idempotency=idempotency
        )
    except Exception:
        if idempotency is not None:
            yield idempotency_release_call(record_key=record_key)
        raise
    tally.count(sale_id, f"answer:{answer.status}")
    if idempotency is not None and answer.decided_here:
        yield idempotency_finish_call(record_key=record_key, request=idempotency, record=_record(answer))
    return answer


def purchase_attempt(**attempt: Any) -> PurchaseAnswer:
    """``purchase_steps`` on this process's blocking client."""
    return drive(purchase_steps(**attempt))


def _attempt(
    meta: inventory.SaleMeta,
    *,
    user_id: int,
    client_ip: str,
    challenge: str | None,
    solution: str | None,
    idempotency: IdempotentRequest | None,
) -> Steps[PurchaseAnswer]:
    sale_id = meta.sale_id
    local = funnel.live
    if local and not funnel.winners_known(sale_id):
        funnel.heard_holders(sale_id, inventory.holders_from_reply((yield inventory.holders_call(sale_id))))
    verdict = funnel.admit(sale_id, user_id=user_id, client_ip=client_ip, winners_known=local)
    if verdict.shed is not None:
        return (yield from _local_no(sale_id, verdict, user_id=user_id, winners_known=local))

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
            tally.count(sale_id, "shed:pow")
            return PurchaseAnswer(PurchaseStatus.POW_INVALID, detail=refused.reason, decided_here=True)

    if local:
        crowd = funnel.admit_crowd(sale_id)
        if crowd.shed is not None:
            return (yield from _local_no(sale_id, crowd, user_id=user_id, winners_known=True))

    token = funnel.take_token(sale_id)
    if token is None:
        lease = Lease.from_reply((yield inventory.lease_call(sale_id=sale_id, want=_lease_want(meta))))
        if lease.granted < 0:
            _forget_meta(sale_id)
            raise SaleNotFound("The sale is being reloaded; try again.")
        token = funnel.leased(sale_id, granted=lease.granted, retry_after_ms=lease.retry_after_ms)
    if token.shed is not None:
        return (yield from _local_no(sale_id, token, user_id=user_id, winners_known=local))

    order_id = str(uuid.uuid4())
    tally.count(sale_id, "script")
    ran = ScriptAnswer.from_reply(
        (
            yield inventory.purchase_call(
                sale_id=sale_id,
                user_id=user_id,
                order_id=order_id,
                challenge_nonce=nonce,
                challenge_ttl_seconds=settings.ANTIBOT_CHALLENGE_TTL_SECONDS if nonce else 0,
                idempotency_digest=idempotency.digest if idempotency else "",
                idempotency_fingerprint=idempotency.fingerprint if idempotency else "",
                idempotency_ttl_seconds=settings.ANTIBOT_IDEMPOTENCY_TTL_SECONDS,
                drain_kick_ms=settings.FLASHSALE_DRAIN_KICK_MS,
            )
        )
    )
    if ran.status is ScriptStatus.NO_SALE:  # Reset between the meta read and the script.
        _forget_meta(sale_id)
        raise SaleNotFound("The sale is being reloaded; try again.")
    if ran.status is ScriptStatus.ALREADY_PURCHASED and ran.order_id == order_id:
        # The connection dropped after the script ran and the client ran it again: the unit
        # held is the one this very request won.
        ran = dataclasses.replace(ran, status=ScriptStatus.SUCCESS)
    funnel.heard_answer(
        sale_id, status=ran.status, user_id=user_id, order_id=ran.order_id, remaining=ran.remaining, now_ms=ran.now_ms
    )
    return answer_from_script(ran)


def _local_no(sale_id: int, verdict: Verdict, *, user_id: int, winners_known: bool) -> Steps[PurchaseAnswer]:
    """A "no" given in the process, counted. Without a trusted winners table (the
    subscription is not live) Redis is asked first: a winner hears their order anyway."""
    if not winners_known and verdict.shed is not Shed.WINNER:
        held = yield inventory.holders_call(sale_id, user_id)
        if held:
            verdict = Verdict(Shed.WINNER, order_id=held)
    tally.count(sale_id, f"shed:{verdict.shed}")
    return _shed_answer(verdict)


def _lease_want(meta: inventory.SaleMeta) -> int:
    return lease_batch(meta.bucket_refill_per_second, meta.bucket_capacity)


def _forget_meta(sale_id: int) -> None:
    with _meta_lock:
        _meta_seen.pop(sale_id, None)


_DETAILS = {
    PurchaseStatus.SUCCESS: "You won a unit; your order is being confirmed.",
    PurchaseStatus.SOLD_OUT: "Sold out: every unit has been sold.",
    PurchaseStatus.ALREADY_PURCHASED: "You already hold this sale's limit of one unit.",
    PurchaseStatus.NOT_STARTED: "The sale has not started yet.",
    PurchaseStatus.ENDED: "The sale has ended.",
    PurchaseStatus.IN_FLIGHT: "A request with this Idempotency-Key is still being answered; retry shortly.",
    PurchaseStatus.POW_INVALID: "reused: this challenge was already spent.",
}
_REASONS = {
    Shed.BUCKET: "Too many attempts on this sale right now",
    Shed.CROWD: "More shoppers are trying than units are left",
    Shed.USER: "Too many attempts from your account",
    Shed.IP: "Too many attempts from your address",
}


def _rate_limited(retry_after_ms: int, reason: str, *, decided_here: bool = False) -> PurchaseAnswer:
    retry_after = max(1, math.ceil(retry_after_ms / 1000))
    why = _REASONS.get(Shed(reason), "Too many attempts") if reason else "Too many attempts"
    return PurchaseAnswer(
        PurchaseStatus.RATE_LIMITED,
        retry_after_seconds=retry_after,
        retry_after_ms=max(1, retry_after_ms),
        detail=f"{why}; try again in {retry_after} s.",
        reason=reason,
        decided_here=decided_here,
    )


# The local answers that carry nothing of their own request, made once.
_LOCAL_ANSWERS = {
    shed: PurchaseAnswer(status, detail=_DETAILS[status], decided_here=True)
    for shed, status in (
        (Shed.NOT_STARTED, PurchaseStatus.NOT_STARTED),
        (Shed.ENDED, PurchaseStatus.ENDED),
        (Shed.SOLD_OUT, PurchaseStatus.SOLD_OUT),
    )
}


def _shed_answer(verdict: Verdict) -> PurchaseAnswer:
    """The contract's answer to a local "no" (``decided_here``: stored under an
    Idempotency-Key by ``purchase_steps``, the script not having run)."""
    shed = verdict.shed
    assert shed is not None
    if shed is Shed.WINNER:
        return PurchaseAnswer(
            PurchaseStatus.ALREADY_PURCHASED,
            order_id=verdict.order_id,
            detail=_DETAILS[PurchaseStatus.ALREADY_PURCHASED],
            decided_here=True,
        )
    constant = _LOCAL_ANSWERS.get(shed)
    if constant is not None:
        return constant
    return _rate_limited(verdict.retry_after_ms, shed.value, decided_here=True)


def answer_body(answer: PurchaseAnswer) -> dict[str, Any]:
    """The contract's body of an answer, whatever carries it (the REST API's JSON, the TCP
    door's frame): ``status`` and ``detail``; ``order_id`` and ``remaining_stock`` for a win,
    ``order_id`` for ALREADY_PURCHASED, ``reason`` for RATE_LIMITED. How long to wait travels
    as each transport says it (``Retry-After``, ``retry_after_ms``)."""
    if answer.status is PurchaseStatus.SUCCESS:
        return {
            "status": answer.status.value,
            "detail": answer.detail,
            "order_id": answer.order_id,
            "remaining_stock": answer.remaining_stock,
        }
    body: dict[str, Any] = {"status": answer.status.value, "detail": answer.detail}
    if answer.status is PurchaseStatus.ALREADY_PURCHASED:
        body["order_id"] = answer.order_id
    if answer.reason:
        body["reason"] = answer.reason
    return body


def answer_from_script(ran: ScriptAnswer) -> PurchaseAnswer:
    """The contract's answer to what ``purchase.lua`` decided."""
    status = PurchaseStatus.POW_INVALID if ran.status is ScriptStatus.POW_REUSED else PurchaseStatus(ran.status)
    return PurchaseAnswer(
        status,
        order_id=ran.order_id or None,
        remaining_stock=ran.remaining if ran.remaining >= 0 else None,
        detail=_DETAILS[status],
        kick_drain=ran.kick_drain,
    )


def _record(answer: PurchaseAnswer) -> dict[str, Any]:
    record: dict[str, Any] = {"status": answer.status.value, "detail": answer.detail}
    if answer.order_id:
        record["order_id"] = answer.order_id
    if answer.retry_after_seconds is not None:
        record["retry_after_ms"] = answer.retry_after_seconds * 1000
    if answer.reason:
        record["reason"] = answer.reason
    return record


def answer_from_record(record: dict[str, Any]) -> PurchaseAnswer:
    """The answer stored under an Idempotency-Key (by the script or by ``purchase_steps``)."""
    raw_status = record["status"]
    status = PurchaseStatus.POW_INVALID if raw_status == ScriptStatus.POW_REUSED else PurchaseStatus(raw_status)
    if status is PurchaseStatus.RATE_LIMITED:
        return _rate_limited(int(record.get("retry_after_ms") or 0), str(record.get("reason") or ""))
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


def drain_kick_warm() -> None:
    """Import and connect what ``drain_kick`` needs now, so the first win's kick does not do it
    on an answer's time (in an asyncio server, a thread holding the GIL that long stalls every
    connection). A broker that is away is left for the kicks to retry."""
    try:
        with current_app.producer_or_acquire() as producer:
            producer.connection.ensure_connection(max_retries=1)
    except Exception:  # A warm-up: beat covers a drain the kicks miss.
        logger.warning("could not reach the Celery broker ahead of the first kick", exc_info=True)


def purchase_body_parse(raw: bytes) -> dict[str, str]:
    """The purchase body: empty, or a JSON object with optional string ``challenge`` and
    ``solution`` (at most 64 characters)."""
    if not raw:
        return {}
    body = json_body_load(raw)  # malformed, too deep, lone surrogates: 400
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
