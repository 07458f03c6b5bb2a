"""The funnel's rules (sales/funnel.py) against the bounds docs/funnel.md states, with no
server: crowd admission, bucket leases, the window margin and what a heard event does."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from sales import funnel
from sales.funnel import (
    GO_ON,
    LEASE_SECONDS,
    WINDOW_MARGIN_MS,
    AdmissionPlan,
    CrowdCount,
    LeaseHeld,
    SaleSnapshot,
    Shed,
)

factors = st.floats(min_value=0.01, max_value=10.0, allow_nan=False)
stocks = st.integers(min_value=1, max_value=5_000)
one_interval = {
    "crowd_factor": factors,
    "remaining": stocks,
    "interval_ms": st.sampled_from([100, 250, 1000, 2000]),
    # Kept a millionth of an interval from either edge: (interval + offset) x length, divided
    # by the length again as the funnel does, is off by up to ~3e-7 of an interval at 10**9
    # intervals, and an offset of 0.0 could land in the interval before.
    "offsets": st.lists(st.floats(min_value=1e-6, max_value=0.999999), min_size=1, max_size=400),
    "interval": st.integers(min_value=1, max_value=10**9),
}
"""Attempts inside one crowd-admission interval: a sale's factor and stock, the interval's
length and number, and each attempt's offset into it."""


def _snapshot(*, remaining: int, crowd_factor: float, interval_ms: int = 1000) -> SaleSnapshot:
    return SaleSnapshot(
        sale_id=1,
        remaining=remaining,
        plan=AdmissionPlan(crowd_factor=crowd_factor, crowd_interval_ms=interval_ms),
    )


# --- Crowd admission -------------------------------------------------------------------------


@given(**one_interval)
def test_crowd_admission_lets_at_most_ceil_k_r_through_per_interval(
    crowd_factor: float, remaining: int, interval_ms: int, offsets: list[float], interval: int
) -> None:
    # Given a sale with R units left and k as its crowd factor, and attempts inside one interval
    snapshot = _snapshot(remaining=remaining, crowd_factor=crowd_factor, interval_ms=interval_ms)
    interval_s = interval_ms / 1000
    count = CrowdCount()
    through = 0
    # When each attempt is judged in arrival order
    for offset in sorted(offsets):
        verdict, count = funnel.crowd_admit(count, snapshot=snapshot, now=(interval + offset) * interval_s)
        if verdict is GO_ON:
            through += 1
        else:
            # Then a refusal says crowd and when the next interval begins
            assert verdict.shed is Shed.CROWD
            assert 0 < verdict.retry_after_ms <= interval_ms + 1
    # And no more than ceil(k x R) went through
    assert through <= math.ceil(crowd_factor * remaining)
    assert through == min(len(offsets), math.ceil(crowd_factor * remaining))


@given(
    crowd_factor=factors,
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("attempt"), st.floats(min_value=0.0, max_value=3.0)),
            st.tuples(st.just("units back"), st.integers(min_value=1, max_value=20)),
            st.tuples(st.just("unit won"), st.just(0)),
        ),
        min_size=1,
        max_size=300,
    ),
    remaining=stocks,
)
def test_crowd_admission_per_interval_with_units_won_and_returned(
    crowd_factor: float, steps: list[tuple[str, float]], remaining: int
) -> None:
    # Given a sale whose stock moves while attempts arrive over several intervals
    count = CrowdCount()
    now = 1_000.0
    through: dict[int, int] = {}
    allowed: dict[int, int] = {}
    for kind, amount in steps:
        snapshot = _snapshot(remaining=remaining, crowd_factor=crowd_factor)
        if kind == "attempt":
            now += amount
            verdict, count = funnel.crowd_admit(count, snapshot=snapshot, now=now)
            if remaining <= 0:
                assert verdict is GO_ON  # Nothing left by what was heard: the script says what is.
                continue
            interval = int(now)
            # An interval allows ceil(k x R) for the R known at its first attempt with stock left
            allowed.setdefault(interval, math.ceil(crowd_factor * remaining))
            if verdict is GO_ON:
                through[interval] = through.get(interval, 0) + 1
        elif kind == "units back":
            units = int(amount)
            remaining += units
            count = funnel.crowd_units_back(count, units=units, crowd_factor=crowd_factor)
            if count.interval == int(now) and count.interval in allowed:
                # ... plus ceil(k x u) for u units coming back during it
                allowed[count.interval] += math.ceil(crowd_factor * units)
        elif remaining > 0:
            remaining -= 1
    # Then no interval let more through than it allowed
    for interval, passed in through.items():
        assert passed <= allowed[interval], (interval, passed, allowed[interval])


def test_crowd_admission_is_off_without_a_factor_or_a_known_stock() -> None:
    count = CrowdCount()
    for snapshot in (
        _snapshot(remaining=10, crowd_factor=0.0),
        SaleSnapshot(sale_id=1, remaining=None, plan=AdmissionPlan(crowd_factor=2.0)),
        _snapshot(remaining=0, crowd_factor=2.0),
    ):
        for _ in range(100):
            verdict, count = funnel.crowd_admit(count, snapshot=snapshot, now=5.5)
            assert verdict is GO_ON


# --- Bucket leases ---------------------------------------------------------------------------


@given(
    granted=st.integers(min_value=1, max_value=64),
    leased_at=st.floats(min_value=0.0, max_value=10_000.0),
    takes=st.lists(st.floats(min_value=0.0, max_value=3.0), max_size=200),
)
def test_a_lease_hands_out_no_more_tokens_than_it_holds_and_none_after_it_expires(
    granted: int, leased_at: float, takes: list[float]
) -> None:
    # Given a lease of `granted` tokens, one spent at once by the attempt that asked
    verdict, lease = funnel.lease_granted(LeaseHeld(), granted=granted, retry_after_ms=0, now=leased_at)
    assert verdict is GO_ON
    spent = 1
    # When attempts take tokens at any later times
    for delay in sorted(takes):
        now = leased_at + delay
        taken, lease = funnel.lease_take(lease, now=now)
        if taken is GO_ON:
            spent += 1
            # Then none is handed out once the lease expired
            assert now < leased_at + LEASE_SECONDS
        else:
            # And an empty or expired lease asks for a new one (it never refuses on its own)
            assert taken is None
    # And never more than it held
    assert spent <= granted


@given(
    retry_after_ms=st.integers(min_value=1, max_value=5_000),
    asked_at=st.floats(min_value=0.0, max_value=10_000.0),
    later=st.floats(min_value=0.0, max_value=10.0),
)
def test_an_empty_bucket_is_answered_locally_until_a_token_is_due(
    retry_after_ms: int, asked_at: float, later: float
) -> None:
    verdict, lease = funnel.lease_granted(LeaseHeld(), granted=0, retry_after_ms=retry_after_ms, now=asked_at)
    assert verdict.shed is Shed.BUCKET
    assert verdict.retry_after_ms == retry_after_ms
    taken, _ = funnel.lease_take(lease, now=asked_at + later)
    if later < retry_after_ms / 1000:
        assert taken is not None
        assert taken.shed is Shed.BUCKET
        assert 0 < taken.retry_after_ms <= retry_after_ms + 1
    else:
        assert taken is None  # Due: ask Redis again.


def test_unspent_tokens_of_an_expired_lease_are_not_kept_by_the_next() -> None:
    _, lease = funnel.lease_granted(LeaseHeld(), granted=10, retry_after_ms=0, now=0.0)
    _, lease = funnel.lease_granted(lease, granted=5, retry_after_ms=0, now=LEASE_SECONDS + 0.5)
    assert lease.tokens == 4


@given(refill=st.integers(min_value=1, max_value=10**6), capacity=st.integers(min_value=1, max_value=10**6))
def test_a_lease_asks_for_a_twentieth_of_a_seconds_refill_within_bounds(refill: int, capacity: int) -> None:
    batch = funnel.lease_batch(refill, capacity)
    assert 1 <= batch <= funnel.LEASE_BATCH_MAX
    assert batch <= max(1, capacity)
    assert batch == max(1, min(funnel.LEASE_BATCH_MAX, capacity, math.ceil(refill / 20)))


# --- The window and its margin ---------------------------------------------------------------

starts = st.integers(min_value=10**12, max_value=2 * 10**12)
lengths = st.integers(min_value=1, max_value=10**8)


@given(starts_at=starts, length=lengths, at=st.floats(min_value=0.0, max_value=1.0))
def test_the_window_margin_sends_edge_attempts_on_to_the_script(starts_at: int, length: int, at: float) -> None:
    # Given a sale's window and an attempt anywhere from a margin before it to a margin after it
    snapshot = SaleSnapshot(sale_id=1, starts_at_ms=starts_at, ends_at_ms=starts_at + length)
    low, high = starts_at - WINDOW_MARGIN_MS, starts_at + length + WINDOW_MARGIN_MS
    redis_now_ms = low + at * (high - low)
    if redis_now_ms >= high:
        redis_now_ms = high - 0.001
    # When the process judges it
    verdict = funnel.judge(snapshot, redis_now_ms=redis_now_ms, held=None)
    # Then it goes on: only the script, by the Redis clock, says NOT_STARTED or ENDED there
    assert verdict is GO_ON


@given(starts_at=starts, length=lengths, early=st.floats(min_value=0.001, max_value=10**7))
def test_an_attempt_clearly_before_the_start_is_answered_here_with_the_wait(
    starts_at: int, length: int, early: float
) -> None:
    snapshot = SaleSnapshot(sale_id=1, starts_at_ms=starts_at, ends_at_ms=starts_at + length)
    redis_now_ms = starts_at - WINDOW_MARGIN_MS - early
    verdict = funnel.judge(snapshot, redis_now_ms=redis_now_ms, held=None)
    assert verdict.shed is Shed.NOT_STARTED
    assert verdict.retry_after_ms == int(starts_at - redis_now_ms)


@given(starts_at=starts, length=lengths, late=st.floats(min_value=0.0, max_value=10**7))
def test_an_attempt_clearly_after_the_end_is_answered_here(starts_at: int, length: int, late: float) -> None:
    snapshot = SaleSnapshot(sale_id=1, starts_at_ms=starts_at, ends_at_ms=starts_at + length)
    verdict = funnel.judge(snapshot, redis_now_ms=starts_at + length + WINDOW_MARGIN_MS + late, held=None)
    assert verdict.shed is Shed.ENDED


def test_a_winner_hears_their_order_before_the_window_or_the_sold_out_marker() -> None:
    snapshot = SaleSnapshot(sale_id=1, starts_at_ms=10_000, ends_at_ms=20_000, sold_out_at_ms=15_000)
    for now in (0, 15_000, 99_000):
        verdict = funnel.judge(snapshot, redis_now_ms=now, held="order-1")
        assert (verdict.shed, verdict.order_id) == (Shed.WINNER, "order-1")
    assert funnel.judge(snapshot, redis_now_ms=15_000, held=None).shed is Shed.SOLD_OUT


def test_an_unknown_window_is_not_judged_here() -> None:
    assert funnel.judge(SaleSnapshot(sale_id=1), redis_now_ms=0, held=None) is GO_ON


# --- Per-user and per-IP windows -------------------------------------------------------------


@given(
    limit=st.integers(min_value=1, max_value=50),
    calls=st.integers(min_value=1, max_value=200),
    now=st.floats(min_value=0, max_value=10**9),
    window_seconds=st.integers(min_value=1, max_value=60),
)
def test_a_window_refuses_from_the_call_after_its_limit(
    limit: int, calls: int, now: float, window_seconds: int
) -> None:
    verdict = funnel.window_over(calls, limit=limit, shed=Shed.USER, now=now, window_seconds=window_seconds)
    if calls <= limit:
        assert verdict is None
    else:
        assert verdict is not None
        assert verdict.shed is Shed.USER
        assert 0 < verdict.retry_after_ms <= window_seconds * 1000 + 1


# --- What a heard event does -----------------------------------------------------------------


@given(
    events=st.lists(
        st.tuples(st.integers(min_value=0, max_value=100), st.integers(min_value=0, max_value=10**6)),
        min_size=1,
        max_size=50,
    )
)
def test_the_stock_known_is_the_newest_heard_by_the_redis_clock(events: list[tuple[int, int]]) -> None:
    snapshot = SaleSnapshot(sale_id=1)
    for remaining, at_ms in events:
        snapshot = funnel.event_heard(snapshot, remaining=remaining, at_ms=at_ms)
    newest = max(at for _, at in events)
    assert snapshot.remaining_at_ms == newest
    assert snapshot.remaining in {remaining for remaining, at in events if at == newest}


def test_the_last_unit_marks_sold_out_and_a_newer_return_clears_it() -> None:
    snapshot = funnel.event_heard(SaleSnapshot(sale_id=1, remaining=1), remaining=0, at_ms=1_000)
    assert snapshot.sold_out
    # An older return (heard late) leaves the marker
    assert funnel.event_heard(snapshot, remaining=1, at_ms=999).sold_out
    # A newer one clears it
    assert not funnel.event_heard(snapshot, remaining=1, at_ms=1_001).sold_out


def test_the_script_marks_sold_out_only_while_the_subscription_is_live() -> None:
    snapshot = SaleSnapshot(sale_id=1, remaining=3)
    kept = funnel.answer_heard(snapshot, sold_out=True, remaining=0, at_ms=5, live=False)
    assert not kept.sold_out
    assert kept.remaining == 0
    assert funnel.answer_heard(snapshot, sold_out=True, remaining=0, at_ms=5, live=True).sold_out


def test_losing_the_subscription_drops_what_the_events_kept() -> None:
    snapshot = SaleSnapshot(sale_id=1, remaining=3, remaining_at_ms=9, sold_out_at_ms=9, winners_complete=True)
    lost = funnel.subscription_lost(snapshot)
    assert (lost.remaining, lost.sold_out, lost.winners_complete) == (None, False, False)


# --- What is answered before the proof of work ----------------------------------------------


@given(**one_interval)
def test_the_crowd_refuses_before_the_proof_exactly_when_admission_would_and_counts_nothing(
    crowd_factor: float, remaining: int, interval_ms: int, offsets: list[float], interval: int
) -> None:
    # Given a sale's crowd admission and attempts arriving inside one interval
    snapshot = _snapshot(remaining=remaining, crowd_factor=crowd_factor, interval_ms=interval_ms)
    interval_s = interval_ms / 1000
    count = CrowdCount()
    for offset in sorted(offsets):
        now = (interval + offset) * interval_s
        # When the early check is asked before each attempt is admitted
        early = funnel.crowd_spent(count, snapshot=snapshot, now=now)
        verdict, after = funnel.crowd_admit(count, snapshot=snapshot, now=now)
        # Then it refuses exactly the attempts admission refuses, with the same wait
        if early is None:
            assert verdict is GO_ON
        else:
            assert verdict == early
            assert after == count  # admission counted nothing for a refusal either
        # And asking it changed nothing: the count is admission's alone
        count = after


@given(
    granted=st.integers(min_value=0, max_value=64),
    retry_after_ms=st.integers(min_value=1, max_value=5_000),
    asked_at=st.floats(min_value=0.0, max_value=10_000.0),
    later=st.floats(min_value=0.0, max_value=10.0),
)
def test_the_bucket_refuses_before_the_proof_only_when_taking_a_token_would_refuse(
    granted: int, retry_after_ms: int, asked_at: float, later: float
) -> None:
    # Given a lease's answer, tokens or an empty bucket
    _, lease = funnel.lease_granted(LeaseHeld(), granted=granted, retry_after_ms=retry_after_ms, now=asked_at)
    now = asked_at + later
    # When the early check and a take are asked at the same moment
    early = funnel.lease_empty(lease, now=now)
    taken, kept = funnel.lease_take(lease, now=now)
    # Then the early check refuses only what the take refuses locally, with the same wait
    if early is None:
        assert taken is None or taken is GO_ON
    else:
        assert taken == early
        assert kept == lease
