"""The webhook delivery's decisions, as pure functions of what an attempt saw and a ``now``
passed in: what an answer means, when the next attempt is, when an endpoint is paused.
``orders.webhooks`` applies them; ``tests/fast/test_delivery_rules.py`` holds them to the
bounds docs/design.md promises."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum


class AttemptOutcome(StrEnum):
    DELIVERED = "delivered"
    GONE = "gone"
    FAILED = "failed"


def attempt_outcome(status_code: int | None) -> AttemptOutcome:
    """2xx is delivered; 410 Gone means the receiver wants no more (the endpoint is paused);
    anything else, no answer at all and a redirect (never followed) included, failed."""
    if status_code is not None and 200 <= status_code < 300:
        return AttemptOutcome.DELIVERED
    if status_code == 410:
        return AttemptOutcome.GONE
    return AttemptOutcome.FAILED


def retry_after_seconds(header: str | None, *, now: datetime) -> float | None:
    """A ``Retry-After`` value in seconds from ``now`` (delta-seconds or an HTTP date);
    None when absent or unreadable."""
    if not header:
        return None
    text = header.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


def retry_delay(
    *,
    failed_attempts: int,
    schedule: Sequence[float],
    jitter: float,
    draw: float,
    retry_after: float | None = None,
) -> float | None:
    """Seconds until the next attempt after ``failed_attempts`` failures in a row, or None:
    the schedule is spent and the delivery is a dead letter.

    ``schedule[n]`` is the wait after the (n+1)th failure. Jitter only lengthens a wait (by
    up to ``jitter`` of it, ``draw`` in [0, 1) choosing how much), so the whole schedule
    never takes less than its sum. A receiver's ``Retry-After`` lengthens a wait too, up to
    the schedule's longest step."""
    if failed_attempts < 1:
        raise ValueError("a delay follows a failed attempt")
    if failed_attempts > len(schedule):
        return None
    delay = schedule[failed_attempts - 1] * (1.0 + max(0.0, jitter) * min(max(draw, 0.0), 1.0))
    if retry_after is not None and math.isfinite(retry_after):
        delay = max(delay, min(retry_after, max(schedule)))
    return delay


def schedule_span(schedule: Sequence[float]) -> timedelta:
    """The shortest time from the first attempt to the last (jitter only adds)."""
    return timedelta(seconds=sum(schedule))


@dataclass(frozen=True, slots=True)
class FailureRun:
    """An endpoint's failed attempts in a row, and when the first of them was."""

    failures: int
    since: datetime | None


def should_pause(run: FailureRun, *, now: datetime, after_failures: int, after_seconds: float) -> bool:
    """An endpoint that failed at least ``after_failures`` attempts in a row, over at least
    ``after_seconds``, is paused: a receiver down for a while is retried, one that stays
    down stops being called. One delivered attempt ends the run."""
    if run.since is None or after_failures < 1:
        return False
    return run.failures >= after_failures and (now - run.since).total_seconds() >= after_seconds
