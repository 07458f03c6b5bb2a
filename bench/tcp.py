"""The TCP front door's scenarios (issue 14): the seed's workload over TCP, next to the same
workload over HTTP in the same run, on the same stack, checked against the same invariants.

The load is ``tcpdoor.load`` (asyncio on uvloop, in this process; its CPU time is reported as
the load generator's): closed loop, each connection sending its next frame as soon as it has
its answer, for the sold-out, rate-limited and winning paths; then each again open loop at
``PACED_FRACTION`` of the rate its closed loop served; then the seed's stampede over TCP.
The request data are made as for HTTP: the same shoppers, challenges issued by the server's
code and solved before the timed window.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from sales.models import FlashSale
from tcpdoor.load import LoadResult, attempt_frame, load_run

from . import data
from .cpu import CpuMeter
from .invariants import funnel_counts
from .loadgen import RunTotals
from .scenarios import CYCLED_SHOPPERS, HUGE_STOCK, LINE_HEADROOM, PACED_FRACTION, RunResult, Scenarios

# Frames per second of warm-up on the winning path (a fresh shopper and challenge each): the
# warm-up only has to teach the door the sale and measure its rate, which sizes the timed run.
WARM_LINES_PER_SECOND = 6000


@dataclass
class TcpTotals(RunTotals):
    """A ``tcpdoor.load`` run in the benchmark's terms (statuses are answer statuses)."""

    connections: int
    requests: int
    duration_s: float
    latency_ms: dict[str, float]
    statuses: dict[str, int]  # type: ignore[assignment]
    socket_errors: dict[str, int]
    lines_exhausted: bool
    loadgen_cpu_s: float
    wall_s: float
    offered_rps: float = 0.0
    late_sends: int = 0
    raw: dict[str, object] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, result: LoadResult, *, exhausted: bool = False) -> TcpTotals:
        return cls(
            connections=result.connections,
            requests=result.requests,
            duration_s=result.wall_s,
            latency_ms={
                "p50": result.percentile_ms(0.50),
                "p90": result.percentile_ms(0.90),
                "p95": result.percentile_ms(0.95),
                "p99": result.percentile_ms(0.99),
                "p99.9": result.percentile_ms(0.999),
                "max": result.percentile_ms(1.0),
                "mean": result.mean_ms,
            },
            statuses=dict(result.statuses),
            socket_errors={"connect": result.errors["connect"], "read": result.errors["read"]},
            lines_exhausted=exhausted,
            loadgen_cpu_s=result.cpu_s,
            wall_s=result.wall_s,
            offered_rps=result.offered_rps,
            late_sends=result.late_sends,
        )


def _frames(sale: FlashSale, shoppers: Sequence[data.Shopper], bodies: Sequence[str]) -> list[bytes]:
    """The HTTP request file's content as attempt frames: the same token, challenge, solution."""
    frames = []
    for shopper, body in zip(shoppers, bodies, strict=True):
        proof = json.loads(body) if body else {}
        frames.append(attempt_frame(sale.pk, token=shopper.token, **proof))
    return frames


class TcpScenarios:
    """The TCP door's runs, recorded with the HTTP scenarios' (same pool, meter and table)."""

    def __init__(self, scenarios: Scenarios) -> None:
        self.s = scenarios
        assert scenarios.stack.tcp is not None
        self.port = scenarios.stack.tcp.port

    def _run(
        self,
        scenario: str,
        frames: Iterable[bytes],
        *,
        connections: int,
        expected: set[str],
        duration_s: float,
        sale: FlashSale,
        rate: float = 0.0,
        wins_before: int = 0,
        notes: list[str] | None = None,
        finite: bool = False,
    ) -> RunResult:
        before = self.s.meter.snapshot()
        result = load_run(frames, port=self.port, connections=connections, rate=rate, duration_s=duration_s)
        after = self.s.meter.snapshot()
        cores = CpuMeter.spent(before, after, wall_s=result.wall_s, loadgen_s=result.cpu_s)
        totals = TcpTotals.of(result, exhausted=finite and result.wall_s < duration_s * 0.9)
        checks = self.s._checks(sale.pk, result.statuses.get("SUCCESS", 0) + wins_before)
        return self.s._record(scenario, totals, cores, expected=expected, checks=checks, notes=notes)

    def _closed_then_paced(
        self,
        scenario: str,
        sale: FlashSale,
        frames_for: Callable[[int], Iterable[bytes]],
        *,
        connections: int,
        expected: set[str],
    ) -> None:
        plan = self.s.plan
        warm = self._warm(frames_for(0), connections)
        saturated = self._run(
            scenario,
            frames_for(math.ceil(max(warm, 1000.0) * plan.duration_s * LINE_HEADROOM)),
            connections=connections,
            expected=expected,
            duration_s=plan.duration_s,
            sale=sale,
        )
        if saturated.rps > 0:
            rate = saturated.rps * PACED_FRACTION
            self._run(
                scenario,
                frames_for(math.ceil(rate * plan.duration_s * LINE_HEADROOM) + connections),
                connections=connections,
                expected=expected,
                duration_s=plan.duration_s,
                sale=sale,
                rate=rate,
                notes=[f"open loop (tcpdoor.load) at {PACED_FRACTION:.0%} of the closed loop's {saturated.rps:.0f}/s"],
            )

    def _warm(self, frames: Iterable[bytes], connections: int) -> float:
        """The warm-up (discarded): every process learns the sale; returns its rate."""
        result = load_run(frames, port=self.port, connections=connections, duration_s=self.s.plan.warmup_s)
        return result.rps

    # --- the ceiling ---------------------------------------------------------------------------

    def ceiling(self, connections: int) -> RunResult:
        """The same load, closed loop, against ``bench/tlv_ceiling.py`` (the door's framing and
        event loop, a fixed answer, nothing behind it): what the TCP paths are a share of. The
        frames are attempt frames of the pool's shoppers, the size the door's paths send. Its
        CPU is metered as ``tcp`` for the run."""
        ceiling = self.s.stack.tlv_ceiling
        assert ceiling is not None
        cycled = [
            attempt_frame(1, token=shopper.token, challenge="v1." + "c" * 60, solution="0" * 8)
            for shopper in self.s.pool.ensure(CYCLED_SHOPPERS)
        ]
        load_run(itertools.cycle(cycled), port=ceiling.port, connections=connections, duration_s=self.s.plan.warmup_s)
        tcp_root = self.s.meter.roots["tcp"]
        self.s.meter.roots["tcp"] = ceiling.pid
        try:
            before = self.s.meter.snapshot()
            result = load_run(
                itertools.cycle(cycled), port=ceiling.port, connections=connections, duration_s=self.s.plan.duration_s
            )
            after = self.s.meter.snapshot()
        finally:
            self.s.meter.roots["tcp"] = tcp_root
        cores = CpuMeter.spent(before, after, wall_s=result.wall_s, loadgen_s=result.cpu_s)
        return self.s._record(
            "tlv_ceiling",
            TcpTotals.of(result),
            cores,
            expected={"SOLD_OUT"},
            notes=["bench/tlv_ceiling.py: the door's framing on uvloop, one fixed answer frame"],
        )

    # --- the paths ---------------------------------------------------------------------------

    def sold_out(self, connections: int) -> None:
        sale = data.sale_open(stock=1, pow_difficulty=self.s.plan.difficulty)
        shoppers = self.s.pool.ensure(CYCLED_SHOPPERS + 1)
        data.sale_sell_out(sale, shoppers[:1])
        cycled = _frames(sale, shoppers[1:], data.presolved_bodies(sale=sale, shoppers=shoppers[1:]))
        self._closed_then_paced(
            "tcp_sold_out", sale, lambda _: itertools.cycle(cycled), connections=connections, expected={"SOLD_OUT"}
        )

    def rate_limited(self, connections: int) -> None:
        sale = data.sale_open(
            stock=HUGE_STOCK, pow_difficulty=self.s.plan.difficulty, bucket_capacity=1, bucket_refill_per_second=1
        )
        shoppers = self.s.pool.ensure(CYCLED_SHOPPERS)
        cycled = _frames(sale, shoppers, data.presolved_bodies(sale=sale, shoppers=shoppers))
        self._closed_then_paced(
            "tcp_rate_limited",
            sale,
            lambda _: itertools.cycle(cycled),
            connections=connections,
            # A shopper who won when a token came due and is cycled back hears their order.
            expected={"RATE_LIMITED", "SUCCESS", "ALREADY_PURCHASED"},
        )

    def winning(self, connections: int) -> None:
        """A fresh shopper with a fresh solved challenge per attempt, as the HTTP winning path."""
        sale = data.sale_open(stock=HUGE_STOCK, pow_difficulty=self.s.plan.difficulty)
        used = 0

        def fresh(count: int) -> list[bytes]:
            nonlocal used
            count = count or WARM_LINES_PER_SECOND * self.s.plan.warmup_s
            shoppers = self.s.pool.ensure(used + count)[used:]
            used += count
            return _frames(sale, shoppers, data.presolved_bodies(sale=sale, shoppers=shoppers))

        self._closed_then_paced("tcp_winning", sale, fresh, connections=connections, expected={"SUCCESS"})

    def seed(self) -> RunResult:
        """The HTTP seed stampede's workload (``Scenarios.seed``) over TCP: stock 10, every
        user's attempts with their own challenges, shuffled, over the same connections."""
        plan = self.s.plan
        sale = data.sale_open(stock=plan.seed_stock, pow_difficulty=plan.difficulty, bucket_capacity=1000)
        shoppers = self.s.pool.ensure(plan.seed_users)
        lines = data.stampede_file_write(
            self.s._file("seed-tcp"), sale=sale, shoppers=shoppers, per_user=plan.seed_per_user
        )
        by_token = {shopper.token: shopper for shopper in shoppers}
        pairs = [line.rstrip("\n").split("\t", 1) for line in lines.open(encoding="utf-8")]
        frames = _frames(sale, [by_token[token] for token, _ in pairs], [body for _, body in pairs])
        run = self._run(
            "tcp_seed",
            frames,
            connections=plan.seed_connections,
            expected={"SUCCESS", "SOLD_OUT", "RATE_LIMITED", "ALREADY_PURCHASED"},
            duration_s=120 if not plan.quick else 30,
            sale=sale,
            finite=True,
            notes=[
                f"stock {plan.seed_stock}, {len(frames)} attempts from {plan.seed_users} users over "
                f"{plan.seed_connections} connections (the HTTP seed stampede's workload)"
            ],
        )
        run.checks["funnel"] = funnel_counts(sale.pk)
        run.checks["reached_redis"] = run.checks["funnel"].get("script", 0)
        run.checks["winners"] = run.checks["buyers"]
        run.checks["exactly_stock_winners"] = (
            run.checks["buyers"] == plan.seed_stock and run.statuses.get("SUCCESS", 0) == plan.seed_stock
        )
        run.checks["holds"] = bool(run.checks["holds"] and run.checks["exactly_stock_winners"])
        return run
