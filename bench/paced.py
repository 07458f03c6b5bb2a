"""An open-loop load generator: many connections, each sending on its own fixed schedule.

wrk keeps every connection busy (closed loop), so at 1,000 connections its latency is mostly
the queue in front of the server: by Little's law the mean is connections / throughput. This
client answers the other question, "1,000 shoppers connected, the crowd asking for X% of
what the server can do: how long does each answer take?". Each connection sends one request
every ``connections / rate`` seconds from a random offset; latency is measured from the time
the request was due, not sent, so a server falling behind is charged for it (no coordinated
omission). asyncio on uvloop, raw HTTP/1.1 keep-alive; its own CPU time is reported.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import uvloop

from .loadgen import RunTotals


@dataclass
class PacedResult(RunTotals):
    connections: int
    offered_rps: float
    requests: int
    duration_s: float
    latency_ms: dict[str, float]
    statuses: dict[int, int]
    socket_errors: dict[str, int]
    late_sends: int
    loadgen_cpu_s: float
    wall_s: float
    lines_exhausted: bool = False
    raw: dict[str, object] = field(default_factory=dict, repr=False)


def raw_requests(*, method: str, path: str, port: int, lines: Path | None) -> list[bytes]:
    """The request file (``<token>\\t<body>`` per line) as raw HTTP/1.1 requests."""
    entries = [("", "")]
    if lines is not None:
        entries = [tuple(line.rstrip("\n").split("\t", 1)) for line in lines.open(encoding="utf-8")]  # type: ignore[misc]
    built = []
    for token, body in entries:
        payload = body.encode()
        auth = f"Authorization: Token {token}\r\n" if token else ""
        built.append(
            (
                f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}"
                f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
            ).encode()
            + payload
        )
    return built


class _Feed:
    """Each request once, shared by every connection; the control's single request forever."""

    def __init__(self, requests: list[bytes], *, cycle: bool) -> None:
        self._requests: Iterator[bytes] = iter(requests)
        self._first = requests[0]
        self._cycle = cycle
        self.exhausted = False

    def next(self) -> bytes | None:
        if self._cycle:
            return self._first
        request = next(self._requests, None)
        if request is None:
            self.exhausted = True
        return request


@dataclass
class _Crowd:
    """What the connections of one run share: the feed, the schedule, the measurements."""

    port: int
    feed: _Feed
    period: float
    duration_s: float
    sources: tuple[str, ...] = ()
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    late_sends: int = 0
    opened: int = 0
    start: float = 0.0
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def connection(self, number: int) -> None:
        """Open, wait for the common start, then send on this connection's schedule."""
        source = (self.sources[number % len(self.sources)], 0) if self.sources else None
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port, local_addr=source)
        except OSError:
            self.errors["connect"] += 1
            return
        self.opened += 1
        await self.ready.wait()
        stop = self.start + self.duration_s
        due = self.start + random.uniform(0, self.period)
        try:
            while due < stop:
                now = time.perf_counter()
                if due > now:
                    await asyncio.sleep(due - now)
                elif now - due > 0.001:
                    self.late_sends += 1
                request = self.feed.next()
                if request is None:
                    return
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if length:
                    await reader.readexactly(length)
                self.latencies.append(time.perf_counter() - due)
                self.statuses[int(head[9:12])] += 1
                due += self.period
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            self.errors["read"] += 1
        finally:
            writer.close()


async def _run(
    port: int, feed: _Feed, *, connections: int, rate: float, duration_s: float, sources: tuple[str, ...]
) -> PacedResult:
    crowd = _Crowd(port=port, feed=feed, period=connections / rate, duration_s=duration_s, sources=sources)
    tasks = [asyncio.create_task(crowd.connection(number)) for number in range(connections)]
    # Every connection is opened first; the schedule starts when all are.
    while sum(1 for task in tasks if task.done()) + crowd.opened < connections:
        await asyncio.sleep(0.05)
    cpu_before = time.process_time()
    crowd.start = time.perf_counter() + 0.05
    crowd.ready.set()
    await asyncio.gather(*tasks)
    duration = max(time.perf_counter() - crowd.start, 1e-9)
    ordered = sorted(crowd.latencies)

    def percentile(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000 if ordered else 0.0

    return PacedResult(
        connections=connections,
        offered_rps=rate,
        requests=len(ordered),
        duration_s=min(duration, duration_s),
        latency_ms={
            "p50": percentile(0.50),
            "p90": percentile(0.90),
            "p95": percentile(0.95),
            "p99": percentile(0.99),
            "p99.9": percentile(0.999),
            "max": ordered[-1] * 1000 if ordered else 0.0,
            "mean": sum(ordered) / len(ordered) * 1000 if ordered else 0.0,
        },
        statuses=dict(crowd.statuses),
        socket_errors={"connect": crowd.errors["connect"], "read": crowd.errors["read"], "write": 0, "timeout": 0},
        late_sends=crowd.late_sends,
        loadgen_cpu_s=time.process_time() - cpu_before,
        wall_s=duration,
        lines_exhausted=feed.exhausted,
    )


def paced_run(
    *,
    port: int,
    path: str,
    connections: int,
    rate: float,
    duration_s: float,
    lines: Path | None = None,
    method: str = "POST",
    sources: tuple[str, ...] = (),
) -> PacedResult:
    """``connections`` connections asking for ``rate`` requests a second in total, for
    ``duration_s`` (or until the request file is spent); ``sources``: loopback addresses
    the connections are opened from in turn (the kernel's choice when empty)."""
    feed = _Feed(raw_requests(method=method, path=path, port=port, lines=lines), cycle=lines is None)
    loop_factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(_run(port, feed, connections=connections, rate=rate, duration_s=duration_s, sources=sources))
