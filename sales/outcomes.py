"""Every outcome of a purchase attempt and the answer it gets, in one place.

An attempt's outcome is named by three parts: the funnel (``funnel.Shed``, answered in the
process), ``purchase.lua`` (``inventory.ScriptStatus``) and the contract
(``PurchaseStatus``, the ``status`` word a client reads). ``OUTCOMES`` gives each status its
sentence and ``core.errors.TRANSPORT_ANSWERS`` its HTTP status (the one table every transport
answers an error code from; a win is 201), ``SHED_STATUS`` and ``SCRIPT_STATUS`` name the status each local
"no" and each script answer becomes, and the functions below build the answer and its body
(docs/design.md, "Purchase answers"). The transports only carry what this module makes: the
REST API as a status and a JSON body, the TCP door as a frame.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from antibot.admission import wait_sentence
from core.errors import TRANSPORT_ANSWERS

from .funnel import Shed, Verdict
from .inventory import ScriptAnswer, ScriptStatus


class PurchaseStatus(StrEnum):
    SUCCESS = "SUCCESS"
    SOLD_OUT = "SOLD_OUT"
    ALREADY_PURCHASED = "ALREADY_PURCHASED"
    NOT_STARTED = "NOT_STARTED"
    ENDED = "ENDED"
    RATE_LIMITED = "RATE_LIMITED"
    POW_INVALID = "POW_INVALID"
    NOT_YOUR_TURN = "NOT_YOUR_TURN"
    QUEUE_PASS_INVALID = "QUEUE_PASS_INVALID"


@dataclass(frozen=True, slots=True)
class Outcome:
    http_status: int
    detail: str
    """The sentence of the answer (RATE_LIMITED's and POW_INVALID's say more: the reason)."""


def _outcome(status: PurchaseStatus, detail: str) -> Outcome:
    http_status = 201 if status is PurchaseStatus.SUCCESS else TRANSPORT_ANSWERS[status].http_status
    return Outcome(http_status, detail)


OUTCOMES: dict[PurchaseStatus, Outcome] = {
    status: _outcome(status, detail)
    for status, detail in (
        (PurchaseStatus.SUCCESS, "You won a unit; your order is being confirmed."),
        (PurchaseStatus.SOLD_OUT, "Sold out: every unit has been sold."),
        (PurchaseStatus.ALREADY_PURCHASED, "You already hold this sale's limit of one unit."),
        (PurchaseStatus.NOT_STARTED, "The sale has not started yet."),
        (PurchaseStatus.ENDED, "The sale has ended."),
        (PurchaseStatus.RATE_LIMITED, "Too many attempts"),
        (PurchaseStatus.POW_INVALID, "reused: this challenge was already spent."),
        (PurchaseStatus.NOT_YOUR_TURN, "Not your turn yet: the line has not reached your place"),
        (PurchaseStatus.QUEUE_PASS_INVALID, "expired: your turn passed; join the line again."),
    )
}

PASS_STALE_DETAIL = "stale: the line holds a newer place of yours; use the pass you were given last."

SHED_STATUS: dict[Shed, PurchaseStatus] = {
    Shed.WINNER: PurchaseStatus.ALREADY_PURCHASED,
    Shed.NOT_STARTED: PurchaseStatus.NOT_STARTED,
    Shed.ENDED: PurchaseStatus.ENDED,
    Shed.SOLD_OUT: PurchaseStatus.SOLD_OUT,
    Shed.USER: PurchaseStatus.RATE_LIMITED,
    Shed.IP: PurchaseStatus.RATE_LIMITED,
    Shed.CROWD: PurchaseStatus.RATE_LIMITED,
    Shed.BUCKET: PurchaseStatus.RATE_LIMITED,
    Shed.NOT_YOUR_TURN: PurchaseStatus.NOT_YOUR_TURN,
    Shed.TURN_PASSED: PurchaseStatus.QUEUE_PASS_INVALID,
}

SCRIPT_STATUS: dict[ScriptStatus, PurchaseStatus] = {
    ScriptStatus.SUCCESS: PurchaseStatus.SUCCESS,
    ScriptStatus.SOLD_OUT: PurchaseStatus.SOLD_OUT,
    ScriptStatus.ALREADY_PURCHASED: PurchaseStatus.ALREADY_PURCHASED,
    ScriptStatus.NOT_STARTED: PurchaseStatus.NOT_STARTED,
    ScriptStatus.ENDED: PurchaseStatus.ENDED,
    ScriptStatus.POW_REUSED: PurchaseStatus.POW_INVALID,
    ScriptStatus.NOT_YOUR_TURN: PurchaseStatus.NOT_YOUR_TURN,
    ScriptStatus.TURN_PASSED: PurchaseStatus.QUEUE_PASS_INVALID,
    ScriptStatus.PASS_STALE: PurchaseStatus.QUEUE_PASS_INVALID,
}
"""``NO_SALE`` and ``KEY_REUSED`` are not answers: the caller reloads the sale, or refuses
the reused key (422)."""

RATE_LIMIT_REASONS: dict[str, str] = {
    Shed.BUCKET: "Too many attempts on this sale right now",
    Shed.CROWD: "More shoppers are trying than units are left",
    Shed.USER: "Too many attempts from your account",
    Shed.IP: "Too many attempts from your address",
}
"""What said RATE_LIMITED (the body's ``reason``), in words."""


@dataclass(frozen=True, slots=True)
class PurchaseAnswer:
    """The outcome of one attempt; a transport turns it into the contract's answer.
    ``reason`` names what said RATE_LIMITED: ``bucket``, ``crowd``, ``user`` or ``ip``."""

    status: PurchaseStatus
    order_id: str | None = None
    remaining_stock: int | None = None
    retry_after_seconds: int | None = None
    retry_after_ms: int | None = None
    detail: str = ""
    reason: str = ""
    kick_drain: bool = field(default=False, compare=False)
    receipt: dict[str, Any] | None = field(default=None, compare=False)
    """The signed promise that the attempt is in the sale's log (sequenced answers only)."""

    @property
    def http_status(self) -> int:
        return OUTCOMES[self.status].http_status

    @property
    def carries_own_body(self) -> bool:
        """The body names something of this request (an order id, the stock, a receipt), so
        it cannot be encoded once for everyone."""
        return self.receipt is not None or self.status in (PurchaseStatus.SUCCESS, PurchaseStatus.ALREADY_PURCHASED)


def rate_limited(retry_after_ms: int, reason: str) -> PurchaseAnswer:
    seconds, detail = wait_sentence(
        RATE_LIMIT_REASONS.get(reason, OUTCOMES[PurchaseStatus.RATE_LIMITED].detail), retry_after_ms
    )
    return PurchaseAnswer(
        PurchaseStatus.RATE_LIMITED,
        retry_after_seconds=seconds,
        retry_after_ms=max(1, retry_after_ms),
        detail=detail,
        reason=reason,
    )


def not_your_turn(retry_after_ms: int) -> PurchaseAnswer:
    seconds, detail = wait_sentence(OUTCOMES[PurchaseStatus.NOT_YOUR_TURN].detail, retry_after_ms)
    return PurchaseAnswer(
        PurchaseStatus.NOT_YOUR_TURN, retry_after_seconds=seconds, retry_after_ms=max(1, retry_after_ms), detail=detail
    )


def _fixed(status: PurchaseStatus) -> PurchaseAnswer:
    return PurchaseAnswer(status, detail=OUTCOMES[status].detail)


# The local answers that carry nothing of their own request, made once.
_FIXED_ANSWERS: dict[Shed, PurchaseAnswer] = {
    shed: _fixed(SHED_STATUS[shed]) for shed in (Shed.NOT_STARTED, Shed.ENDED, Shed.SOLD_OUT, Shed.TURN_PASSED)
}


def answer_for_verdict(verdict: Verdict) -> PurchaseAnswer:
    """The contract's answer to a "no" the funnel gave in the process."""
    shed = verdict.shed
    assert shed is not None
    if shed is Shed.WINNER:
        status = PurchaseStatus.ALREADY_PURCHASED
        return PurchaseAnswer(status, order_id=verdict.order_id, detail=OUTCOMES[status].detail)
    fixed = _FIXED_ANSWERS.get(shed)
    if fixed is not None:
        return fixed
    if shed is Shed.NOT_YOUR_TURN:
        return not_your_turn(verdict.retry_after_ms)
    return rate_limited(verdict.retry_after_ms, shed.value)


def answer_for_refused_proof(reason: str) -> PurchaseAnswer:
    """POW_INVALID, with the refusal's reason as its sentence."""
    return PurchaseAnswer(PurchaseStatus.POW_INVALID, detail=reason)


def answer_for_refused_pass(reason: str) -> PurchaseAnswer:
    """QUEUE_PASS_INVALID, with the refusal's reason as its sentence."""
    return PurchaseAnswer(PurchaseStatus.QUEUE_PASS_INVALID, detail=reason)


def answer_for_script(ran: ScriptAnswer, *, receipt: dict[str, Any] | None = None) -> PurchaseAnswer:
    """The contract's answer to what ``purchase.lua`` decided (or, replayed, had decided),
    with the receipt of its log entry."""
    if ran.status is ScriptStatus.NOT_YOUR_TURN:
        answer = not_your_turn(ran.retry_after_ms)
    elif ran.status is ScriptStatus.PASS_STALE:
        answer = answer_for_refused_pass(PASS_STALE_DETAIL)
    else:
        # Built with its receipt: a win pays no second dataclass (``dataclasses.replace``).
        status = SCRIPT_STATUS[ran.status]
        return PurchaseAnswer(
            status,
            order_id=ran.order_id or None,
            remaining_stock=ran.remaining if ran.remaining >= 0 else None,
            detail=OUTCOMES[status].detail,
            kick_drain=ran.kick_drain,
            receipt=receipt,
        )
    return answer if receipt is None else dataclasses.replace(answer, receipt=receipt)


def answer_body(answer: PurchaseAnswer) -> dict[str, Any]:
    """The contract's body of an answer, whatever carries it (the REST API's JSON, the TCP
    door's frame): ``status`` and ``detail``; ``order_id`` and ``remaining_stock`` for a win,
    ``order_id`` for ALREADY_PURCHASED, ``reason`` for RATE_LIMITED. How long to wait travels
    as each transport says it (``Retry-After``, ``retry_after_ms``)."""
    if answer.status is PurchaseStatus.SUCCESS:
        won: dict[str, Any] = {
            "status": answer.status.value,
            "detail": answer.detail,
            "order_id": answer.order_id,
            "remaining_stock": answer.remaining_stock,
        }
        if answer.receipt is not None:
            won["receipt"] = answer.receipt
        return won
    body: dict[str, Any] = {"status": answer.status.value, "detail": answer.detail}
    if answer.status is PurchaseStatus.ALREADY_PURCHASED:
        body["order_id"] = answer.order_id
    if answer.reason:
        body["reason"] = answer.reason
    if answer.receipt is not None:
        body["receipt"] = answer.receipt
    return body
