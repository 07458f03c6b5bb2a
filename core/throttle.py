"""Throttles: fixed windows counted in Redis, so every web process shares one count.

A rate is written ``<count>/<period>``: ``30/min``, ``10/15min``, ``20/hour``, ``100/day``,
``5/30s``; ``0`` or ``off`` turns the throttle off. The counters live in the cache's Redis
(``CACHE_URL``): they are short-lived and need no persistence. A refusal is
``TooManyAttempts``: 429 ``RATE_LIMITED`` with ``Retry-After`` (the seconds left in the
window) and a ``reason`` naming what was counted.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django_redis import get_redis_connection

from .errors import ApplicationError
from .redis_store import lua_script

WINDOW_SCRIPT = lua_script(Path(__file__).resolve().parent / "lua" / "throttle_window.lua")
_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600, "d": 86400,
          "day": 86400}  # fmt: skip
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([a-z]+?)s?\s*$")


@dataclass(frozen=True, slots=True)
class Rate:
    limit: int
    seconds: int

    def __str__(self) -> str:
        return f"{self.limit} per {self.seconds} s"


@functools.cache
def rate_parse(text: str, *, setting: str = "") -> Rate | None:
    """The rate ``text`` says, or None for off. Raises ``ImproperlyConfigured`` naming the
    setting for anything else."""
    if text.strip().lower() in {"", "0", "off"}:
        return None
    match = _RATE.match(text.lower())
    if match is None or match.group(3) not in _UNITS:
        raise ImproperlyConfigured(f"{setting}={text!r} is not a rate such as 30/min, 10/15min or off.")
    limit, multiple, unit = int(match.group(1)), int(match.group(2) or 1), match.group(3)
    if limit == 0:
        return None
    if multiple == 0:
        raise ImproperlyConfigured(f"{setting}={text!r}: the period cannot be zero.")
    return Rate(limit=limit, seconds=multiple * _UNITS[unit])


def configured_rate(setting: str) -> Rate | None:
    return rate_parse(getattr(settings, setting), setting=setting)


class TooManyAttempts(ApplicationError):
    code = "RATE_LIMITED"

    def __init__(self, *, retry_after_seconds: int, reason: str, what: str) -> None:
        super().__init__(
            f"Too many {what}; try again in {retry_after_seconds} s.",
            headers={"Retry-After": str(retry_after_seconds)},
            extra={"reason": reason},
        )


def window_count(key: str, rate: Rate, *, add: int = 1) -> tuple[int, int]:
    """Add ``add`` to the window at ``key`` (0 only reads). Returns the count and the
    seconds left in the window. One round trip, atomic."""
    count, left_ms = WINDOW_SCRIPT([key], [rate.seconds * 1000, add], client=get_redis_connection("default"))
    return int(count), max(1, math.ceil(int(left_ms) / 1000))
