"""The waiting room: joining a queue-mode sale's line, and reading one's place in it.

A join is one call of ``lua/join.lua``, which gives the next number in arrival order (or the
shopper's place again: one per account) and answers with the line around it; the shopper
gets a pass (``sales.passes``) that their purchase and their place reads carry. A place read
with a pass is answered by this process alone, from its model of the sale (``sales.known``:
the counter's last reading, moved on at the serving rate, ``sales.line``); without one it
asks the script. Both are steps (``core.steps``), for the REST API and the TCP door alike.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from enum import StrEnum

from django.conf import settings

from antibot.admission import RateLimited
from antibot.challenges import ChallengeRefused, challenge_verify
from core.errors import ApplicationError, NotFound
from core.steps import Steps, drive

from . import funnel, inventory, line
from .inventory import JoinAnswer, JoinStatus
from .known import KnownSale, known_sales
from .line import LineState
from .outcomes import RATE_LIMIT_REASONS
from .passes import PassRefused, pass_issue, pass_number
from .purchase import SaleNotFound, sale_known_steps
from .receipts import receipt_for, shopper_hash
from .tally import tally


class SaleNotQueued(ApplicationError):
    code = "SALE_NOT_QUEUED"
    default_detail = "This sale has no line: shoppers buy directly at /purchase/."


class QueueNotOpen(ApplicationError):
    code = "QUEUE_NOT_OPEN"
    default_detail = "The line has not opened yet."

    def __init__(self, wait_ms: int) -> None:
        seconds = max(1, math.ceil(wait_ms / 1000))
        super().__init__(f"The line opens in {seconds} s.", headers={"Retry-After": str(seconds)})


class QueuePassInvalid(ApplicationError):
    code = "QUEUE_PASS_INVALID"
    default_detail = "This pass does not hold a place in this line."


class NotInLine(NotFound):
    default_detail = "You have no place in this line; join it first (POST)."


class LineSoldOut(ApplicationError):
    """Nobody waits in a line for stock that is gone."""

    code = "SOLD_OUT"
    default_detail = "Sold out: every unit has been sold."


class AlreadyBought(ApplicationError):
    """A buyer needs no place: they hold their unit (the order is in the body)."""

    code = "ALREADY_PURCHASED"
    default_detail = "You already hold this sale's limit of one unit."

    def __init__(self, order_id: str) -> None:
        super().__init__(extra={"order_id": order_id})


class LineEnded(ApplicationError):
    code = "ENDED"
    default_detail = "The sale has ended."


class JoinProofRefused(ApplicationError):
    code = "POW_INVALID"


class PlaceStatus(StrEnum):
    PRE_QUEUE = "pre_queue"
    WAITING = "waiting"
    ADMITTED = "admitted"
    TURN_PASSED = "turn_passed"


@dataclass(frozen=True, slots=True)
class Place:
    """A shopper's place in the line, as the contract shows it."""

    number: int
    position: int
    ahead: int
    served: int
    eta_seconds: float | None
    queue_pass: str
    status: PlaceStatus
    rate_per_second: float
    created: bool = False
    receipt: dict[str, object] | None = None
    """The signed promise that the join is in the sale's log (a join that gave the number)."""


def place_body(place: Place) -> dict[str, object]:
    """The contract's body of a place, whatever carries it (the REST API, the TCP door)."""
    body: dict[str, object] = {
        "number": place.number,
        "position": place.position,
        "ahead": place.ahead,
        "served": place.served,
        "eta_seconds": None if place.eta_seconds is None else round(place.eta_seconds, 1),
        "rate_per_second": place.rate_per_second,
        "pass": place.queue_pass,
        "status": place.status.value,
    }
    if place.receipt is not None:
        body["receipt"] = place.receipt
    return body


_PLACED = {
    JoinStatus.PRE_QUEUE: PlaceStatus.PRE_QUEUE,
    JoinStatus.WAITING: PlaceStatus.WAITING,
    JoinStatus.ADMITTED: PlaceStatus.ADMITTED,
    JoinStatus.TURN_PASSED: PlaceStatus.TURN_PASSED,
}


def _queued(known: KnownSale) -> None:
    if not known.snapshot.plan.queued:
        raise SaleNotQueued()


def queue_join_steps(
    *, sale_id: int, user_id: int, client_ip: str = "", challenge: str | None = None, solution: str | None = None
) -> Steps[Place]:
    """Join the line (or hear one's place again), as steps: the per-user and per-IP windows
    and the proof of work (when the sale asks for one) in process, then one script call.
    Raises ``SaleNotFound``, ``SaleNotQueued``, ``RateLimited``, ``JoinProofRefused``,
    ``QueueNotOpen``, ``LineSoldOut``, ``LineEnded``, ``Unavailable``."""
    known = yield from sale_known_steps(sale_id)
    _queued(known)
    now = time.time()
    over = known.count_windows(user_id=user_id, client_ip=client_ip, now=now)
    if over.shed is not None:
        tally.count(sale_id, f"queue:shed:{over.shed}")
        raise RateLimited(over.retry_after_ms, reason=over.shed.value, why=RATE_LIMIT_REASONS[over.shed])
    if known.snapshot.plan.pow_difficulty > 0:
        try:
            challenge_verify(
                challenge=challenge, solution=solution, scope_id=sale_id, user_id=user_id, now_ms=int(now * 1000)
            )
        except ChallengeRefused as refused:
            tally.count(sale_id, "queue:shed:pow")
            raise JoinProofRefused(refused.reason) from None
    answer = yield from _ask(known, user_id=user_id, read_only=False)
    tally.count(sale_id, "queue:joined" if answer.created else "queue:rejoined")
    return _place(known, answer, user_id=user_id)


def queue_place_steps(*, sale_id: int, user_id: int, queue_pass: str | None = None) -> Steps[Place]:
    """The shopper's place: from this process's model when they show their pass (no round
    trip), else from the script. Raises ``SaleNotFound``, ``SaleNotQueued``,
    ``QueuePassInvalid``, ``NotInLine``, ``LineSoldOut``, ``LineEnded``, ``Unavailable``."""
    known = yield from sale_known_steps(sale_id)
    _queued(known)
    if queue_pass:
        try:
            number = pass_number(queue_pass, sale_id=sale_id, user_id=user_id)
        except PassRefused as refused:
            raise QueuePassInvalid(refused.reason) from None
        place = _place_here(known, number=number, queue_pass=queue_pass)
        if place is not None:
            return place
    answer = yield from _ask(known, user_id=user_id, read_only=True)
    return _place(known, answer, user_id=user_id)


def _ask(known: KnownSale, *, user_id: int, read_only: bool) -> Steps[JoinAnswer]:
    answer = JoinAnswer.from_reply(
        (
            yield inventory.join_call(
                sale_id=known.sale_id,
                user_id=user_id,
                read_only=read_only,
                turn_seconds=settings.FLASHSALE_QUEUE_TURN_SECONDS,
                crowd_interval_ms=settings.FLASHSALE_CROWD_INTERVAL_MS,
                shopper=shopper_hash(sale_id=known.sale_id, user_id=user_id) if settings.FLASHSALE_LOG_ENABLED else "",
            )
        )
    )
    if answer.status is JoinStatus.NO_SALE:
        known.meta_stale()
        raise SaleNotFound("The sale is being reloaded; try again.")
    if answer.status is JoinStatus.NOT_QUEUED:
        known.meta_stale()
        raise SaleNotQueued()
    if answer.status is JoinStatus.NOT_OPEN:
        meta = known.meta
        opens_at_ms = (meta.pre_queue_opens_at_ms or meta.starts_at_ms) if meta is not None else answer.now_ms
        raise QueueNotOpen(opens_at_ms - answer.now_ms)
    if answer.status is JoinStatus.ALREADY_PURCHASED:
        raise AlreadyBought(answer.order_id)
    if answer.status is JoinStatus.SOLD_OUT:
        raise LineSoldOut()
    if answer.status is JoinStatus.ENDED:
        raise LineEnded()
    if answer.status is JoinStatus.NOT_IN_LINE:
        raise NotInLine()
    if answer.now_ms >= known.snapshot.starts_at_ms > 0:
        known.heard_line(
            LineState(
                joined=answer.joined, served=answer.served, at_ms=answer.now_ms, measured_rate=answer.measured_rate
            )
        )
    return answer


def _place(known: KnownSale, answer: JoinAnswer, *, user_id: int) -> Place:
    ahead = line.ahead_of(position_in_line=answer.position, served=answer.served)
    rate = answer.measured_rate or answer.rate
    return Place(
        number=answer.number,
        position=answer.position,
        ahead=ahead,
        served=math.floor(answer.served),
        eta_seconds=line.eta_seconds(ahead=ahead, rate=rate),
        queue_pass=pass_issue(sale_id=known.sale_id, user_id=user_id, number=answer.number),
        status=_PLACED[answer.status],
        rate_per_second=round(rate, 3),
        created=answer.created,
        receipt=(
            receipt_for(sale_id=known.sale_id, seq=answer.seq, entry=answer.entry.encode(), time_ms=answer.now_ms)
            if answer.seq >= 0
            else None
        ),
    )


def _place_here(known: KnownSale, *, number: int, queue_pass: str) -> Place | None:
    """The place by this process's model of the line, or None when it cannot tell (a
    shuffled pre-queue's order it has not heard yet)."""
    snapshot = known.snapshot
    redis_now_ms = known_sales.clock.now_ms()
    if snapshot.ends_at_ms and redis_now_ms >= snapshot.ends_at_ms:
        raise LineEnded()
    if snapshot.sold_out:
        raise LineSoldOut()
    rate = funnel.line_rate(snapshot)
    if redis_now_ms < snapshot.starts_at_ms:
        return Place(number, number, number - 1, 0, None, queue_pass, PlaceStatus.PRE_QUEUE, round(rate, 3))
    position = funnel.line_position(snapshot, number)
    if position is None:
        return None
    state = snapshot.line
    served = min(
        line.served_at(state, rate=rate, starts_at_ms=snapshot.starts_at_ms, now_ms=redis_now_ms),
        max(state.joined, position),
    )
    ahead = line.ahead_of(position_in_line=position, served=served)
    if position > served:
        status = PlaceStatus.WAITING
    elif line.turn_passed(
        position_in_line=position,
        served=line.served_at_least(state, rate=rate, starts_at_ms=snapshot.starts_at_ms, now_ms=redis_now_ms)
        - funnel.QUEUE_MARGIN_SECONDS * rate,
        rate=rate,
        turn_seconds=snapshot.plan.turn_seconds,
    ):
        status = PlaceStatus.TURN_PASSED
    else:
        status = PlaceStatus.ADMITTED
    measured = state.measured_rate or rate
    return Place(
        number=number,
        position=position,
        ahead=ahead,
        served=math.floor(served),
        eta_seconds=line.eta_seconds(ahead=ahead, rate=measured),
        queue_pass=queue_pass,
        status=status,
        rate_per_second=round(measured, 3),
    )


def queue_join(**join: object) -> Place:
    """``queue_join_steps`` on this process's blocking client."""
    return drive(queue_join_steps(**join))  # type: ignore[arg-type]


def queue_place(**read: object) -> Place:
    """``queue_place_steps`` on this process's blocking client."""
    return drive(queue_place_steps(**read))  # type: ignore[arg-type]
