"""The benchmark's scenarios (issue 7): what each one sets up, drives and checks.

Every HTTP scenario is a wrk run against the running stack: a warm-up run first (discarded),
then the timed run, bounded by its duration and by its request file. The request files are
prepared before the timed window: users with warm tokens and, where the sale asks for proof
of work, challenges the server's own code issued and this process solved.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis

from devstack.children import Child
from naive_shop.selectors import naive_stock_check
from naive_shop.services import naive_stock_create
from sales.models import FlashSale

from . import data
from .cpu import CpuMeter
from .invariants import funnel_counts, sale_invariants
from .k6 import stampede_run
from .loadgen import LoadResult, RunTotals, wrk_run
from .paced import PacedResult, paced_run
from .plan import BenchPlan
from .stack import BenchStack

# Lines of a request file sent during a warm-up run, per second of warm-up.
WARMUP_LINES_PER_SECOND = 3000
# A timed run gets this many more lines than the warm-up's rate says it will use.
LINE_HEADROOM = 1.4
# Distinct shoppers cycled by the sold-out and rate-limited runs (reusing a challenge there is
# harmless: those answers come before the challenge is spent).
CYCLED_SHOPPERS = 5000
HUGE_STOCK = 1_000_000_000
NOT_STARTED_IN_S = 3600.0
"""Scenario 3b's sale opens this long after it is made: it stays not started for the run."""
# The open-loop runs ask for this share of what the saturated run at the same connections served:
# well below saturation even when the Python client and other work share the two cores.
PACED_FRACTION = 0.5
USER_WINDOW_SHOPPERS = 5
"""Scenario 4b's shoppers: so few that each is over the per-user window within its first
milliseconds of every window, at any rate the crowd reaches."""
CROWD_STOCK = 200
CROWD_FACTOR = 0.1
"""Scenario 4d's sale: at most ``ceil(0.1 x 200)`` = 20 attempts a second per web process go on
to the script at first (then fewer as units sell): the rest of the crowd hears ``reason: "crowd"``."""
REASON_SHARE = 0.5
"""A row of 4b-4d is its reason's when that reason answered more than this share of the sale's
attempts (the funnel's count); inside each window the rest are answered otherwise (403, 201)."""
REASONS = {"rate_limited_user": "user", "rate_limited_ip": "ip", "rate_limited_crowd": "crowd"}
"""The rows of the 429 reasons other than the bucket (scenario 4), and the reason each is for."""


@dataclass
class RunResult:
    """One timed wrk run of one scenario at one connection count."""

    scenario: str
    connections: int
    requests: int
    duration_s: float
    rps: float
    latency_ms: dict[str, float]
    statuses: dict[str, int]
    expected_statuses: list[int] | list[str]
    errors: int
    socket_errors: dict[str, int]
    lines_exhausted: bool
    cpu_cores: dict[str, float]
    loadgen_cpu_share: float
    checks: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    served_connections: int = 0
    load: str = "saturated"  # or "paced": open loop at ``offered_rps`` (bench/paced.py)
    offered_rps: float = 0.0
    # Throughput as a share of this run's baselines at the same connections (saturated runs):
    # "control" (the Django control) and "ceiling" (bench/ceiling_app.py) for HTTP,
    # "tlv_ceiling" (bench/tlv_ceiling.py) for the TCP door. Set by ``report.ratios_attach``.
    ratios: dict[str, float] = field(default_factory=dict)

    @property
    def checks_hold(self) -> bool:
        return bool(self.checks.get("holds", True))


SCENARIO_TITLES = {
    "wsgi_ceiling": "0 ceiling: bare WSGI, no Django",
    "control": "1 control: bare Django JSON view",
    "winning": "2 purchase, winning path",
    "sold_out": "3 sold-out path (local marker)",
    "not_started": "3b not-started path",
    "rate_limited": "4 rate-limited path (token bucket)",
    "rate_limited_user": "4b rate-limited: per-user window",
    "rate_limited_ip": "4c rate-limited: per-address window",
    "rate_limited_crowd": "4d rate-limited: crowd admission",
    "naive": "5 naive shop (SELECT ... FOR UPDATE)",
    "seed": "8 the seed's stampede",
    "seed_k6": "8 the seed's stampede, k6",
    "seed_balanced": "11 stampede via HAProxy, 3 web",
    "million_control": "14 control, the million's web",
    "million": "14 the seed's million",
    "million_again": "14 the million again, fresh sale",
    "log_win_on": "log (23): a win, the log on",
    "log_win_off": "log (23): a win, the log off",
    "log_no_on": "log (23): sold out, the log on",
    "log_no_off": "log (23): sold out, the log off",
    "log_limited_on": "log (23): rate limited, the log on",
    "log_limited_off": "log (23): rate limited, the log off",
    "log_seed": "log (23): stampede, builder ticking",
    "hooks_win_none": "webhooks (26): a win, no endpoint",
    "hooks_win_ten": "webhooks (26): a win, 10 endpoints",
    "tlv_ceiling": "0 TCP ceiling: fixed TLV frame",
    "tcp_sold_out": "12 TCP: sold-out path",
    "tcp_rate_limited": "12 TCP: rate-limited path",
    "tcp_winning": "12 TCP: winning path",
    "tcp_seed": "12 TCP: the seed's stampede",
    "slow_control_alone": "13 control, no slow clients",
    "slow_purchase_alone": "13 purchase (sold out), no slow clients",
    "slow_control": "13 control, slow clients held",
    "slow_purchase": "13 purchase (sold out), slow clients held",
}
OPEN_LOOP_ONLY = frozenset({"slow_control_alone", "slow_purchase_alone", "slow_control", "slow_purchase"})
"""Scenarios run open loop only (bench/slowclients.py): the table titles their rows."""


class Scenarios:
    """Runs the scenarios against one stack and keeps their results."""

    _pool: data.ShopperPool | None = None

    @classmethod
    def shared_pool(cls) -> data.ShopperPool:
        """The run's shoppers: made once, used by every scenario (and the drain measurement)."""
        if cls._pool is None:
            cls._pool = data.ShopperPool()
        return cls._pool

    def __init__(self, *, stack: BenchStack, plan: BenchPlan, scratch: Path, log: Any) -> None:
        self.stack = stack
        self.plan = plan
        self.scratch = scratch
        self.log = log
        self.pool = self.shared_pool()
        self.runs: list[RunResult] = []
        self.control_rps: dict[int, float] = {}
        self.hook_cost: dict[str, float] = {}
        self._elsewhere: FlashSale | None = None  # rows 4b and 4c: the sale their proofs are for
        roots = {
            "web": stack.web.pid if stack.web else 0,
            "tcp": stack.tcp.pid if stack.tcp else 0,
            "redis": 0,
            "postgres": 0,
            "worker": 0,
        }
        if stack.redis and stack.redis.process:
            roots["redis"] = stack.redis.process.pid
        if stack.postgres and stack.postgres.process:
            roots["postgres"] = stack.postgres.process.pid
        if stack.worker:
            roots["worker"] = stack.worker.pid
        self.meter = CpuMeter(roots)

    # --- plumbing ---------------------------------------------------------------------------

    def _file(self, name: str) -> Path:
        return self.scratch / f"{name}.txt"

    def _wrk(
        self,
        *,
        path: str,
        connections: int,
        duration_s: int,
        lines: Path | None = None,
        count_statuses: bool = True,
        base_url: str | None = None,
    ) -> tuple[LoadResult, dict[str, float]]:
        before = self.meter.snapshot()
        result = wrk_run(
            base_url=base_url or self.stack.web_url,
            path=path,
            connections=connections,
            duration_s=duration_s,
            lines=lines,
            count_statuses=count_statuses,
        )
        after = self.meter.snapshot()
        cores = CpuMeter.spent(before, after, wall_s=result.wall_s, loadgen_s=result.loadgen_cpu_s)
        return result, cores

    def _record(
        self,
        scenario: str,
        result: LoadResult | PacedResult | RunTotals,
        cores: dict[str, float],
        *,
        expected: set[int] | set[str],
        checks: dict[str, Any] | None = None,
        notes: list[str] | None = None,
    ) -> RunResult:
        run = RunResult(
            scenario=scenario,
            connections=result.connections,
            requests=result.requests,
            duration_s=round(result.duration_s, 3),
            rps=round(result.rps, 1),
            latency_ms={name: round(value, 2) for name, value in result.latency_ms.items()},
            statuses={str(status): count for status, count in sorted(result.statuses.items())},
            expected_statuses=sorted(expected),  # type: ignore[arg-type]
            errors=result.unexpected(expected),
            socket_errors=result.socket_errors,
            lines_exhausted=result.lines_exhausted,
            cpu_cores=cores,
            loadgen_cpu_share=round(result.loadgen_cpu_share, 3),
            checks=checks or {},
            notes=notes or [],
        )
        if result.lines_exhausted:
            run.notes.append("the request file ran out before the duration: the run is shorter")
        offered = float(getattr(result, "offered_rps", 0.0))
        if offered:  # an open-loop run: bench/paced.py, or the TCP door's (bench/tcp.py)
            run.load, run.offered_rps = "paced", round(offered, 1)
            late = int(getattr(result, "late_sends", 0))
            if late:
                run.notes.append(f"{late} requests were sent late (counted from when they were due)")
        # Little's law: connections really in play = throughput x mean latency. Far below the
        # connections opened means the server left some unserved (wrk does not time those).
        run.served_connections = round(result.rps * result.latency_ms["mean"] / 1000)
        saturated = run.load == "saturated"
        if saturated and run.served_connections < 0.8 * result.connections and not result.lines_exhausted:
            run.notes.append(
                f"only about {run.served_connections} of {result.connections} connections were served "
                "(Little's law); the latencies describe those"
            )
        self.runs.append(run)
        label = scenario if run.load == "saturated" else f"{scenario} (paced {run.offered_rps:.0f}/s)"
        self.log(
            f"  {label:<13} {result.connections:>5} conns  {run.rps:>9.0f} req/s  "
            f"p99 {run.latency_ms['p99']:>7.1f} ms  errors {run.errors}  answers {run.statuses}"
        )
        return run

    def _budget(self, warmup: LoadResult) -> int:
        return math.ceil(warmup.rps * self.plan.duration_s * LINE_HEADROOM) + 200

    def _cycled_file(self, name: str, sale: FlashSale, shoppers: list[data.Shopper], lines_needed: int) -> Path:
        """Shoppers' presolved requests repeated until ``lines_needed`` lines."""
        bodies = data.presolved_bodies(sale=sale, shoppers=shoppers)
        repeats = max(1, math.ceil(lines_needed / len(shoppers)))
        return data.request_file_write(self._file(name), shoppers * repeats, bodies * repeats)

    def _lines_for_cycles(self, connections: int) -> int:
        rate = self.control_rps.get(connections) or max(self.control_rps.values(), default=10_000.0)
        return math.ceil(rate * (self.plan.duration_s + self.plan.warmup_s) * LINE_HEADROOM) + 1000

    def _checks(self, sale_id: int, wins_answered: int) -> dict[str, Any]:
        report = sale_invariants(
            sale_id=sale_id, wins_answered=wins_answered, drain_timeout_s=self.plan.drain_timeout_s
        )
        return {"sale_id": sale_id, "holds": report.holds, **asdict(report)}

    # --- 1. control -------------------------------------------------------------------------

    def control(self, connections: int) -> RunResult:
        path = "/bench/control/"
        self._wrk(path=path, connections=connections, duration_s=self.plan.warmup_s)
        result, cores = self._wrk(path=path, connections=connections, duration_s=self.plan.duration_s)
        self.control_rps[connections] = result.rps
        return self._record("control", result, cores, expected={200})

    # --- 0. the ceiling: the same server and shape, no Django -----------------------------------

    def wsgi_ceiling(self, connections: int) -> RunResult:
        """The control's load against ``bench/ceiling_app.py`` on granian in the web process's
        shape (``BenchStack.start_ceiling_web``): what the server alone answers. Its CPU is
        metered as ``web`` for the run."""
        ceiling = self.stack.ceiling_web
        assert ceiling is not None
        base_url = f"http://127.0.0.1:{ceiling.port}"
        self._wrk(path="/", connections=connections, duration_s=self.plan.warmup_s, base_url=base_url)
        web_root = self.meter.roots["web"]
        self.meter.roots["web"] = ceiling.pid
        try:
            result, cores = self._wrk(
                path="/", connections=connections, duration_s=self.plan.duration_s, base_url=base_url
            )
        finally:
            self.meter.roots["web"] = web_root
        return self._record(
            "wsgi_ceiling",
            result,
            cores,
            expected={200},
            notes=["bench/ceiling_app.py on the web process's command line"],
        )

    def hook_cost_measure(self, connections: int) -> dict[str, float]:
        """What counting answers per status (wrk's ``response()`` hook) costs in throughput."""
        path = "/bench/control/"
        without, _ = self._wrk(
            path=path, connections=connections, duration_s=self.plan.duration_s, count_statuses=False
        )
        with_hook, _ = self._wrk(path=path, connections=connections, duration_s=self.plan.duration_s)
        self.hook_cost = {
            "connections": connections,
            "rps_without_hook": round(without.rps, 1),
            "rps_with_hook": round(with_hook.rps, 1),
            "cost": round(1 - with_hook.rps / without.rps, 3) if without.rps else 0.0,
        }
        return self.hook_cost

    # --- 2. winning path --------------------------------------------------------------------

    def winning(self, connections: int) -> RunResult:
        sale = data.sale_open(stock=HUGE_STOCK, pow_difficulty=self.plan.difficulty)
        path = f"/api/sales/{sale.pk}/purchase/"
        warm_count = WARMUP_LINES_PER_SECOND * self.plan.warmup_s
        warm_shoppers = self.pool.ensure(warm_count)
        warm_file = data.request_file_write(
            self._file(f"winning-{connections}-warm"),
            warm_shoppers,
            data.presolved_bodies(sale=sale, shoppers=warm_shoppers),
        )
        warmup, _ = self._wrk(path=path, connections=connections, duration_s=self.plan.warmup_s, lines=warm_file)
        budget = self._budget(warmup)
        shoppers = self.pool.ensure(warm_count + budget)[warm_count:]
        timed_file = data.request_file_write(
            self._file(f"winning-{connections}"), shoppers, data.presolved_bodies(sale=sale, shoppers=shoppers)
        )
        result, cores = self._wrk(path=path, connections=connections, duration_s=self.plan.duration_s, lines=timed_file)
        wins = result.statuses.get(201, 0) + warmup.statuses.get(201, 0)
        return self._record("winning", result, cores, expected={201}, checks=self._checks(sale.pk, wins))

    # --- 3. sold-out path -------------------------------------------------------------------

    def sold_out(self, connections: int) -> RunResult:
        sale = data.sale_open(stock=1, pow_difficulty=self.plan.difficulty)
        shoppers = self.pool.ensure(CYCLED_SHOPPERS + 1)
        data.sale_sell_out(sale, shoppers[:1])
        lines = self._cycled_file(f"sold-out-{connections}", sale, shoppers[1:], self._lines_for_cycles(connections))
        path = f"/api/sales/{sale.pk}/purchase/"
        # The warm-up is the stampede's first second: every process hears "sold out" from the
        # script once and answers from its local marker from then on.
        self._wrk(path=path, connections=connections, duration_s=self.plan.warmup_s, lines=lines)
        result, cores = self._wrk(path=path, connections=connections, duration_s=self.plan.duration_s, lines=lines)
        return self._record("sold_out", result, cores, expected={409}, checks=self._checks(sale.pk, 0))

    # --- 3b. not started -------------------------------------------------------------------

    def not_started(self, connections: int) -> RunResult:
        """The crowd pressing Buy before the second: a sale opening in an hour, each request
        with a solved challenge; every answer is 409 NOT_STARTED from the web process's copy of
        the sale, before the proof of work is checked (docs/funnel.md)."""
        sale = self._not_started_sale()
        shoppers = self.pool.ensure(CYCLED_SHOPPERS)
        lines = self._cycled_file(f"not-started-{connections}", sale, shoppers, self._lines_for_cycles(connections))
        path = f"/api/sales/{sale.pk}/purchase/"
        self._wrk(path=path, connections=connections, duration_s=self.plan.warmup_s, lines=lines)
        result, cores = self._wrk(path=path, connections=connections, duration_s=self.plan.duration_s, lines=lines)
        return self._record("not_started", result, cores, expected={409}, checks=self._checks(sale.pk, 0))

    def _not_started_sale(self) -> FlashSale:
        return data.sale_open(stock=HUGE_STOCK, pow_difficulty=self.plan.difficulty, starts_in_s=NOT_STARTED_IN_S)

    # --- 4. rate-limited path ---------------------------------------------------------------

    def rate_limited(self, connections: int) -> RunResult:
        """A sale whose bucket holds one attempt and refills one a second: nearly every answer
        is a 429 from the web process's empty lease; the few admitted attempts win (201), and
        a cycled shopper who won earlier hears their order (409 ALREADY_PURCHASED)."""
        sale = data.sale_open(
            stock=HUGE_STOCK, pow_difficulty=self.plan.difficulty, bucket_capacity=1, bucket_refill_per_second=1
        )
        shoppers = self.pool.ensure(CYCLED_SHOPPERS)
        lines = self._cycled_file(f"rate-limited-{connections}", sale, shoppers, self._lines_for_cycles(connections))
        path = f"/api/sales/{sale.pk}/purchase/"
        warmup, _ = self._wrk(path=path, connections=connections, duration_s=self.plan.warmup_s, lines=lines)
        result, cores = self._wrk(path=path, connections=connections, duration_s=self.plan.duration_s, lines=lines)
        wins = result.statuses.get(201, 0) + warmup.statuses.get(201, 0)
        return self._record(
            "rate_limited",
            result,
            cores,
            expected={429, 201, 409},
            checks=self._checks(sale.pk, wins),
            notes=[
                f"server's per-user window {self.stack.env['ANTIBOT_USER_LIMIT']}/s; shoppers cycled: {len(shoppers)}"
            ],
        )

    # --- 4b-4d. the other reasons a purchase hears 429 -------------------------------------

    def rate_limited_user(self, connections: int) -> RunResult:
        """Five shoppers pressing Buy on an open sale: each is over the per-user window (the
        shipped 10 a second, per web process) at once, so nearly every answer is 429
        ``reason: "user"``; the calls inside the window are answered 403 ``POW_INVALID``
        (their proofs are for another sale, ``_reason_file``), so none wins."""
        return self._reason_run("rate_limited_user", connections)

    def rate_limited_ip(self, connections: int) -> RunResult:
        """The cycled crowd pressing Buy, all from 127.0.0.1, on a web process of the run's
        shape with the shipped per-address window (``ANTIBOT_IP_LIMIT``, 200 a second per
        process; ``BenchStack.start_address_web``): 429 ``reason: "ip"`` past it, 403
        ``POW_INVALID`` inside it (proofs for another sale, ``_reason_file``)."""
        return self._reason_run("rate_limited_ip", connections)

    def rate_limited_crowd(self, connections: int) -> RunResult:
        """The cycled crowd with solved challenges on a sale of 200 units and a crowd factor of
        0.1: each process lets at most ``ceil(0.1 x R)`` attempts a second through to the script
        (they win, 201; a cycled winner later hears 409), the rest hear 429 ``reason: "crowd"``
        before their proof is checked (docs/funnel.md)."""
        return self._reason_run("rate_limited_crowd", connections)

    def _reason_sale(self, scenario: str) -> tuple[FlashSale, list[data.Shopper]]:
        """A fresh sale for a row of 4b-4d, closed or open loop, and the shoppers it cycles."""
        if scenario == "rate_limited_crowd":
            sale = data.sale_open(stock=CROWD_STOCK, pow_difficulty=self.plan.difficulty, crowd_factor=CROWD_FACTOR)
        else:
            sale = data.sale_open(stock=HUGE_STOCK, pow_difficulty=self.plan.difficulty)
        return sale, self.pool.ensure(USER_WINDOW_SHOPPERS if scenario == "rate_limited_user" else CYCLED_SHOPPERS)

    def _reason_run(self, scenario: str, connections: int) -> RunResult:
        sale, shoppers = self._reason_sale(scenario)
        lines = self._reason_file(f"{scenario.replace('_', '-')}-{connections}", scenario, sale, shoppers,
                                  self._lines_for_cycles(connections))  # fmt: skip
        path = f"/api/sales/{sale.pk}/purchase/"
        with self._web_for(scenario) as web:
            base_url = f"http://127.0.0.1:{web.port}" if web else None
            warmup, _ = self._wrk(
                path=path, connections=connections, duration_s=self.plan.warmup_s, lines=lines, base_url=base_url
            )
            result, cores = self._wrk(
                path=path, connections=connections, duration_s=self.plan.duration_s, lines=lines, base_url=base_url
            )
        wins = result.statuses.get(201, 0) + warmup.statuses.get(201, 0)
        return self._record(
            scenario,
            result,
            cores,
            expected=self._reason_expected(scenario),
            checks=self._reason_checks(scenario, sale.pk, wins),
            notes=[self._reason_note(scenario, len(shoppers))],
        )

    def _reason_file(
        self, name: str, scenario: str, sale: FlashSale, shoppers: list[data.Shopper], lines_needed: int
    ) -> Path:
        """The row's request file. Rows 4b and 4c send each shopper's solved challenge of
        another sale: a body the size of a real proof, refused 403 (``wrong sale``) when it is
        checked, so no attempt inside the window wins and the shopper stays a non-winner."""
        if scenario == "rate_limited_crowd":
            return self._cycled_file(name, sale, shoppers, lines_needed)
        if self._elsewhere is None:
            self._elsewhere = data.sale_open(stock=HUGE_STOCK, pow_difficulty=self.plan.difficulty)
        return self._cycled_file(name, self._elsewhere, shoppers, lines_needed)

    @staticmethod
    def _reason_expected(scenario: str) -> set[int]:
        return {429, 201, 409} if scenario == "rate_limited_crowd" else {429, 403}

    def _reason_checks(self, scenario: str, sale_id: int, wins: int) -> dict[str, Any]:
        """The invariants, and the funnel's own count of the reason: the row is only what it
        says if that reason answered most of the sale's attempts (its share is in the row)."""
        checks = self._checks(sale_id, wins)
        funnel = funnel_counts(sale_id, settle_s=1.5)  # the processes flush once a second
        reason = REASONS[scenario]
        arrived = funnel.get("arrived", 0)
        shed = funnel.get(f"shed:{reason}", 0)
        checks["funnel"] = funnel
        checks["reason"] = reason
        checks["reason_share"] = round(shed / arrived, 4) if arrived else 0.0
        checks["holds"] = bool(checks["holds"] and checks["reason_share"] > REASON_SHARE)
        return checks

    def _reason_note(self, scenario: str, shoppers: int) -> str:
        env = self.stack.env
        if scenario == "rate_limited_user":
            limit = env["ANTIBOT_USER_LIMIT"]
            return f"{shoppers} shoppers, proofs for another sale; the per-user window {limit}/s a process"
        if scenario == "rate_limited_ip":
            return f"{shoppers} shoppers cycled from 127.0.0.1, proofs for another sale; the shipped per-address window"
        return f"{shoppers} shoppers cycled with solved challenges; stock {CROWD_STOCK}, crowd factor {CROWD_FACTOR}"

    @contextmanager
    def _web_for(self, scenario: str) -> Iterator[Child | None]:
        """The web process a row runs against (None: the stack's), its CPU metered as ``web``."""
        if scenario != "rate_limited_ip":
            yield None
            return
        web = self.stack.start_address_web()
        root = self.meter.roots["web"]
        self.meter.roots["web"] = web.pid
        try:
            yield web
        finally:
            self.meter.roots["web"] = root

    # --- 5. naive shop ----------------------------------------------------------------------

    def naive(self, connections: int) -> RunResult:
        stock = naive_stock_create(name=f"naive-{connections}", total=HUGE_STOCK)
        path = f"/bench/naive/{stock.pk}/purchase/"
        warm_count = WARMUP_LINES_PER_SECOND * self.plan.warmup_s
        warm_shoppers = self.pool.ensure(warm_count)
        warm_file = data.request_file_write(self._file(f"naive-{connections}-warm"), warm_shoppers)
        warmup, _ = self._wrk(path=path, connections=connections, duration_s=self.plan.warmup_s, lines=warm_file)
        shoppers = self.pool.ensure(warm_count + self._budget(warmup))[warm_count:]
        timed_file = data.request_file_write(self._file(f"naive-{connections}"), shoppers)
        result, cores = self._wrk(path=path, connections=connections, duration_s=self.plan.duration_s, lines=timed_file)
        check = naive_stock_check(stock_id=stock.pk)
        checks = {
            "stock_id": stock.pk,
            "holds": check.consistent and check.oversold == 0,
            "oversold": check.oversold,
            "orders": check.orders,
            "remaining_plus_orders_is_total": check.remaining + check.orders == check.total,
            "users_with_more_than_one": check.users_with_more_than_one,
        }
        return self._record("naive", result, cores, expected={201}, checks=checks)

    # --- 8. the seed's stampede -------------------------------------------------------------

    def seed(self, *, scenario: str = "seed", base_url: str | None = None, note: str = "") -> RunResult:
        """Stock 10; ``seed_users`` users each sending ``seed_per_user`` requests (each with its
        own solved challenge), shuffled, over ``seed_connections`` connections opened at once.
        ``base_url``: another entry point (scenario 11: HAProxy in front of three processes)."""
        plan = self.plan
        sale = data.sale_open(stock=plan.seed_stock, pow_difficulty=plan.difficulty, bucket_capacity=1000)
        shoppers = self.pool.ensure(plan.seed_users)
        lines = data.stampede_file_write(
            self._file(scenario), sale=sale, shoppers=shoppers, per_user=plan.seed_per_user
        )
        total = plan.seed_users * plan.seed_per_user
        commands_before = redis_commands(self.stack)
        result, cores = self._wrk(
            path=f"/api/sales/{sale.pk}/purchase/",
            connections=plan.seed_connections,
            duration_s=120 if not plan.quick else 30,
            lines=lines,
            base_url=base_url,
        )
        return self._record(
            scenario,
            result,
            cores,
            expected={201, 409, 429},
            checks=self._seed_checks(sale, result.statuses.get(201, 0), commands_before),
            notes=[
                f"stock {plan.seed_stock}, {total} requests from {plan.seed_users} users "
                f"over {plan.seed_connections} connections" + (f"; {note}" if note else "")
            ],
        )

    def _seed_checks(self, sale: FlashSale, wins_answered: int, commands_before: int) -> dict[str, Any]:
        checks = self._checks(sale.pk, wins_answered)
        checks["funnel"] = funnel_counts(sale.pk)
        checks["bucket_capacity"] = sale.bucket_capacity
        checks["reached_redis"] = checks["funnel"].get("script", 0)
        checks["redis_commands"] = redis_commands(self.stack) - commands_before
        checks["winners"] = checks["buyers"]
        checks["exactly_stock_winners"] = checks["buyers"] == self.plan.seed_stock == wins_answered
        checks["holds"] = bool(checks["holds"] and checks["exactly_stock_winners"])
        return checks

    def seed_k6(self) -> RunResult:
        """The seed's stampede again, driven by k6 (``bench/k6/stampede.js``, the seed's own
        tool) instead of wrk: a fresh sale, the same users, attempts and solved challenges,
        each line once over the same number of connections (k6's virtual users)."""
        plan = self.plan
        sale = data.sale_open(stock=plan.seed_stock, pow_difficulty=plan.difficulty, bucket_capacity=1000)
        shoppers = self.pool.ensure(plan.seed_users)
        lines = data.stampede_file_write(
            self._file("seed-k6"), sale=sale, shoppers=shoppers, per_user=plan.seed_per_user
        )
        commands_before = redis_commands(self.stack)
        before = self.meter.snapshot()
        result = stampede_run(
            base_url=self.stack.web_url,
            sale_id=sale.pk,
            shoppers=lines,
            vus=plan.seed_connections,
            max_duration_s=120 if not plan.quick else 30,
        )
        after = self.meter.snapshot()
        cores = CpuMeter.spent(before, after, wall_s=result.wall_s, loadgen_s=result.loadgen_cpu_s)
        return self._record(
            "seed_k6",
            result,
            cores,
            expected={201, 409, 429},
            checks=self._seed_checks(sale, result.statuses.get(201, 0), commands_before),
            notes=[
                f"k6 (bench/k6/stampede.js), {plan.seed_connections} VUs closed loop; stock {plan.seed_stock}, "
                f"{plan.seed_users * plan.seed_per_user} requests from {plan.seed_users} users"
            ],
        )

    # --- open loop: connections held, load below saturation ---------------------------------

    def paced(self, scenario: str, connections: int) -> RunResult | None:
        """``scenario`` again at ``connections``, open loop at ``PACED_FRACTION`` of the rate its
        saturated run served: the latency of a crowd that is connected but not queueing."""
        saturated = next(
            (
                run
                for run in reversed(self.runs)
                if (run.scenario, run.connections, run.load) == (scenario, connections, "saturated")
            ),
            None,
        )
        if saturated is None or saturated.rps <= 0:
            return None
        rate = saturated.rps * PACED_FRACTION
        needed = math.ceil(rate * self.plan.duration_s * LINE_HEADROOM) + connections
        lines: Path | None = None
        sale: FlashSale | None = None
        if scenario == "control":
            path, expected = "/bench/control/", {200}
        elif scenario == "winning":
            sale = data.sale_open(stock=HUGE_STOCK, pow_difficulty=self.plan.difficulty)
            shoppers = self.pool.ensure(needed)
            lines = data.request_file_write(
                self._file(f"paced-{scenario}"), shoppers, data.presolved_bodies(sale=sale, shoppers=shoppers)
            )
            path, expected = f"/api/sales/{sale.pk}/purchase/", {201}
        elif scenario == "sold_out":
            sale = data.sale_open(stock=1, pow_difficulty=self.plan.difficulty)
            shoppers = self.pool.ensure(CYCLED_SHOPPERS + 1)
            data.sale_sell_out(sale, shoppers[:1])
            lines = self._cycled_file(f"paced-{scenario}", sale, shoppers[1:], needed)
            path, expected = f"/api/sales/{sale.pk}/purchase/", {409}
        elif scenario == "not_started":
            sale = self._not_started_sale()
            lines = self._cycled_file(f"paced-{scenario}", sale, self.pool.ensure(CYCLED_SHOPPERS), needed)
            path, expected = f"/api/sales/{sale.pk}/purchase/", {409}
        elif scenario in REASONS:
            sale, shoppers = self._reason_sale(scenario)
            lines = self._reason_file(f"paced-{scenario}", scenario, sale, shoppers, needed)
            path, expected = f"/api/sales/{sale.pk}/purchase/", self._reason_expected(scenario)
        else:
            sale = data.sale_open(
                stock=HUGE_STOCK, pow_difficulty=self.plan.difficulty, bucket_capacity=1, bucket_refill_per_second=1
            )
            lines = self._cycled_file(f"paced-{scenario}", sale, self.pool.ensure(CYCLED_SHOPPERS), needed)
            # as in the closed loop: a cycled shopper who won hears their order (409)
            path, expected = f"/api/sales/{sale.pk}/purchase/", {429, 201, 409}
        assert self.stack.web is not None
        with self._web_for(scenario) as web:
            before = self.meter.snapshot()
            result = paced_run(
                port=(web or self.stack.web).port,
                path=path,
                connections=connections,
                rate=rate,
                duration_s=self.plan.duration_s,
                lines=lines,
            )
            after = self.meter.snapshot()
        cores = CpuMeter.spent(before, after, wall_s=result.wall_s, loadgen_s=result.loadgen_cpu_s)
        checks: dict[str, Any] | None = None
        if sale is not None and scenario in REASONS:
            checks = self._reason_checks(scenario, sale.pk, result.statuses.get(201, 0))
        elif sale is not None:
            checks = self._checks(sale.pk, result.statuses.get(201, 0))
        return self._record(
            scenario,
            result,
            cores,
            expected=expected,
            checks=checks,
            notes=[f"open loop (bench/paced.py) at {PACED_FRACTION:.0%} of the saturated run's {saturated.rps:.0f}/s"],
        )


def redis_commands(stack: BenchStack) -> int:
    """Commands the stack's Redis has run so far (every database: sale data, the broker, the
    cache): what a run costs Redis is the difference."""
    assert stack.redis is not None
    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    try:
        return int(client.info("stats")["total_commands_processed"])
    finally:
        client.close()
