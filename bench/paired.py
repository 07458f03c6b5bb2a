"""Paired runs: one path measured two ways back to back in the same run, on the same stack
(issues 23 and 26: the transparency log on and off, no webhook endpoint and ten).

A shared machine's speed changes by the minute, so each side runs more than once, in the
order A B B A (a drift over the run weighs on both sides alike), and the sides are compared
by their medians. ``webs_start`` adds a web process in the shipped shape with a few settings
of its own (the log on or off); ``win`` is scenario 2's winning run against any web process,
with a step between the load and the invariant checks.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable, Iterable, Sequence

from devstack import probes
from devstack.children import Child, ChildError, spawn
from devstack.localservers import free_port
from devstack.procfile import command

from . import data
from .scenarios import HUGE_STOCK, WARMUP_LINES_PER_SECOND, RunResult, Scenarios
from .stack import ROOT, BenchStack, StackError


def abba(first: str, second: str, *, rounds: int) -> tuple[str, ...]:
    """The order of ``rounds`` runs of each side: A B B A, then again (one round: A B)."""
    order: list[str] = []
    for index in range(rounds):
        order += [first, second] if index % 2 == 0 else [second, first]
    return tuple(order)


def cpu_ms_per_answer(run: RunResult, process: str = "web") -> float:
    """Milliseconds of ``process``'s CPU per answer in a saturated run (cores busy / answers a
    second): on a shared machine it moves less than throughput with what else runs."""
    return round(1000 * run.cpu_cores.get(process, 0.0) / run.rps, 4) if run.rps else 0.0


def median(values: Iterable[float]) -> float:
    values = list(values)
    return float(statistics.median(values)) if values else 0.0


def spread(values: Sequence[float]) -> float:
    """(max - min) / median: how far runs of the same side differ."""
    middle = median(values)
    return (max(values) - min(values)) / middle if len(values) > 1 and middle else 0.0


def webs_start(stack: BenchStack, envs: dict[str, dict[str, str]]) -> dict[str, Child]:
    """One more web process per name in the run's shape (``BenchStack._web_shape``), each
    with its ``env`` over the stack's environment, started together; the caller stops them."""
    webs: dict[str, Child] = {}
    try:
        for name, env in envs.items():
            port = free_port()
            webs[name] = spawn(
                "web",
                command("web", stack._web_shape(port)),
                env={**os.environ, **stack.env, **env},
                cwd=ROOT,
                log=stack.work_dir / f"web-{name}.log",
                port=port,
            )
        for child in webs.values():
            child.wait_until(
                lambda child=child: probes.http_ok(f"{child.url}/bench/control/"),  # type: ignore[misc]
                what="answer /bench/control/",
            )
    except ChildError as error:
        for child in webs.values():
            child.stop()
        raise StackError(str(error)) from None
    return webs


def control(s: Scenarios, *, connections: int) -> dict[str, float]:
    """The control at ``connections`` (warm-up, then the timed run), not recorded as a row:
    the baseline of one paired round. Returns its req/s, p50 and p99."""
    path = "/bench/control/"
    s._wrk(path=path, connections=connections, duration_s=s.plan.warmup_s)
    result, _ = s._wrk(path=path, connections=connections, duration_s=s.plan.duration_s)
    return {
        "rps": round(result.rps, 1),
        "p50_ms": round(result.latency_ms["p50"], 2),
        "p99_ms": round(result.latency_ms["p99"], 2),
    }


def win(
    s: Scenarios,
    *,
    scenario: str,
    connections: int,
    web: Child | None = None,
    before_timed: Callable[[], object] | None = None,
    after_load: Callable[[int], dict[str, object]] | None = None,
    notes: list[str] | None = None,
) -> RunResult:
    """Scenario 2 (``Scenarios.winning``) recorded as ``scenario``, against ``web`` (default:
    the stack's web process), its CPU metered as the table's web column. ``before_timed()``
    runs right before the timed load; ``after_load(sale id)`` once it ended, before the
    invariants are checked, and what it returns joins the run's checks."""
    base_url = web.url if web is not None else None
    shared_web = s.meter.roots["web"]
    if web is not None:
        s.meter.roots["web"] = web.pid
    try:
        sale = data.sale_open(stock=HUGE_STOCK, pow_difficulty=s.plan.difficulty)
        path = f"/api/sales/{sale.pk}/purchase/"
        warm_count = WARMUP_LINES_PER_SECOND * s.plan.warmup_s
        warm_shoppers = s.pool.ensure(warm_count)
        warm_file = data.request_file_write(
            s._file(f"{scenario}-warm"), warm_shoppers, data.presolved_bodies(sale=sale, shoppers=warm_shoppers)
        )
        warmup, _ = s._wrk(
            path=path, connections=connections, duration_s=s.plan.warmup_s, lines=warm_file, base_url=base_url
        )
        shoppers = s.pool.ensure(warm_count + s._budget(warmup))[warm_count:]
        timed_file = data.request_file_write(
            s._file(scenario), shoppers, data.presolved_bodies(sale=sale, shoppers=shoppers)
        )
        if before_timed is not None:
            before_timed()
        result, cores = s._wrk(
            path=path, connections=connections, duration_s=s.plan.duration_s, lines=timed_file, base_url=base_url
        )
    finally:
        s.meter.roots["web"] = shared_web
    extra = after_load(sale.pk) if after_load is not None else {}
    wins = result.statuses.get(201, 0) + warmup.statuses.get(201, 0)
    checks = {**s._checks(sale.pk, wins), **extra}
    return s._record(scenario, result, cores, expected={201}, checks=checks, notes=notes)
