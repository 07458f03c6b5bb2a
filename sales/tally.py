"""Every purchase answer counted, the local ones included, flushed to Redis in batches.

The sale's stats hash (``keys.stats_key``) holds the funnel, per sale:

- ``arrived``: attempts that reached the purchase path (identity and body checked);
- ``shed:<reason>``: answered in the process, no script run (``funnel.Shed`` and ``pow``);
- ``script``: attempts sent to ``purchase.lua``;
- ``answer:<STATUS>``: every answer by the contract's status, wherever it was decided.

Beside it, the sale's latency hash (``keys.latency_key``) counts each purchase answer's time
in the server in fixed buckets (``sales.latency``), for the console's p50 and p99.

A request appends what it counts to the process's queue (``deque.append``, atomic under the
GIL: no lock, so a request thread never waits on another that holds one) and a daemon thread
adds them up and moves them to Redis once a second, one pipeline for every sale: the hot path
never pays a round trip, nor a lock, for counting. Counts a flush could not deliver are kept
for the next one; those of a process that dies in between are lost (at most a second's),
which the admin's panel can afford.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
from collections import Counter, deque

from redis.exceptions import RedisError

from core.process_state import forgets_process_state
from core.redis_store import inventory_redis

from . import keys, latency

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0


class Tally:
    def __init__(self) -> None:
        self._arrivals: deque[tuple[int, str]] = deque()
        self._timings: deque[tuple[int, str]] = deque()
        # What the flusher added up and Redis has not taken yet (the flusher's own, and
        # flush()'s callers': under the lock).
        self._counts: Counter[tuple[int, str]] = Counter()
        self._latency: Counter[tuple[int, str]] = Counter()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def count(self, sale_id: int, *fields: str) -> None:
        append = self._arrivals.append
        for name in fields:
            append((sale_id, name))
        if self._thread is None:
            self._start_flusher()

    def answered(self, sale_id: int, seconds: float) -> None:
        """Count one purchase answer of ``sale_id`` that took ``seconds`` in the server."""
        self._timings.append((sale_id, latency.bucket_field(seconds)))
        if self._thread is None:
            self._start_flusher()

    def flush(self) -> int:
        """Move the counts to Redis now. Returns how many fields were written."""
        with self._lock:
            _drain(self._arrivals, self._counts)
            _drain(self._timings, self._latency)
            counts, self._counts = self._counts, Counter()
            latencies, self._latency = self._latency, Counter()
        if not counts and not latencies:
            return 0
        try:
            with inventory_redis().pipeline(transaction=False) as pipe:
                for (sale_id, name), amount in counts.items():
                    pipe.hincrby(keys.stats_key(sale_id), name, amount)
                for (sale_id, name), amount in latencies.items():
                    pipe.hincrby(keys.latency_key(sale_id), name, amount)
                pipe.execute()
        except RedisError:
            with self._lock:
                self._counts.update(counts)  # Next time.
                self._latency.update(latencies)
            raise
        return len(counts) + len(latencies)

    def forget(self) -> None:
        with self._lock:
            self._arrivals.clear()
            self._timings.clear()
            self._counts.clear()
            self._latency.clear()

    def _start_flusher(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="answer-tally", daemon=True)
                self._thread.start()

    def forked(self) -> None:
        """In a forked child: the parent's flusher thread did not come along, nor may its
        counts be flushed twice."""
        self._thread = None
        self._lock = threading.Lock()
        self._arrivals = deque()
        self._timings = deque()
        self._counts = Counter()
        self._latency = Counter()

    def _run(self) -> None:
        outage_logged = False
        while not self._stop.wait(FLUSH_SECONDS):
            try:
                self.flush()
                outage_logged = False
            except RedisError as error:
                if not outage_logged:
                    logger.warning("answer counts kept in the process, Redis did not take them: %s", error)
                    outage_logged = True


def _drain(queue: deque[tuple[int, str]], into: Counter[tuple[int, str]]) -> None:
    """Add up what ``queue`` holds now; what other threads append meanwhile waits its turn."""
    popleft = queue.popleft
    for _ in range(len(queue)):
        into[popleft()] += 1


tally = Tally()
"""The process's counters."""
forgets_process_state(tally.forget)
os.register_at_fork(after_in_child=tally.forked)


@atexit.register
def _flush_at_exit() -> None:
    with contextlib.suppress(RedisError):
        tally.flush()
