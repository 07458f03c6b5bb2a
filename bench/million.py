"""Scenario 14, the seed's million (issue 27, point 4): 1,000,000 purchase attempts over
10,000 connections at a 10-unit sale, in one run.

The workload is scenario 8's, ten times over: the seed's crowd (``seed_users`` shoppers,
``seed_per_user`` attempts each, each attempt with its own challenge issued by the server's
code and solved ahead, shuffled) written once and cycled until the million, each line sent
once by wrk (``bench/wrk/requests.lua``). Only the first pass can reach the script: the sale
sells out within its first requests, and from then on every web process answers from its
local sold-out marker, which comes before the proof of work is checked (so a challenge sent a
second time is never spent twice). Expected answers: 201 (exactly the stock), 409, 429.

10,000 connections at once need what the stack's web process does not have:

- open files: one socket is one open file, in wrk and in the web worker that holds it. The
  soft limit of this process is raised to its hard limit before wrk and the web process are
  started (they inherit it), as the ws process raises its own under ``make run``
  (``wsdoor.hub.open_file_limit_raise``); as root the hard limit too, if it is short.
- a web process that takes them: the run's web shape (``BenchStack.start_wide_web``) with
  each worker's backpressure (which, in granian, the connections a worker serves at once)
  and the listening backlog raised to the connections. The kernel caps a backlog at
  ``net.core.somaxconn``: raised for the run, as root only, and put back after.

Rows: ``million_control`` (the bare Django view on that web process at the same connections,
the baseline of the ratios), ``million`` and ``million_again`` (a second million on a fresh
sale, the same crowd). Before and after each, the RSS of every process of every tree (the web
process and its workers, the TCP door, the ws process if one runs, Redis, PostgreSQL and its
backends, the Celery worker) from ``/proc/<pid>/status``: what the million grew must be
reused by the second, not grown again (``MEMORY_FLOOR_MIB`` below).
"""

from __future__ import annotations

import math
import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import data
from .cpu import CpuMeter
from .loadgen import LoadResult, wrk_run
from .report import TargetCheck
from .scenarios import RunResult, Scenarios, redis_commands


@dataclass(frozen=True)
class MillionSize:
    requests: int
    connections: int
    max_duration_s: int


FULL = MillionSize(requests=1_000_000, connections=10_000, max_duration_s=1200)
QUICK = MillionSize(requests=20_000, connections=1_000, max_duration_s=60)
FILES_KEPT = 1000
"""Open files a process needs beyond its connections (Redis and PostgreSQL clients, logs)."""
WRK_TIMEOUT_S = 30
"""At 10,000 connections closed loop the queue is seconds long (Little's law): wrk's timeout
is raised from the bench's 10 s so an answer that comes is counted as one."""
EXPECTED = frozenset({201, 409, 429})
MEMORY_FLOOR_MIB = 16.0
"""The memory target: after the second million, no process tree holds more than
``MEMORY_FLOOR_MIB`` above the most it held at an earlier snapshot (before the million, after
it): what the first million took, the second reused. Counted without shared memory (VmRSS less
RssShmem): PostgreSQL's shared buffers show up in the RSS of every backend that touched them,
and are bounded by ``shared_buffers``, not by the run. VmRSS itself is reported beside it."""
SOMAXCONN = Path("/proc/sys/net/core/somaxconn")


# --- the limits 10,000 connections need -------------------------------------------------------


def open_files_raise(needed: int) -> dict[str, Any]:
    """Raise this process's RLIMIT_NOFILE so its children (wrk, the web process) can each hold
    ``needed`` open files: the soft limit to the hard one, the hard one too as root."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    report: dict[str, Any] = {"needed": needed, "before": [soft, hard], "how": "already enough"}
    if soft == resource.RLIM_INFINITY or soft >= needed:
        report["after"] = [soft, hard]
        return report
    if hard != resource.RLIM_INFINITY and hard < needed:
        if os.geteuid() != 0:
            raise RuntimeError(
                f"the million needs {needed} open files; the hard limit is {hard} (raise it: ulimit -Hn, "
                "or limits.conf / the container's nofile)"
            )
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
        report["how"] = "soft and hard limits raised (root)"
    else:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        report["how"] = "soft limit raised to the hard limit"
    report["after"] = list(resource.getrlimit(resource.RLIMIT_NOFILE))
    return report


def somaxconn_raise(needed: int) -> tuple[dict[str, Any], int | None]:
    """``net.core.somaxconn`` at least ``needed`` (the cap on a listening backlog), as root
    only; returns the report and the value to put back (None: nothing changed)."""
    try:
        current = int(SOMAXCONN.read_text())
    except (OSError, ValueError):
        return {"somaxconn": None, "how": "not readable"}, None
    report: dict[str, Any] = {"somaxconn_before": current, "somaxconn": current, "needed": needed}
    if current >= needed:
        report["how"] = "already enough"
        return report, None
    if os.geteuid() != 0:
        report["how"] = f"not root: left at {current}; the backlog is capped there (connections beyond it retry SYN)"
        return report, None
    try:
        SOMAXCONN.write_text(str(needed))
    except OSError as error:
        report["how"] = f"could not raise it as root ({error}); the backlog is capped at {current}"
        return report, None
    report["somaxconn"] = int(SOMAXCONN.read_text())
    report["how"] = f"raised as root from {current} for the scenario, put back after"
    return report, current


def somaxconn_restore(value: int | None) -> None:
    if value is not None:
        SOMAXCONN.write_text(str(value))


def _open_file_limit(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                return int(line.split()[3])
    except (OSError, ValueError, IndexError):
        return None
    return None


# --- RSS of every process of every tree -------------------------------------------------------


def _parents() -> dict[int, int]:
    table: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        table[int(entry.name)] = int(raw[raw.rindex(")") + 2 :].split()[1])
    return table


def _status_kib(pid: int) -> dict[str, int]:
    values: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in {"VmRSS", "RssAnon", "RssShmem"}:
                values[name] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        return {}
    return values


def _name(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [word.decode(errors="replace") for word in argv if word]
    if not words:
        return "?"
    # Python processes by what they run (granian, celery, manage.py ...), others by argv[0]
    # (PostgreSQL writes each backend's role there: "postgres: bench flashsale 127.0.0.1(...)").
    if Path(words[0]).name.startswith("python"):
        words = words[1:]
        if words[:1] == ["-m"]:
            words = words[1:]
    return " ".join(words)[:90]


def rss_snapshot(roots: dict[str, int], label: str) -> dict[str, Any]:
    """VmRSS (and its private share, RssAnon) of every process of each tree, in KiB."""
    parents = _parents()
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    trees: dict[str, Any] = {}
    for tree, root in roots.items():
        if not root:
            continue
        processes: list[dict[str, Any]] = []
        stack = [root]
        while stack:
            pid = stack.pop()
            if pid not in parents:
                continue
            stack.extend(sorted(children.get(pid, [])))
            status = _status_kib(pid)
            if not status.get("VmRSS"):  # a wrapper that exec'd nothing yet, or gone
                continue
            processes.append(
                {
                    "pid": pid,
                    "name": _name(pid),
                    "rss_kib": status["VmRSS"],
                    "anon_kib": status.get("RssAnon", 0),
                    "shmem_kib": status.get("RssShmem", 0),
                }
            )
        trees[tree] = {
            "rss_mib": round(sum(p["rss_kib"] for p in processes) / 1024, 1),
            "anon_mib": round(sum(p["anon_kib"] for p in processes) / 1024, 1),
            "processes": processes,
        }
    total = round(sum(tree["rss_mib"] for tree in trees.values()), 1)
    return {"label": label, "taken_at": round(time.time(), 1), "total_rss_mib": total, "trees": trees}


def rss_growth(earlier: dict[str, Any], later: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per tree, between two snapshots: what the processes alive at both grew by, in VmRSS and
    in their own memory (VmRSS less RssShmem), MiB; and the processes that came or went
    (PostgreSQL's autovacuum workers come and go; a leak in processes would show as a count
    that keeps growing)."""
    growth: dict[str, dict[str, Any]] = {}
    for tree, after in later["trees"].items():
        before = earlier["trees"].get(tree, {"processes": []})
        then = {p["pid"]: p for p in before["processes"]}
        now = {p["pid"]: p for p in after["processes"]}
        both = then.keys() & now.keys()
        rss = sum(now[pid]["rss_kib"] - then[pid]["rss_kib"] for pid in both)
        shared = sum(now[pid]["shmem_kib"] - then[pid]["shmem_kib"] for pid in both)
        growth[tree] = {
            "rss_mib": round(rss / 1024, 1),
            "own_mib": round((rss - shared) / 1024, 1),
            "processes": [len(then), len(now)],
            "came": len(now.keys() - then.keys()),
            "went": len(then.keys() - now.keys()),
        }
    return growth


# --- the scenario -----------------------------------------------------------------------------


class Million:
    def __init__(self, scenarios: Scenarios) -> None:
        self.scenarios = scenarios
        self.plan = scenarios.plan
        self.size = QUICK if self.plan.quick else FULL
        self.log = scenarios.log

    def _roots(self, web_pid: int) -> dict[str, int]:
        stack = self.scenarios.stack
        roots = {"web": web_pid, "web_other": stack.web.pid if stack.web else 0}
        roots["tcp"] = stack.tcp.pid if stack.tcp else 0
        roots["ws"] = stack.ws.pid if stack.ws and stack.ws.process.poll() is None else 0
        roots["redis"] = stack.redis.process.pid if stack.redis and stack.redis.process else 0
        roots["postgres"] = stack.postgres.process.pid if stack.postgres and stack.postgres.process else 0
        roots["worker"] = stack.worker.pid if stack.worker else 0
        return roots

    def _wrk(
        self, *, base_url: str, path: str, duration_s: int, lines: Path | None
    ) -> tuple[LoadResult, dict[str, float]]:
        meter = self.scenarios.meter
        before = meter.snapshot()
        result = wrk_run(
            base_url=base_url,
            path=path,
            connections=self.size.connections,
            duration_s=duration_s,
            lines=lines,
            timeout_s=WRK_TIMEOUT_S,
        )
        after = meter.snapshot()
        return result, CpuMeter.spent(before, after, wall_s=result.wall_s, loadgen_s=result.loadgen_cpu_s)

    def _lines(self, name: str) -> tuple[Any, Path, int]:
        """A fresh 10-unit sale and the million's request file: the seed's crowd, cycled."""
        plan = self.plan
        sale = data.sale_open(stock=plan.seed_stock, pow_difficulty=plan.difficulty, bucket_capacity=1000)
        shoppers = self.scenarios.pool.ensure(plan.seed_users)
        crowd = data.stampede_file_write(
            self.scenarios.scratch / f"{name}-crowd.txt", sale=sale, shoppers=shoppers, per_user=plan.seed_per_user
        )
        distinct = crowd.read_text(encoding="utf-8").splitlines(keepends=True)
        path = self.scenarios.scratch / f"{name}.txt"
        repeats = math.ceil(self.size.requests / len(distinct))
        with path.open("w", encoding="utf-8") as out:
            for _ in range(repeats - 1):
                out.writelines(distinct)
            out.writelines(distinct[: self.size.requests - (repeats - 1) * len(distinct)])
        crowd.unlink()
        return sale, path, len(distinct)

    def _attempts(self, name: str, base_url: str) -> RunResult:
        began = time.monotonic()
        sale, lines, distinct = self._lines(name)
        self.log(
            f"  {name}: sale {sale.pk}, {distinct:,} challenges issued and solved in {time.monotonic() - began:.1f} s"
        )
        commands_before = redis_commands(self.scenarios.stack)
        result, cores = self._wrk(
            base_url=base_url,
            path=f"/api/sales/{sale.pk}/purchase/",
            duration_s=self.size.max_duration_s,
            lines=lines,
        )
        lines.unlink()
        checks = self.scenarios._seed_checks(sale, result.statuses.get(201, 0), commands_before)
        answered = sum(result.statuses.values())
        checks["answered"] = answered
        checks["every_request_answered"] = answered == self.size.requests and result.unexpected(set(EXPECTED)) == 0
        checks["holds"] = bool(checks["holds"] and checks["every_request_answered"])
        plan = self.plan
        return self.scenarios._record(
            name,
            result,
            cores,
            expected=set(EXPECTED),
            checks=checks,
            notes=[
                f"stock {plan.seed_stock}; {self.size.requests:,} attempts over {self.size.connections:,} connections: "
                f"the seed's {distinct:,} ({plan.seed_users:,} users x {plan.seed_per_user}, each with its own "
                f"solved challenge) cycled {self.size.requests / distinct:g}x; wrk read its file for "
                f"{result.wall_s - result.duration_s:.1f} s of the {result.wall_s:.1f} s its CPU share is over"
            ],
        )

    def run(self) -> dict[str, Any]:
        began = time.monotonic()
        size, stack = self.size, self.scenarios.stack
        document: dict[str, Any] = {"requests": size.requests, "connections": size.connections}
        document["open_files"] = open_files_raise(size.connections + FILES_KEPT)
        backlog, restore = somaxconn_raise(size.connections)
        document["backlog"] = backlog | {"granian_backlog": size.connections, "granian_backpressure": size.connections}
        self.log(
            f"  open files: {document['open_files']['how']} ({document['open_files']['before']} -> "
            f"{document['open_files']['after']}); net.core.somaxconn {backlog.get('somaxconn')}: {backlog['how']}"
        )
        meter = self.scenarios.meter
        web_root = meter.roots["web"]
        try:
            wide = stack.start_wide_web(connections=size.connections)
            meter.roots["web"] = wide.pid
            document["web"] = (
                f"{stack.web_config.describe().rsplit(',', 1)[0]}, backpressure {size.connections:,} per worker, "
                f"backlog {size.connections:,}"
            )
            roots = self._roots(wide.pid)
            document["roots"] = roots
            document["not_running"] = sorted(tree for tree, pid in roots.items() if not pid)
            time.sleep(1.0)  # the workers' imports settle
            snapshots = [rss_snapshot(roots, "web started")]
            document["open_files"]["web_processes"] = {
                str(process["pid"]): _open_file_limit(process["pid"])
                for process in snapshots[0]["trees"]["web"]["processes"]
            }
            self.log(f"  control @{size.connections:,} on {document['web']}")
            self._wrk(base_url=wide.url, path="/bench/control/", duration_s=self.plan.warmup_s, lines=None)
            result, cores = self._wrk(
                base_url=wide.url, path="/bench/control/", duration_s=self.plan.duration_s, lines=None
            )
            control = self.scenarios._record(
                "million_control",
                result,
                cores,
                expected={200},
                notes=["/bench/control/ on the million's web process: its baseline at the same connections"],
            )
            snapshots.append(rss_snapshot(roots, "before the million"))
            self.log(f"  {size.requests:,} attempts over {size.connections:,} connections at a 10-unit sale ...")
            million = self._attempts("million", wide.url)
            snapshots.append(rss_snapshot(roots, "after the million"))
            self.log("  ... and a second million on a fresh sale, same crowd")
            again = self._attempts("million_again", wide.url)
            snapshots.append(rss_snapshot(roots, "after the second million"))
        finally:
            meter.roots["web"] = web_root
            stack.stop_wide_web()
            somaxconn_restore(restore)
        for run in (million, again):
            run.ratios["control"] = round(run.rps / control.rps, 3) if control.rps else 0.0
        document["vs_control"] = {
            run.scenario: {
                "rps": run.ratios["control"],
                **{
                    name: round(run.latency_ms[name] / control.latency_ms[name], 2) if control.latency_ms[name] else 0.0
                    for name in ("p50", "p99", "max")
                },
            }
            for run in (million, again)
        }
        document["rss"] = snapshots
        document["growth"] = {
            "million": rss_growth(snapshots[1], snapshots[2]),
            "million_again": rss_growth(snapshots[2], snapshots[3]),
            # after the second million against the higher of before and after the first
            "above_peak": above_peak(before=snapshots[1], first=snapshots[2], second=snapshots[3]),
        }
        document["wall_s"] = round(time.monotonic() - began, 1)
        document["lines"] = describe(document)
        for line in document["lines"][1:]:
            self.log(line)
        return document


def million_scenario(scenarios: Scenarios) -> dict[str, Any]:
    return Million(scenarios).run()


# --- what the run prints, and its targets -----------------------------------------------------


def above_peak(*, before: dict[str, Any], first: dict[str, Any], second: dict[str, Any]) -> dict[str, float]:
    """Per tree, own memory after the second million above the most the tree held before the
    million or after the first (MiB; negative: below both)."""
    since_before, since_first = rss_growth(before, second), rss_growth(first, second)
    return {tree: min(since_before[tree]["own_mib"], since_first[tree]["own_mib"]) for tree in second["trees"]}


def describe(document: dict[str, Any]) -> list[str]:
    """The table's block: the limits raised, the runs against the control, RSS per tree."""
    files = document["open_files"]
    web_limits = sorted({limit for limit in files["web_processes"].values() if limit is not None})
    lines = [
        f"14 the seed's million: {document['requests']:,} attempts over {document['connections']:,} connections, "
        f"stock 10, in {document['wall_s']} s; {document['web']}",
        f"   open files: {files['how']} {files['before']} -> {files['after']} (the web processes: {web_limits});"
        f" net.core.somaxconn {document['backlog'].get('somaxconn')}: {document['backlog']['how']}",
    ]
    for name, ratio in document["vs_control"].items():
        lines.append(
            f"   {name}: {ratio['rps']:.2f}x the control's req/s @{document['connections']:,}; "
            f"p50 {ratio['p50']:.2f}x, p99 {ratio['p99']:.2f}x, max {ratio['max']:.2f}x the control's"
        )
    labels = [snapshot["label"] for snapshot in document["rss"]]
    lines.append("   RSS MiB (VmRSS of every process of each tree, processes): " + " | ".join(labels))
    for tree in document["rss"][0]["trees"]:
        cells = []
        for snapshot in document["rss"]:
            entry = snapshot["trees"].get(tree, {"rss_mib": 0.0, "processes": []})
            cells.append(f"{entry['rss_mib']:>8,.1f} ({len(entry['processes'])})")
        growth = document["growth"]
        grown = [growth[run][tree] for run in ("million", "million_again")]
        lines.append(
            f"     {tree:<10} "
            + " ".join(cells)
            + f"   grown {grown[0]['rss_mib']:+.1f} then {grown[1]['rss_mib']:+.1f}; own memory"
            f" {grown[0]['own_mib']:+.1f} then {grown[1]['own_mib']:+.1f}, after the second"
            f" {growth['above_peak'][tree]:+.1f} from the peak"
        )
    if document["not_running"]:
        lines.append(f"     not running during the runs: {', '.join(document['not_running'])}")
    totals = " ".join(f"{snapshot['total_rss_mib']:>12,.1f}" for snapshot in document["rss"])
    lines.append(f"     {'total':<10} {totals}")
    return lines


def targets(document: dict[str, Any] | None, runs: list[RunResult]) -> list[TargetCheck]:
    size = QUICK if document and document["requests"] == QUICK.requests else FULL
    name = (
        f"the seed's million: {size.requests:,} attempts over {size.connections:,} connections at a 10-unit sale, "
        "every one answered, exactly 10 winners, I1-I4 (twice)"
    )
    memory_name = (
        f"the million's memory: after a second million no process tree holds more than {MEMORY_FLOOR_MIB:g} MiB "
        "above its peak before it (own memory: VmRSS less shared)"
    )
    by_name = {run.scenario: run for run in runs}
    if document is None or "million" not in by_name:
        return [TargetCheck(name, "not measured", None), TargetCheck(memory_name, "not measured", None)]
    control = by_name["million_control"]
    parts, held = [], True
    for scenario in ("million", "million_again"):
        run = by_name[scenario]
        ratio = document["vs_control"][scenario]
        latency = run.latency_ms
        parts.append(
            f"{scenario}: {run.checks.get('answered', 0):,} answered, errors {run.errors}, winners "
            f"{run.checks.get('winners')}, invariants {'hold' if run.checks_hold else 'BROKEN'}; "
            f"{run.rps:,.0f} req/s ({ratio['rps']:.2f}x the control's {control.rps:,.0f}); p50/p99/max "
            f"{latency['p50']:,.0f}/{latency['p99']:,.0f}/{latency['max']:,.0f} ms "
            f"({ratio['p50']:.2f}x/{ratio['p99']:.2f}x/{ratio['max']:.2f}x the control's)"
        )
        held = held and run.checks_hold and run.errors == 0
    growth = document["growth"]
    memory = ", ".join(
        f"{tree} {growth['million'][tree]['own_mib']:+.1f} then {growth['million_again'][tree]['own_mib']:+.1f}"
        f" ({peak:+.1f} from the peak)"
        for tree, peak in growth["above_peak"].items()
    )
    met = all(peak <= MEMORY_FLOOR_MIB for peak in growth["above_peak"].values())
    return [TargetCheck(name, "; ".join(parts), held), TargetCheck(memory_name, f"MiB: {memory}", met)]
