"""The console's points (wsdoor/figures.py), with no server: rates are changes over the
interval, a reset counts from zero, and idle seconds are kept only now and then."""

from __future__ import annotations

from wsdoor.figures import IDLE_KEEP_SECONDS, Reading, point_between, point_worth_keeping


def reading(at_ms: int, *, remaining: int = 10, **stats: int) -> Reading:
    return Reading(at_ms=at_ms, total=10, remaining=remaining, buyers=10 - remaining, status="live", stats=stats)


def test_rates_are_the_counters_changes_per_second_of_the_interval() -> None:
    before = reading(1_000, **{"answer:SUCCESS": 2, "shed:crowd": 10, "script": 4, "arrived": 20})
    now = reading(3_000, remaining=6, **{"answer:SUCCESS": 6, "shed:crowd": 30, "script": 10, "arrived": 60})

    point = point_between(before, now)

    assert point["rates"]["won"] == 2.0
    assert point["rates"]["limited_crowd"] == 10.0
    assert point["rates"]["to_redis"] == 3.0
    assert point["rates"]["arrived"] == 20.0
    assert point["rates"]["sold_out"] == 0.0
    assert (point["stock"], point["buyers"], point["t"]) == (6, 4, 3_000)


def test_a_first_reading_has_no_rates_and_a_reset_counts_from_zero() -> None:
    assert set(point_between(None, reading(1_000, script=5))["rates"].values()) == {None}
    assert point_between(reading(1_000, script=50), reading(2_000, script=5))["rates"]["to_redis"] == 5.0


def test_latency_quantiles_are_of_the_answers_in_the_interval() -> None:
    before = Reading(at_ms=0, total=1, remaining=1, buyers=0, status="live", latency={"2": 100})
    now = Reading(at_ms=1_000, total=1, remaining=1, buyers=0, status="live", latency={"2": 100, "150": 10})

    point = point_between(before, now)

    assert point["answers"] == 10
    assert 100 <= point["p50_ms"] <= 150 and 100 <= point["p99_ms"] <= 150


def test_idle_seconds_are_kept_now_and_then_and_every_change_at_once() -> None:
    kept = point_between(reading(0), reading(1_000))
    idle = point_between(reading(1_000), reading(2_000))
    later = point_between(reading(1_000), reading(1_000 + int(IDLE_KEEP_SECONDS * 1000) + 1_000))
    sold = point_between(reading(1_000), reading(2_000, remaining=9))

    assert point_worth_keeping(kept, None)
    assert not point_worth_keeping(idle, kept)
    assert point_worth_keeping(later, kept)
    assert point_worth_keeping(sold, kept)


def test_a_reading_survives_its_json() -> None:
    original = reading(5, remaining=3, script=2)
    assert Reading.from_json(original.as_json()) == original
