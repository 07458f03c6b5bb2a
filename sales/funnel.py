"""The admission funnel's rules: what a process answers on its own, with no network call, and
what it lets through to ``purchase.lua`` (docs/design.md, "The purchase path").

Every rule here is a pure function: of a ``SaleSnapshot`` (what this process believes about
one sale at one instant, kept by ``sales.known``) or of a small counter, and of a ``now``
passed in. Nothing here reads a clock, takes a lock, starts a thread or calls Redis, so each
rule is tested on its own (``tests/fast/``). ``sales.known`` holds the state and applies them.

What a process knows of a sale, and how each part is kept:

- the window, in Redis ms, judged by this process's clock corrected to Redis's with a margin
  (``WINDOW_MARGIN_MS``): only attempts clearly outside it are answered here;
- the buyers (user -> order id), so that a winner hears ``ALREADY_PURCHASED`` with their
  order from every layer: completed from Redis once per sale, then kept by the events, which
  carry every win's order id;
- the sold-out marker: set when the script said SOLD_OUT or a win took the last unit (this
  process's, or another's heard as an event), cleared by a stock-return event newer than it
  (Redis clock);
- the remaining stock R, newest by Redis clock among the events, meta reads and answers;
- per-user and per-IP fixed windows, counted in this process;
- crowd admission: at most ``ceil(k x R)`` attempts per interval go on to the script, R the
  stock left when the interval began (k is the sale's ``crowd_factor``; u units coming back
  during it add ``ceil(k x u)``), the rest hear 429 ``reason: "crowd"``;
- bucket tokens, leased from Redis in batches (``lua/lease.lua``) and handed out here.

The answers that rest on what the events keep current (the winners, the sold-out marker, the
stock behind crowd admission) are given only while the process's subscription is live: a
process that cannot hear a win or a unit coming back must not answer for Redis.

How far local admission can exceed the sale's rate (docs/funnel.md): tokens all come from the
one bucket in Redis, so over any interval T the sale admits at most ``capacity + refill x T``
plus what the processes held when T began, at most one lease each (``P x batch``); a lease's
unspent tokens are dropped after ``LEASE_SECONDS``, so no process saves them up, and a
process that dies takes only its unspent lease with it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from enum import StrEnum

from . import line
from .line import LineState

LEASE_SECONDS = 1.0
"""A lease's unspent tokens are dropped after this long."""
LEASE_BATCH_MAX = 64
WINDOW_MARGIN_MS = 200
"""Attempts within this of the window's edges (by the corrected clock) go to the script,
which judges by the Redis clock itself."""


class Shed(StrEnum):
    """Why an attempt was answered without the script (the stats' ``shed:<reason>``)."""

    WINNER = "winner"
    NOT_STARTED = "not_started"
    ENDED = "ended"
    SOLD_OUT = "sold_out"
    USER = "user"
    IP = "ip"
    CROWD = "crowd"
    BUCKET = "bucket"
    NOT_YOUR_TURN = "not_your_turn"
    TURN_PASSED = "turn_passed"


@dataclass(frozen=True, slots=True)
class Verdict:
    """``shed`` None: go on. Otherwise the local answer, with the winner's order id or when
    to come back."""

    shed: Shed | None = None
    order_id: str = ""
    retry_after_ms: int = 0


GO_ON = Verdict()


@dataclass(frozen=True, slots=True)
class AdmissionPlan:
    """How a sale admits attempts: its meta's settings and the process's limits."""

    pow_difficulty: int = 0
    crowd_factor: float = 0.0
    crowd_interval_ms: int = 1000
    bucket_capacity: int = 1
    bucket_refill_per_second: int = 1
    user_limit: int = 0
    ip_limit: int = 0
    rate_window_seconds: int = 1
    queued: bool = False
    """The sale lets shoppers in by their place in its line (``sales.line``)."""
    serving_rate: int = 0
    """Queue mode: shoppers let in per second; 0: auto, from the units left."""
    shuffle_pre_queue: bool = False
    turn_seconds: int = 60


NO_LINE = LineState()


@dataclass(frozen=True, slots=True)
class SaleSnapshot:
    """What this process believes about one sale at one instant. Immutable: ``sales.known``
    replaces it whole when something is heard, so a reader needs no lock."""

    sale_id: int
    starts_at_ms: int = 0
    """0 with ``ends_at_ms``: the window is not judged here (unknown, or being reloaded)."""
    ends_at_ms: int = 0
    total: int = 0
    remaining: int | None = None
    remaining_at_ms: int = -1
    sold_out_at_ms: int | None = None
    returned_at_ms: int = -1
    winners_complete: bool = False
    """The winners table holds every buyer (loaded from Redis, then kept by the events)."""
    plan: AdmissionPlan = AdmissionPlan()
    line: LineState = NO_LINE
    """A queue-mode sale's line, newest heard by the Redis clock."""

    @property
    def sold_out(self) -> bool:
        return self.sold_out_at_ms is not None


# --- Decisions ------------------------------------------------------------------------------


def judge(snapshot: SaleSnapshot, *, redis_now_ms: float, held: str | None) -> Verdict:
    """The local checks before the windows and the proof of work, in the funnel's order: a
    winner (``held``: the order the caller holds, looked up only when the winners can be
    trusted), the window with its margin, the sold-out marker."""
    if held is not None:
        return Verdict(Shed.WINNER, order_id=held)
    if snapshot.starts_at_ms and redis_now_ms < snapshot.starts_at_ms - WINDOW_MARGIN_MS:
        return Verdict(Shed.NOT_STARTED, retry_after_ms=int(snapshot.starts_at_ms - redis_now_ms))
    if snapshot.ends_at_ms and redis_now_ms >= snapshot.ends_at_ms + WINDOW_MARGIN_MS:
        return Verdict(Shed.ENDED)
    if snapshot.sold_out_at_ms is not None:
        return Verdict(Shed.SOLD_OUT)
    return GO_ON


QUEUE_MARGIN_SECONDS = 0.5
"""A place within this much of the counter's move (at the serving rate) goes on to the
script, which judges by Redis's counter itself."""


def line_rate(snapshot: SaleSnapshot) -> float:
    """The line's serving rate now: the sale's own, or auto from the units known left."""
    plan = snapshot.plan
    remaining = snapshot.remaining if snapshot.remaining is not None else snapshot.total
    return line.serving_rate(
        configured=plan.serving_rate,
        crowd_factor=plan.crowd_factor,
        remaining=remaining,
        crowd_interval_ms=plan.crowd_interval_ms,
    )


def line_position(snapshot: SaleSnapshot, number: int) -> int | None:
    """Where ``number`` stands, or None while this process cannot tell: a shuffled pre-queue
    whose size and seed it has not heard since the start."""
    if not snapshot.plan.shuffle_pre_queue:
        return number
    state = snapshot.line
    if state.pre_queue < 0:
        return None
    if number > state.pre_queue:
        return number
    if not state.seed:
        return None
    return line.position(seed=state.seed, pre_queue=state.pre_queue, number=number)


def queue_judge(snapshot: SaleSnapshot, *, number: int, redis_now_ms: float) -> Verdict:
    """A queue-mode purchase, by this process's view of the line: NOT_YOUR_TURN (and when to
    come back) while the counter is clearly short of the shopper's place, TURN_PASSED once it
    is clearly past their turn; otherwise the script judges by Redis's counter."""
    rate = line_rate(snapshot)
    place = line_position(snapshot, number)
    if place is None or redis_now_ms < snapshot.starts_at_ms:
        return GO_ON
    served = line.served_at(snapshot.line, rate=rate, starts_at_ms=snapshot.starts_at_ms, now_ms=redis_now_ms)
    margin = rate * QUEUE_MARGIN_SECONDS + 1
    if place > served + margin:
        wait_ms = int((place - served) * 1000 / rate) + 1 if rate > 0 else 1000
        return Verdict(Shed.NOT_YOUR_TURN, retry_after_ms=wait_ms)
    if line.turn_passed(
        position_in_line=place,
        served=line.served_at_least(snapshot.line, rate=rate, starts_at_ms=snapshot.starts_at_ms, now_ms=redis_now_ms)
        - margin,
        rate=rate,
        turn_seconds=snapshot.plan.turn_seconds,
    ):
        return Verdict(Shed.TURN_PASSED)
    return GO_ON


def window_retry_after_ms(*, now: float, window_seconds: int) -> int:
    """Milliseconds until the fixed window that holds ``now`` ends (at least 1)."""
    number = int(now // window_seconds)
    return int(((number + 1) * window_seconds - now) * 1000) + 1


def window_over(calls: int, *, limit: int, shed: Shed, now: float, window_seconds: int) -> Verdict | None:
    """The ``calls``-th call of one user (or address) in the current fixed window: a refusal
    once it passes ``limit`` (0: no limit)."""
    if limit <= 0 or calls <= limit:
        return None
    return Verdict(shed, retry_after_ms=window_retry_after_ms(now=now, window_seconds=window_seconds))


@dataclass(frozen=True, slots=True)
class CrowdCount:
    """Crowd admission's count: the interval it is for, attempts let through, how many it allows."""

    interval: int = -1
    admitted: int = 0
    budget: int = 0


def crowd_admit(count: CrowdCount, *, snapshot: SaleSnapshot, now: float) -> tuple[Verdict, CrowdCount]:
    """Stock-aware admission, after the proof of work (an attempt without one never counts):
    an interval lets ``ceil(k x R)`` attempts through to the script, R the stock known when it
    began. Returns the verdict and the count to keep."""
    plan = snapshot.plan
    remaining = snapshot.remaining
    if plan.crowd_factor <= 0 or remaining is None or remaining <= 0:
        return GO_ON, count  # Nothing left by what this process heard: the script says what is.
    spent = crowd_spent(count, snapshot=snapshot, now=now)
    if spent is not None:
        return spent, count
    interval = int(now / (plan.crowd_interval_ms / 1000))
    if interval != count.interval:
        count = CrowdCount(interval, 0, math.ceil(plan.crowd_factor * remaining))
    return GO_ON, CrowdCount(count.interval, count.admitted + 1, count.budget)


def crowd_spent(count: CrowdCount, *, snapshot: SaleSnapshot, now: float) -> Verdict | None:
    """The crowd's 429 when this interval's budget is spent already, counting nothing: asked
    before the proof of work, so an attempt that could only hear this 429 costs no check of
    its proof. None when the interval would still let one through."""
    plan = snapshot.plan
    if plan.crowd_factor <= 0 or snapshot.remaining is None or snapshot.remaining <= 0:
        return None
    interval_s = plan.crowd_interval_ms / 1000
    interval = int(now / interval_s)
    if interval != count.interval or count.admitted < count.budget:
        return None
    return Verdict(Shed.CROWD, retry_after_ms=int(((interval + 1) * interval_s - now) * 1000) + 1)


def crowd_units_back(count: CrowdCount, *, units: int, crowd_factor: float) -> CrowdCount:
    """``units`` came back during an interval: they may be won in it, so it allows
    ``ceil(k x units)`` more attempts."""
    if units <= 0 or crowd_factor <= 0 or count.interval < 0:
        return count
    return CrowdCount(count.interval, count.admitted, count.budget + math.ceil(crowd_factor * units))


@dataclass(frozen=True, slots=True)
class LeaseHeld:
    """Bucket tokens this process holds: how many, until when, and until when the bucket is
    known to be empty (monotonic seconds)."""

    tokens: int = 0
    until: float = 0.0
    empty_until: float = 0.0


def lease_empty(lease: LeaseHeld, *, now: float) -> Verdict | None:
    """The bucket's 429 while this process holds no token and the bucket is known to be
    empty, spending nothing: asked before the proof of work (as ``crowd_spent``). None when a
    token is held or a lease may bring one."""
    if lease.tokens > 0 and now < lease.until:
        return None
    if now < lease.empty_until:
        return Verdict(Shed.BUCKET, retry_after_ms=int((lease.empty_until - now) * 1000) + 1)
    return None


def lease_take(lease: LeaseHeld, *, now: float) -> tuple[Verdict | None, LeaseHeld]:
    """Spend one leased token: GO_ON, a local 429 while the bucket is known to be empty, or
    None when a new lease is needed (``lease_batch`` says how many to ask for)."""
    if lease.tokens > 0 and now < lease.until:
        return GO_ON, LeaseHeld(lease.tokens - 1, lease.until, lease.empty_until)
    empty = lease_empty(lease, now=now)
    if empty is not None:
        return empty, lease
    return None, lease


def lease_granted(lease: LeaseHeld, *, granted: int, retry_after_ms: int, now: float) -> tuple[Verdict, LeaseHeld]:
    """A lease's answer: spend one of the ``granted`` tokens now, keeping the rest for
    ``LEASE_SECONDS``, or remember the bucket is empty until a token is due."""
    if granted >= 1:
        kept = lease.tokens if now < lease.until else 0
        return GO_ON, LeaseHeld(kept + granted - 1, now + LEASE_SECONDS, 0.0)
    return Verdict(Shed.BUCKET, retry_after_ms=retry_after_ms), LeaseHeld(0, lease.until, now + retry_after_ms / 1000)


def lease_batch(refill_per_second: int, capacity: int) -> int:
    """Tokens to ask for at once: about a twentieth of a second's refill, so a lease is a call
    per ~50 ms per busy process; one for a slow bucket, whose refusals are then answered
    locally until a token is due."""
    return max(1, min(LEASE_BATCH_MAX, capacity, math.ceil(refill_per_second / 20)))


# --- What the process hears -----------------------------------------------------------------


def stock_heard(snapshot: SaleSnapshot, *, remaining: int, at_ms: int) -> SaleSnapshot:
    """The stock as of ``at_ms`` (Redis clock): kept unless something newer was heard."""
    if at_ms < snapshot.remaining_at_ms:
        return snapshot
    return dataclasses.replace(snapshot, remaining=remaining, remaining_at_ms=at_ms)


def event_heard(snapshot: SaleSnapshot, *, remaining: int, at_ms: int) -> SaleSnapshot:
    """A win (``remaining`` the stock after it) or a unit coming back, heard as an event."""
    snapshot = stock_heard(snapshot, remaining=remaining, at_ms=at_ms)
    if remaining > 0:
        returned = max(snapshot.returned_at_ms, at_ms)
        sold_out_at = snapshot.sold_out_at_ms
        # A purchase in the same millisecond as the sell-out also clears it: harmless, the
        # next attempt asks Redis and marks again.
        if sold_out_at is not None and at_ms >= sold_out_at:
            sold_out_at = None
        return dataclasses.replace(snapshot, returned_at_ms=returned, sold_out_at_ms=sold_out_at)
    if snapshot.returned_at_ms < at_ms:
        # The win that took the last unit, heard from another process: sold out here too.
        return dataclasses.replace(snapshot, sold_out_at_ms=max(at_ms, snapshot.sold_out_at_ms or 0))
    return snapshot


def answer_heard(snapshot: SaleSnapshot, *, sold_out: bool, remaining: int, at_ms: int, live: bool) -> SaleSnapshot:
    """What the script answered this process: the stock, and whether the sale sold out (a
    SOLD_OUT, or the win that took the last unit). The marker is set only while the
    subscription is live: without it, the unit coming back could not clear it."""
    if remaining >= 0:
        snapshot = stock_heard(snapshot, remaining=remaining, at_ms=at_ms)
    if sold_out and live and snapshot.returned_at_ms < at_ms:
        snapshot = dataclasses.replace(snapshot, sold_out_at_ms=max(at_ms, snapshot.sold_out_at_ms or 0))
    return snapshot


def line_heard(snapshot: SaleSnapshot, *, state: LineState) -> SaleSnapshot:
    """The line as Redis held it at ``state.at_ms``: kept unless something newer was heard;
    the pre-queue's size and the seed, once known, stay known (a join's answer carries
    neither)."""
    known = snapshot.line
    if state.at_ms < known.at_ms:
        return snapshot
    state = dataclasses.replace(
        state,
        pre_queue=state.pre_queue if state.pre_queue >= 0 else known.pre_queue,
        seed=state.seed or known.seed,
    )
    return dataclasses.replace(snapshot, line=state)


def subscription_lost(snapshot: SaleSnapshot) -> SaleSnapshot:
    """What the events kept current can no longer be trusted."""
    return dataclasses.replace(
        snapshot, winners_complete=False, sold_out_at_ms=None, remaining=None, remaining_at_ms=-1
    )
