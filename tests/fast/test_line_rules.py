"""The waiting room's rules (sales/line.py) with no server: the shuffled pre-queue is a
permutation anyone can recompute, the counter moves at its rate from the start, a turn lasts
until the line moved on past it, and what a process answers locally errs towards the script."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from sales import funnel, line
from sales.funnel import AdmissionPlan, SaleSnapshot, Shed
from sales.line import LineState


@given(seed=st.text(alphabet="0123456789abcdef", min_size=1, max_size=64), size=st.integers(min_value=1, max_value=600))
def test_the_shuffled_pre_queue_is_a_permutation_of_its_places(seed: str, size: int) -> None:
    places = [line.position(seed=seed, pre_queue=size, number=number) for number in range(1, size + 1)]
    assert sorted(places) == list(range(1, size + 1))


def test_a_seed_orders_the_pre_queue_differently_and_later_arrivals_keep_their_number() -> None:
    first = [line.position(seed="a" * 64, pre_queue=100, number=n) for n in range(1, 101)]
    other = [line.position(seed="b" * 64, pre_queue=100, number=n) for n in range(1, 101)]
    assert first != other
    assert first != list(range(1, 101))
    assert [line.position(seed="a" * 64, pre_queue=100, number=n) for n in (101, 102, 5000)] == [101, 102, 5000]
    assert [line.position(seed="", pre_queue=100, number=n) for n in (1, 50)] == [1, 50]


@given(
    rate=st.floats(min_value=0.1, max_value=10_000),
    starts_at_ms=st.integers(min_value=10**12, max_value=2 * 10**12),
    later=st.lists(st.floats(min_value=0, max_value=10**6), min_size=2, max_size=30),
)
def test_the_counter_moves_at_its_rate_from_the_start_and_never_back(
    rate: float, starts_at_ms: int, later: list[float]
) -> None:
    state = LineState(joined=10**9, served=0.0, at_ms=starts_at_ms - 5000)
    readings = [
        line.served_at(state, rate=rate, starts_at_ms=starts_at_ms, now_ms=starts_at_ms + ms) for ms in sorted(later)
    ]
    assert readings == sorted(readings)
    for ms, served in zip(sorted(later), readings, strict=True):
        assert math.isclose(served, rate * ms / 1000, rel_tol=1e-9, abs_tol=rate * 1e-6)  # ms since 1970: ~0.1 us
    assert line.served_at(state, rate=rate, starts_at_ms=starts_at_ms, now_ms=starts_at_ms - 1) == 0


@given(
    configured=st.integers(min_value=0, max_value=1000),
    crowd_factor=st.floats(min_value=0, max_value=10),
    remaining=st.integers(min_value=0, max_value=10**5),
)
def test_the_auto_rate_comes_from_the_units_left(configured: int, crowd_factor: float, remaining: int) -> None:
    rate = line.serving_rate(
        configured=configured, crowd_factor=crowd_factor, remaining=remaining, crowd_interval_ms=1000
    )
    if configured:
        assert rate == configured
    elif remaining == 0 or crowd_factor == 0:
        assert rate == 0
    else:
        assert rate == math.ceil(crowd_factor * remaining)


def test_a_turn_lasts_until_the_line_moved_its_length_past_it() -> None:
    # At 10 places a second and a 6 s turn, the shopper at 100 keeps it until 160 is reached
    assert not line.turn_passed(position_in_line=100, served=159.9, rate=10, turn_seconds=6)
    assert line.turn_passed(position_in_line=100, served=160, rate=10, turn_seconds=6)
    assert line.ahead_of(position_in_line=100, served=42.7) == 57
    assert line.ahead_of(position_in_line=100, served=150) == 0
    assert line.eta_seconds(ahead=57, rate=19) == 3
    assert line.eta_seconds(ahead=5, rate=0) is None


def _queued(**line_state: object) -> SaleSnapshot:
    return SaleSnapshot(
        sale_id=1,
        starts_at_ms=1_000_000,
        ends_at_ms=9_000_000,
        total=100,
        remaining=100,
        plan=AdmissionPlan(queued=True, serving_rate=10, turn_seconds=60),
        line=LineState(**line_state),  # type: ignore[arg-type]
    )


@given(number=st.integers(min_value=1, max_value=10_000), since_start_ms=st.integers(min_value=0, max_value=10**6))
def test_a_process_says_not_your_turn_only_when_the_counter_is_clearly_short(number: int, since_start_ms: int) -> None:
    # Given a line whose counter this process read at the start, moving 10 places a second
    snapshot = _queued(joined=20_000, served=0.0, at_ms=1_000_000)
    now_ms = 1_000_000 + since_start_ms
    served = 10 * since_start_ms / 1000
    verdict = funnel.queue_judge(snapshot, number=number, redis_now_ms=now_ms)
    margin = 10 * funnel.QUEUE_MARGIN_SECONDS + 1
    surely = min(20_000, served) - margin
    if verdict.shed is Shed.NOT_YOUR_TURN:
        # Then a local "not yet" is given only beyond the margin, with the wait until the turn
        assert number > served + 10 * funnel.QUEUE_MARGIN_SECONDS
        assert verdict.retry_after_ms >= (number - served) * 100
    elif verdict.shed is Shed.TURN_PASSED:
        # And a turn is called passed only by what Redis surely let in, a margin short
        assert surely - number >= 10 * 60
    else:
        # And everyone else goes on to the script, which judges by Redis's counter
        assert verdict is funnel.GO_ON
        assert number <= served + margin
        assert surely - number < 10 * 60


@given(number=st.integers(min_value=1, max_value=2_000), served=st.floats(min_value=0, max_value=2_000))
def test_a_process_calls_a_turn_passed_only_by_what_was_surely_let_in(number: int, served: float) -> None:
    # Given a line heard at its start with `served` let in, 10 places a second, a 60 s turn
    snapshot = _queued(joined=2_000, served=served, at_ms=1_000_000)
    verdict = funnel.queue_judge(snapshot, number=number, redis_now_ms=1_000_000)
    surely = min(2_000, served) - 10 * funnel.QUEUE_MARGIN_SECONDS - 1
    if verdict.shed is Shed.TURN_PASSED:
        assert surely - number >= 10 * 60
    elif verdict is funnel.GO_ON and number <= served:
        assert surely - number < 10 * 60


def test_a_shuffled_pre_queue_is_judged_by_the_script_until_its_order_is_heard() -> None:
    plan = AdmissionPlan(queued=True, serving_rate=10, shuffle_pre_queue=True)
    unknown = SaleSnapshot(sale_id=1, starts_at_ms=1_000, ends_at_ms=10**9, plan=plan, line=LineState(joined=50))
    assert funnel.line_position(unknown, 3) is None
    assert funnel.queue_judge(unknown, number=3, redis_now_ms=2_000) is funnel.GO_ON
    heard = SaleSnapshot(
        sale_id=1, starts_at_ms=1_000, plan=plan, line=LineState(joined=50, pre_queue=40, seed="c" * 64, at_ms=1_000)
    )
    assert funnel.line_position(heard, 3) == line.position(seed="c" * 64, pre_queue=40, number=3)
    assert funnel.line_position(heard, 45) == 45


def test_a_line_heard_later_keeps_its_pre_queue_and_seed() -> None:
    snapshot = _queued(joined=10, served=2.0, at_ms=5, pre_queue=4, seed="s")
    heard = funnel.line_heard(snapshot, state=LineState(joined=12, served=3.0, at_ms=9))
    assert (heard.line.joined, heard.line.pre_queue, heard.line.seed) == (12, 4, "s")
    assert funnel.line_heard(heard, state=LineState(joined=1, at_ms=2)) is heard
