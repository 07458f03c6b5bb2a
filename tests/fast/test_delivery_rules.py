"""The webhook delivery's decisions (``orders.delivery_rules``): retries that never come
sooner than the schedule, dead letters once it is spent, pausing only after a long run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from orders.delivery_rules import (
    AttemptOutcome,
    FailureRun,
    attempt_outcome,
    retry_after_seconds,
    retry_delay,
    schedule_span,
    should_pause,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PRODUCTION = [5, 300, 1800, 7200, 18000, 36000, 50400]
schedules = st.lists(st.floats(min_value=0, max_value=1e5), min_size=1, max_size=12)


def test_the_default_schedule_retries_for_more_than_a_day() -> None:
    assert schedule_span(PRODUCTION) >= timedelta(hours=24)


@given(schedule=schedules, jitter=st.floats(min_value=0, max_value=2), draws=st.lists(st.floats(0, 1), min_size=12))
def test_jitter_only_lengthens_a_wait_so_the_schedule_is_never_shorter_than_its_sum(
    schedule: list[float], jitter: float, draws: list[float]
) -> None:
    waits = [
        retry_delay(failed_attempts=n, schedule=schedule, jitter=jitter, draw=draws[n - 1])
        for n in range(1, len(schedule) + 1)
    ]
    assert all(wait is not None for wait in waits)
    for wait, step in zip(waits, schedule, strict=True):
        assert step <= wait <= step * (1 + jitter) + 1e-9  # type: ignore[operator]
    assert retry_delay(failed_attempts=len(schedule) + 1, schedule=schedule, jitter=jitter, draw=0.5) is None


@given(schedule=schedules, retry_after=st.floats(min_value=0, max_value=1e7))
def test_retry_after_lengthens_a_wait_up_to_the_longest_step(schedule: list[float], retry_after: float) -> None:
    wait = retry_delay(failed_attempts=1, schedule=schedule, jitter=0, draw=0, retry_after=retry_after)
    assert wait is not None
    assert wait >= schedule[0]
    assert wait <= max(schedule[0], min(retry_after, max(schedule)))


def test_what_an_answer_means() -> None:
    assert [attempt_outcome(code) for code in (200, 204, 299)] == [AttemptOutcome.DELIVERED] * 3
    assert attempt_outcome(410) is AttemptOutcome.GONE
    assert [attempt_outcome(code) for code in (None, 301, 302, 400, 404, 429, 500, 503)] == [AttemptOutcome.FAILED] * 8


def test_retry_after_is_read_as_seconds_or_a_date() -> None:
    assert retry_after_seconds("120", now=NOW) == 120
    assert retry_after_seconds("Tue, 01 Dec 2026 12:01:00 GMT", now=NOW) == 60
    assert retry_after_seconds("soon", now=NOW) is None
    assert retry_after_seconds(None, now=NOW) is None


def test_an_endpoint_is_paused_only_after_enough_failures_over_enough_time() -> None:
    def paused(failures: int, minutes: float) -> bool:
        run = FailureRun(failures=failures, since=NOW - timedelta(minutes=minutes))
        return should_pause(run, now=NOW, after_failures=10, after_seconds=24 * 3600)

    assert not paused(500, 10)  # a receiver down for ten minutes is retried, not paused
    assert not paused(9, 25 * 60)
    assert paused(10, 24 * 60)
    assert not should_pause(FailureRun(failures=0, since=None), now=NOW, after_failures=1, after_seconds=0)
