"""The Redis clock as this process estimates it: one estimator per process.

The sale window is judged by the Redis clock (``purchase.lua`` reads ``TIME``), so a process
that answers "not started yet" or counts a countdown down must know how far its own clock is
from Redis's. Every reply that carries Redis's time is a sample: the offset is Redis's time
minus the middle of the round trip, wrong by at most half the round trip. The estimator keeps
the sample with the shortest round trip it heard within ``SAMPLE_LIFETIME_SECONDS``: the first
call of a connection (it includes connecting) and a reply read late by a busy process both
make long round trips, and either would put the estimate ahead of Redis and open the sale
early here.

Pure state, no I/O: whoever reads Redis's time hands the sample in (``heard``). Its methods
take the local time as an argument where a test needs to choose it.
"""

from __future__ import annotations

import math
import threading
import time

SAMPLE_LIFETIME_SECONDS = 60.0
"""A sample older than this gives way to the next one, however long that one's round trip."""


class RedisClock:
    """This process's offset to the Redis clock. Thread-safe; reads take no lock."""

    def __init__(self) -> None:
        self._offset_ms = 0.0
        self._rtt = math.inf
        self._taken_at = -math.inf
        self._lock = threading.Lock()

    @property
    def offset_ms(self) -> float:
        """Redis's clock minus this host's, in milliseconds (0 until a sample was heard)."""
        return self._offset_ms

    @property
    def known(self) -> bool:
        return self._taken_at > -math.inf

    def heard(self, *, redis_ms: float, asked_at: float, answered_at: float) -> bool:
        """A reply that carried Redis's time ``redis_ms``, asked for at ``asked_at`` and read at
        ``answered_at`` (this host's ``time.time()``). Returns True when it became the estimate."""
        rtt = max(0.0, answered_at - asked_at)
        with self._lock:
            if rtt > self._rtt and answered_at - self._taken_at <= SAMPLE_LIFETIME_SECONDS:
                return False
            self._offset_ms = redis_ms - (asked_at + answered_at) * 500
            self._rtt = rtt
            self._taken_at = answered_at
            return True

    def now_ms(self, local: float | None = None) -> float:
        """The Redis clock now (or at this host's ``local`` time), in milliseconds."""
        return (time.time() if local is None else local) * 1000 + self._offset_ms

    def due(self, local: float | None = None) -> bool:
        """True when no sample is younger than ``SAMPLE_LIFETIME_SECONDS``: time to ask."""
        return (time.time() if local is None else local) - self._taken_at > SAMPLE_LIFETIME_SECONDS

    def forget(self) -> None:
        with self._lock:
            self._offset_ms, self._rtt, self._taken_at = 0.0, math.inf, -math.inf
