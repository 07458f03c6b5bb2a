"""The process's estimate of the Redis clock (core/clock.py), with no server: it keeps the
sample with the shortest round trip, so its error is at most half of that round trip."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from core.clock import SAMPLE_LIFETIME_SECONDS, RedisClock

samples = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=50.0),  # seconds since the first sample
        st.floats(min_value=0.0, max_value=0.5),  # the round trip
        st.floats(min_value=0.0, max_value=1.0),  # where in the round trip Redis read its clock
    ),
    min_size=1,
    max_size=40,
)


@given(offset_ms=st.floats(min_value=-(10**6), max_value=10**6), heard=samples)
def test_the_estimate_is_within_half_the_shortest_round_trip(
    offset_ms: float, heard: list[tuple[float, float, float]]
) -> None:
    # Given a Redis clock `offset_ms` ahead of this host's, and replies read within 50 s
    clock = RedisClock()
    start = 1_700_000_000.0
    for since, rtt, where in sorted(heard):
        asked_at = start + since
        redis_ms = (asked_at + where * rtt) * 1000 + offset_ms
        clock.heard(redis_ms=redis_ms, asked_at=asked_at, answered_at=asked_at + rtt)
    # Then the estimate is off by at most half the shortest round trip heard
    shortest = min(rtt for _, rtt, _ in heard)
    assert abs(clock.offset_ms - offset_ms) <= shortest * 500 + 1e-3  # a float of ms since 1970 is exact to ~0.1 us


def test_an_old_sample_gives_way_to_a_slower_new_one() -> None:
    clock = RedisClock()
    clock.heard(redis_ms=1_000_500.0, asked_at=1_000.0, answered_at=1_000.001)
    later = 1_000.0 + SAMPLE_LIFETIME_SECONDS + 1
    assert clock.due(later)
    assert clock.heard(redis_ms=later * 1000 + 2_000, asked_at=later - 0.05, answered_at=later + 0.05)
    assert abs(clock.offset_ms - 2_000) < 1e-6
    assert not clock.due(later + 1)


def test_a_slower_sample_does_not_replace_a_fresh_faster_one() -> None:
    clock = RedisClock()
    assert clock.heard(redis_ms=10_000_000.0, asked_at=10_000.0, answered_at=10_000.0)
    assert not clock.heard(redis_ms=99.0, asked_at=10_001.0, answered_at=10_001.2)
    assert clock.offset_ms == 0.0
    assert clock.now_ms(10_002.0) == 10_002_000.0
