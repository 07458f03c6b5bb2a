"""The hot path: one purchase attempt, from the caller's identity to a typed answer.

The attempt is written once, as steps (``core.steps``): the WSGI processes drive it on a
blocking Redis client, the TCP door on an asyncio one. In the funnel's order (docs/design.md,
"The purchase path"), each layer answering what it can without the next:

1. the sale as this process knows it (``sales.known``): read from Redis at most every
   ``FLASHSALE_META_LOCAL_SECONDS`` (one call, which also brings the stock and the clock);
2. the local answers (``sales.funnel``'s rules): a winner's order, the window, the sold-out
   marker, the per-user and per-IP windows, stock-aware crowd admission;
3. the proof of work, checked in process;
4. a bucket token, leased from Redis in batches;
5. ``purchase.lua``: one round trip, atomic.

A winning attempt costs the script's round trip (and a lease call per batch); a "no" from
layers 2-4 costs none once the process knows the sale. Every answer is counted
(``sales.tally``) and named by ``sales.outcomes``. Nothing here waits for PostgreSQL or
Celery.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from typing import Any

from celery import current_app
from django.conf import settings

from antibot.admission import RateLimited
from antibot.challenges import (
    MAX_CHALLENGE_LENGTH,
    Challenge,
    ChallengeRefused,
    challenge_issue_steps,
    challenge_verify,
)
from antibot.idempotency import IdempotencyKeyReused, IdempotentRequest
from antibot.proof_of_work import MAX_SOLUTION_LENGTH
from core.errors import InvalidRequest, NotFound
from core.events import subscription
from core.steps import DatabaseWork, Steps, drive
from core.strict_json import json_body_load

from . import funnel, inventory, keys, outcomes
from .funnel import Shed, Verdict, lease_batch
from .inventory import IdempotencyPolicy, IdempotencyRecord, Lease, ScriptAnswer, ScriptStatus
from .known import KnownSale, known_sales
from .models import MAX_SALE_ID, FlashSale
from .outcomes import PurchaseAnswer
from .passes import MAX_PASS_LENGTH, PassRefused, pass_number
from .receipts import receipt_for, shopper_hash
from .tally import tally
from .warming import sale_meta_for, sale_warm

logger = logging.getLogger(__name__)

DRAIN_TASK = "orders.tasks.drain_sale_orders"
"""Sent by name: the orders app, above this one, owns the drain."""


class SaleNotFound(NotFound):
    default_detail = "There is no such sale."


def sale_known_steps(sale_id: int) -> Steps[KnownSale]:
    """The sale as this process knows it, its meta read from Redis when stale.

    A sale missing from Redis is loaded from PostgreSQL if it exists: the one SQL query a
    purchase can cause, and only before beat or the admin warmed the sale.
    Raises ``SaleNotFound``.
    """
    known = known_sales.find(sale_id)
    if known is not None and known.fresh:
        return known
    if not 0 < sale_id <= MAX_SALE_ID:
        raise SaleNotFound()
    known = yield from known_sales.load_steps(sale_id)
    if known is None:
        meta = yield DatabaseWork(lambda: _warm_from_database(sale_id))
        if meta is None:
            raise SaleNotFound()
        known = known_sales.heard_meta(meta)
    return known


def _warm_from_database(sale_id: int) -> inventory.SaleMeta | None:
    sale = FlashSale.objects.select_related("product").filter(pk=sale_id).first()
    if sale is None:
        return None
    sale_warm(sale=sale)
    return sale_meta_for(sale)


def sale_challenge_steps(*, sale_id: int, user_id: int, client_ip: str = "") -> Steps[Challenge]:
    """A proof-of-work challenge for this shopper and sale, at the sale's difficulty floor
    (raised by the sale's challenge rate), as steps. A challenge request counts in the same
    per-user and per-IP windows as purchases (in this process). Raises ``SaleNotFound`` and
    ``RateLimited``."""
    known = yield from sale_known_steps(sale_id)
    over = known.count_windows(user_id=user_id, client_ip=client_ip, now=time.time())
    if over.shed is not None:
        raise RateLimited(over.retry_after_ms, reason=over.shed.value, why=outcomes.RATE_LIMIT_REASONS[over.shed])
    return (
        yield from challenge_issue_steps(
            keyspace=keys.keyspace(sale_id),
            scope_id=sale_id,
            user_id=user_id,
            floor_difficulty=known.snapshot.plan.pow_difficulty,
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
    queue_pass: str | None = None,
) -> Steps[PurchaseAnswer]:
    """One attempt to buy a unit of ``sale_id`` for ``user_id``, as steps (module docstring).
    A queue-mode sale asks for ``queue_pass``, the pass its line gave the shopper, instead of
    a proof of work (that was asked at the join).

    With an Idempotency-Key, the answer stored for it is given again and nothing else runs
    (docs/design.md, "Idempotency-Key"): ``purchase.lua`` looks it up first and stores only
    final answers; a "no" the funnel gives here is never stored (nothing was attempted), and
    costs one lookup only when it would tell a winner their order.

    Raises ``SaleNotFound``, ``IdempotencyKeyReused`` and ``Unavailable`` (Redis away); the
    purchase script is atomic, so a failure leaves nothing half-done.
    """
    known = yield from sale_known_steps(sale_id)
    tally.count(sale_id, "arrived")
    answer = yield from _attempt(
        known,
        user_id=user_id,
        client_ip=client_ip,
        challenge=challenge,
        solution=solution,
        idempotency=idempotency,
        queue_pass=queue_pass,
    )
    tally.count(sale_id, f"answer:{answer.status}")
    return answer


def purchase_attempt(**attempt: Any) -> PurchaseAnswer:
    """``purchase_steps`` on this process's blocking client."""
    return drive(purchase_steps(**attempt))


def _attempt(
    known: KnownSale,
    *,
    user_id: int,
    client_ip: str,
    challenge: str | None,
    solution: str | None,
    idempotency: IdempotentRequest | None,
    queue_pass: str | None,
) -> Steps[PurchaseAnswer]:
    sale_id = known.sale_id
    live = subscription.live
    if live and not known.snapshot.winners_complete:
        known.heard_holders(inventory.holders_from_reply((yield inventory.holders_call(sale_id))))
    now = time.time()
    verdict = known.admit(
        user_id=user_id, client_ip=client_ip, live=live, redis_now_ms=known_sales.clock.now_ms(now), now=now
    )
    if verdict.shed is not None:
        return (yield from _local_no(sale_id, verdict, user_id=user_id, winners_known=live, idempotency=idempotency))

    plan = known.snapshot.plan
    nonce = ""
    queue_number = 0
    if plan.queued:
        try:
            queue_number = pass_number(queue_pass, sale_id=sale_id, user_id=user_id)
        except PassRefused as refused:
            tally.count(sale_id, "shed:pass")
            return outcomes.answer_for_refused_pass(refused.reason)
        turn = funnel.queue_judge(known.snapshot, number=queue_number, redis_now_ms=known_sales.clock.now_ms(now))
        if turn.shed is not None:
            return (yield from _local_no(sale_id, turn, user_id=user_id, winners_known=live, idempotency=idempotency))
    elif plan.pow_difficulty > 0:
        # A 429 the proof could not change is answered before checking it (docs/funnel.md).
        spent = known.refused_before_proof(now=now, monotonic=time.monotonic(), crowd=live)
        if spent is not None:
            return (yield from _local_no(sale_id, spent, user_id=user_id, winners_known=live, idempotency=idempotency))
        try:
            nonce = challenge_verify(
                challenge=challenge, solution=solution, scope_id=sale_id, user_id=user_id, now_ms=int(now * 1000)
            )
        except ChallengeRefused as refused:
            tally.count(sale_id, "shed:pow")
            return outcomes.answer_for_refused_proof(refused.reason)

    if live and not plan.queued:  # A queue-mode sale's line is its crowd admission.
        crowd = known.admit_crowd(now=now)
        if crowd.shed is not None:
            return (yield from _local_no(sale_id, crowd, user_id=user_id, winners_known=True, idempotency=idempotency))

    token = known.take_token(now=time.monotonic())
    if token is None:
        want = lease_batch(plan.bucket_refill_per_second, plan.bucket_capacity)
        lease = Lease.from_reply((yield inventory.lease_call(sale_id=sale_id, want=want)))
        if lease.granted < 0:
            known.meta_stale()
            raise SaleNotFound("The sale is being reloaded; try again.")
        token = known.leased(granted=lease.granted, retry_after_ms=lease.retry_after_ms, now=time.monotonic())
    if token.shed is not None:
        return (yield from _local_no(sale_id, token, user_id=user_id, winners_known=live, idempotency=idempotency))

    order_id = str(uuid.uuid4())
    shopper = shopper_hash(sale_id=sale_id, user_id=user_id) if settings.FLASHSALE_LOG_ENABLED else ""
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
                idempotency=_idempotency_policy() if idempotency else None,
                queue_number=queue_number,
                turn_seconds=settings.FLASHSALE_QUEUE_TURN_SECONDS,
                crowd_interval_ms=settings.FLASHSALE_CROWD_INTERVAL_MS,
                shopper=shopper,
                drain_kick_ms=settings.FLASHSALE_DRAIN_KICK_MS,
            )
        )
    )
    if ran.status is ScriptStatus.NO_SALE:  # Reset between the meta read and the script.
        known.meta_stale()
        raise SaleNotFound("The sale is being reloaded; try again.")
    if ran.status is ScriptStatus.KEY_REUSED:
        raise IdempotencyKeyReused()
    if ran.replayed:  # An earlier answer: nothing new was heard.
        return outcomes.answer_for_script(ran, receipt=_receipt(sale_id, ran))
    if ran.status is ScriptStatus.ALREADY_PURCHASED and ran.order_id == order_id:
        # The connection dropped after the script ran and the client ran it again: the unit
        # held is the one this very request won.
        ran = dataclasses.replace(ran, status=ScriptStatus.SUCCESS)
    known.heard_answer(
        status=ran.status,
        user_id=user_id,
        order_id=ran.order_id,
        remaining=ran.remaining,
        at_ms=ran.now_ms,
        live=subscription.live,
    )
    if ran.status is ScriptStatus.SUCCESS:
        # One line per win (never per refusal): the order id the drain logs again.
        logger.info("order won", extra={"order_id": ran.order_id, "sale_id": sale_id, "user_id": user_id})
    return outcomes.answer_for_script(ran, receipt=_receipt(sale_id, ran))


def _receipt(sale_id: int, ran: ScriptAnswer) -> dict[str, Any] | None:
    """The signed receipt of the attempt's log entry (None: it was not logged)."""
    if ran.seq < 0:
        return None
    return receipt_for(sale_id=sale_id, seq=ran.seq, entry=ran.entry.encode(), time_ms=ran.now_ms)


def _local_no(
    sale_id: int, verdict: Verdict, *, user_id: int, winners_known: bool, idempotency: IdempotentRequest | None
) -> Steps[PurchaseAnswer]:
    """A "no" given in the process, counted. Without a trusted winners table (the
    subscription is not live) Redis is asked first: a winner hears their order anyway. A
    winner who sent an Idempotency-Key hears that key's stored answer if it has one (the win
    itself, retried)."""
    if not winners_known and verdict.shed is not Shed.WINNER:
        held = yield inventory.holders_call(sale_id, user_id)
        if held:
            verdict = Verdict(Shed.WINNER, order_id=held)
    if verdict.shed is Shed.WINNER and idempotency is not None:
        stored = yield inventory.idempotency_record_call(sale_id=sale_id, user_id=user_id, digest=idempotency.digest)
        if stored:
            record = IdempotencyRecord.parse(
                stored, sale_id=sale_id, shopper=shopper_hash(sale_id=sale_id, user_id=user_id)
            )
            if record.fingerprint != idempotency.fingerprint:
                raise IdempotencyKeyReused()
            tally.count(sale_id, "shed:winner")
            return outcomes.answer_for_script(record.answer, receipt=_receipt(sale_id, record.answer))
    tally.count(sale_id, f"shed:{verdict.shed}")
    return outcomes.answer_for_verdict(verdict)


def _idempotency_policy() -> IdempotencyPolicy:
    return IdempotencyPolicy(
        per_shopper=settings.ANTIBOT_IDEMPOTENCY_KEYS_PER_SHOPPER,
        after_end_ms=settings.ANTIBOT_IDEMPOTENCY_AFTER_END_SECONDS * 1000,
        longest_ms=settings.ANTIBOT_IDEMPOTENCY_TTL_SECONDS * 1000,
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


PURCHASE_FIELDS = {"challenge": MAX_CHALLENGE_LENGTH, "solution": MAX_SOLUTION_LENGTH, "pass": MAX_PASS_LENGTH}
"""The purchase body's fields and the longest each may be."""
JOIN_FIELDS = {"challenge": MAX_CHALLENGE_LENGTH, "solution": MAX_SOLUTION_LENGTH}


def purchase_body_parse(raw: bytes, fields: dict[str, int] = PURCHASE_FIELDS) -> dict[str, str]:
    """The purchase body (or a join's, with ``JOIN_FIELDS``): empty, or a JSON object whose
    every field is one of ``fields``, a string no longer than the field allows."""
    if not raw:
        return {}
    body = json_body_load(raw)  # malformed, too deep, lone surrogates: 400
    if not isinstance(body, dict):
        raise InvalidRequest("The body must be a JSON object.")
    unknown = set(body) - set(fields)
    if unknown:
        raise InvalidRequest(f"Unknown field(s): {', '.join(sorted(map(str, unknown)))}.")
    for name, longest in fields.items():
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise InvalidRequest(f"{name} must be a string.")
        if len(value) > longest:
            raise InvalidRequest(f"{name} must be at most {longest} characters.")
    return {name: value for name, value in body.items() if value is not None}
