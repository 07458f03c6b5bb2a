# ruff: noqa: PLC0415 - Django's models and settings exist only once the servers started
"""What the transparency log costs (issue 23, point 6), measured in one run on one stack.

- **A win, the log on and off.** Two web processes of the run's shape are started for it,
  one with the log on (the shipped default, ``FLASHSALE_LOG_ENABLED=true``), one with it off,
  both warmed alike. Scenario 2's winning run goes to each at 100 connections in the order
  on, off, off, on, on, off (``--quick``: on, off), and the sides are compared by their
  medians: the time a win takes at saturation is 1 / throughput, so the log's share of it is
  off / on req/s.
- **Local answers, the log on and off.** A sold-out answer (the process's marker) and a
  rate-limited one (its leased share of the bucket; not in ``--quick``), each against both
  web processes: the Redis commands the server ran during the timed run (``INFO``
  ``total_commands_processed``, every client: the web processes, the worker and the broker;
  a script's own commands count too), and the entries the sale's log sequenced. Those
  commands are the stack's own, a few a second whatever the answers, so what the log adds
  to an answer is the difference of the on and off rates (commands a second) over the
  answers a second.
- **The seed's stampede with the log on and its builder running.** Every pending log is
  built first (in this process, as the builder task would: how many entries a second one
  builder process moves, and the bytes each takes in PostgreSQL), then this process sends
  ``salelog.tasks.build_sale_logs`` to the run's worker every
  ``FLASHSALE_LOG_INTERVAL_SECONDS`` with an expiry of one tick, as beat does, while scenario
  8's stampede runs (row ``log_seed``). The checkpoint lag of each entry is the time from
  the Redis clock its script judged it by (its ``time_ms``) to the signing of the first
  checkpoint that covers it (``Checkpoint.signed_at``, the same machine's clock).
- **Size.** Bytes per entry in Redis (``MEMORY USAGE ... SAMPLES 0`` of the stream the log-on
  win runs filled, before any builder ran, over its length) and in PostgreSQL (what the
  entries, nodes and checkpoints tables and their indexes grew by while the pending logs were
  built, over the entries built).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import redis

from devstack.children import Child

from . import data, paired
from .scenarios import CYCLED_SHOPPERS, HUGE_STOCK, RunResult, Scenarios, redis_commands

LEVEL = 100
WIN_TIME_LIMIT = 1.10
"""A win's time with the log on, at most this many times its time with the log off."""
EXTRA_COMMANDS_LIMIT = 0.01
"""Redis commands the log adds per local answer (the on and off rates' difference over the
answers a second): under one in a hundred answers."""
LAG_LIMIT_MS = 2000.0
COVERAGE_TIMEOUT_S = 60.0
LOCAL_PATHS = ("sold_out", "rate_limited")
QUICK_LOCAL_PATHS = ("sold_out",)
QUICK_CYCLED_SHOPPERS = 1000
"""``--quick`` keeps its added time short: one local path, fewer shoppers cycled."""


class LogCost:
    """Issue 23's cost measurements; the runs are recorded with the others (same meter,
    table and results), the rest is returned for ``document["log_cost"]``."""

    def __init__(self, scenarios: Scenarios) -> None:
        self.s = scenarios
        plan = scenarios.plan
        self.level = LEVEL if LEVEL in plan.connections else plan.connections[-1]
        # Three rounds (A B B A A B): on this shared 2-core machine one side's runs have spread
        # 30% apart within a run (off: 679 and 982 req/s), against a cost of a few percent.
        self.rounds = 1 if plan.quick else 3
        self.local_paths = QUICK_LOCAL_PATHS if plan.quick else LOCAL_PATHS
        self.cycled = QUICK_CYCLED_SHOPPERS if plan.quick else CYCLED_SHOPPERS

    def run(self) -> dict[str, Any]:
        s = self.s
        s.log(f"  two web processes of the run's shape, the log on and off (FLASHSALE_LOG_ENABLED) @{self.level}")
        webs = paired.webs_start(
            s.stack, {f"log-{side}": {"FLASHSALE_LOG_ENABLED": str(side == "on").lower()} for side in ("on", "off")}
        )
        webs = {name.removeprefix("log-"): web for name, web in webs.items()}
        try:
            for web in webs.values():
                # Every worker of the new process loaded and answering before it is measured.
                s._wrk(path="/bench/control/", connections=self.level, duration_s=s.plan.warmup_s, base_url=web.url)
            wins = self._wins(webs)
            local = {path: self._local(path, webs) for path in self.local_paths}
        finally:
            for web in webs.values():
                web.stop()
        size = self._redis_size([run.checks["sale_id"] for run in wins["on"]])
        built = self._catch_up()
        seed = self._seed()
        return {
            "connections": self.level,
            "order": list(paired.abba("on", "off", rounds=self.rounds)),
            "win": self._win_summary(wins),
            "local": local,
            "size": {**size, **built.pop("size")},
            "catch_up": built,
            "seed": seed,
        }

    # --- a win, on and off ------------------------------------------------------------------

    def _wins(self, webs: dict[str, Child]) -> dict[str, list[RunResult]]:
        s = self.s
        wins: dict[str, list[RunResult]] = {"on": [], "off": []}
        for side in paired.abba("on", "off", rounds=self.rounds):
            run = paired.win(
                s,
                scenario=f"log_win_{side}",
                connections=self.level,
                web=webs[side],
                notes=[f"the transparency log {side} (FLASHSALE_LOG_ENABLED), issue 23"],
            )
            # Read once the invariants saw the drain end: the server finishes requests wrk
            # stopped waiting for, after the load.
            run.checks.update(_log_length(run.checks["sale_id"]))
            wins[side].append(run)
        return wins

    @staticmethod
    def _win_summary(wins: dict[str, list[RunResult]]) -> dict[str, Any]:
        sides: dict[str, dict[str, Any]] = {
            side: {
                "rps": [run.rps for run in runs],
                "p50_ms": [run.latency_ms["p50"] for run in runs],
                "p99_ms": [run.latency_ms["p99"] for run in runs],
                "median_rps": round(paired.median(run.rps for run in runs), 1),
                "median_p50_ms": round(paired.median(run.latency_ms["p50"] for run in runs), 2),
                "median_p99_ms": round(paired.median(run.latency_ms["p99"] for run in runs), 2),
                "log_entries": [run.checks["log_entries"] for run in runs],
                "spread": round(paired.spread([run.rps for run in runs]), 3),
                "web_ms_per_win": [paired.cpu_ms_per_answer(run) for run in runs],
                "redis_ms_per_win": [paired.cpu_ms_per_answer(run, "redis") for run in runs],
                "median_web_ms_per_win": round(paired.median(paired.cpu_ms_per_answer(run) for run in runs), 4),
                "median_redis_ms_per_win": round(
                    paired.median(paired.cpu_ms_per_answer(run, "redis") for run in runs), 4
                ),
            }
            for side, runs in wins.items()
        }
        on, off = sides["on"]["median_rps"], sides["off"]["median_rps"]
        web_on, web_off = sides["on"]["median_web_ms_per_win"], sides["off"]["median_web_ms_per_win"]
        both_on = web_on + sides["on"]["median_redis_ms_per_win"]
        both_off = web_off + sides["off"]["median_redis_ms_per_win"]
        return {
            **sides,
            "rps_ratio": round(on / off, 3) if off else None,
            "time_ratio": round(off / on, 3) if on else None,
            "web_cpu_ratio": round(web_on / web_off, 3) if web_off else None,
            "web_redis_cpu_ratio": round(both_on / both_off, 3) if both_off else None,
            "p50_ratio": round(sides["on"]["median_p50_ms"] / sides["off"]["median_p50_ms"], 3)
            if sides["off"]["median_p50_ms"]
            else None,
        }

    # --- local answers, on and off ----------------------------------------------------------

    def _local(self, path: str, webs: dict[str, Child]) -> dict[str, Any]:
        sides = {}
        for side in ("on", "off"):
            run = self._local_run(path, side, webs[side])
            sides[side] = {
                "rps": run.rps,
                "answers": sum(run.statuses.values()),
                "seconds": run.duration_s,
                "redis_commands": run.checks["redis_commands"],
                "commands_per_s": round(run.checks["redis_commands"] / run.duration_s, 1),
                "commands_per_answer": run.checks["commands_per_answer"],
                "by_command": run.checks["redis_commands_by_name"],
                "log_entries": run.checks["log_entries"],
            }
        # The commands seen are the stack's own, a few a second whatever the answers (the
        # broker, the counters' flush, the sales' refresh): what the log adds to each answer is
        # the difference of the two rates over the answers a second.
        answers_per_s = (sides["on"]["rps"] + sides["off"]["rps"]) / 2
        extra = (sides["on"]["commands_per_s"] - sides["off"]["commands_per_s"]) / answers_per_s
        return {**sides, "extra_per_answer": round(extra, 5)}

    def _local_run(self, path: str, side: str, web: Child) -> RunResult:
        """Scenario 3 or 4 against one web process, with the Redis commands of the timed run."""
        s = self.s
        if path == "sold_out":
            sale = data.sale_open(stock=1, pow_difficulty=s.plan.difficulty)
            shoppers = s.pool.ensure(self.cycled + 1)
            data.sale_sell_out(sale, shoppers[:1])
            shoppers, expected = shoppers[1:], {409}
        else:
            sale = data.sale_open(
                stock=HUGE_STOCK, pow_difficulty=s.plan.difficulty, bucket_capacity=1, bucket_refill_per_second=1
            )
            shoppers, expected = s.pool.ensure(self.cycled), {429, 201, 409}
        scenario = f"log_{'no' if path == 'sold_out' else 'limited'}_{side}"
        lines = s._cycled_file(scenario, sale, shoppers, s._lines_for_cycles(self.level))
        url = f"/api/sales/{sale.pk}/purchase/"
        base_url = web.url
        shared_web, s.meter.roots["web"] = s.meter.roots["web"], web.pid
        try:
            # The warm-up: every process hears "sold out" (or leases its share) once.
            warmup, _ = s._wrk(
                path=url, connections=self.level, duration_s=s.plan.warmup_s, lines=lines, base_url=base_url
            )
            before, by_name_before = redis_commands(s.stack), _command_calls(s)
            result, cores = s._wrk(
                path=url, connections=self.level, duration_s=s.plan.duration_s, lines=lines, base_url=base_url
            )
            after, by_name_after = redis_commands(s.stack), _command_calls(s)
        finally:
            s.meter.roots["web"] = shared_web
        # The two INFO calls that read the counters are in the difference: not the server's.
        commands = after - before - 2
        answers = sum(result.statuses.values())
        by_name = {
            name: calls - by_name_before.get(name, 0)
            for name, calls in sorted(by_name_after.items())
            if calls - by_name_before.get(name, 0) and name != "info"
        }
        wins = result.statuses.get(201, 0) + warmup.statuses.get(201, 0)
        checks = {
            **s._checks(sale.pk, wins),
            **_log_length(sale.pk),
            "redis_commands": commands,
            "commands_per_answer": round(commands / answers, 5) if answers else None,
            "redis_commands_by_name": by_name,
        }
        return s._record(
            scenario,
            result,
            cores,
            expected=expected,
            checks=checks,
            notes=[f"{path.replace('_', '-')} with the transparency log {side}; Redis commands counted, issue 23"],
        )

    # --- size -------------------------------------------------------------------------------

    @staticmethod
    def _redis_size(sale_ids: list[int]) -> dict[str, Any]:
        from core.redis_store import inventory_redis
        from sales import keys

        client = inventory_redis()
        entries = used = 0
        for sale_id in sale_ids:
            stream = keys.log_stream_key(sale_id)
            entries += int(client.xlen(stream))
            used += int(client.memory_usage(stream, samples=0) or 0)
            used += int(client.memory_usage(keys.log_seq_key(sale_id), samples=0) or 0)
        return {
            "redis_entries": entries,
            "redis_bytes": used,
            "redis_bytes_per_entry": round(used / entries, 1) if entries else None,
        }

    def _catch_up(self) -> dict[str, Any]:
        """Build every pending log in this process, as the builder task does (the same
        function), until nothing is left: the logs start the stampede caught up, as they would
        with beat running all along. Returns what it built, how fast, and the bytes it took."""
        from django.db.models import Sum
        from django.db.models.functions import Length

        from salelog.models import LogEntry
        from salelog.tasks import build_sale_logs

        size_before = _postgres_bytes()
        began = time.monotonic()
        appended = passes = 0
        while True:
            summary = build_sale_logs()
            passes += 1
            appended += sum(summary.values())
            if not summary:
                break
        seconds = time.monotonic() - began
        grown = _postgres_bytes() - size_before
        entry_bytes = LogEntry.objects.aggregate(total=Sum(Length("entry")))["total"] or 0
        stored = LogEntry.objects.count()
        self.s.log(f"  built the pending logs: {appended:,} entries in {seconds:.1f} s ({passes} passes)")
        return {
            "entries": appended,
            "seconds": round(seconds, 2),
            "entries_per_s": round(appended / seconds) if seconds else None,
            "size": {
                "postgres_entries": appended,
                "postgres_bytes": grown,
                "postgres_bytes_per_entry": round(grown / appended, 1) if appended else None,
                "entry_json_bytes_mean": round(entry_bytes / stored, 1) if stored else None,
            },
        }

    # --- the seed's stampede with the builder running ---------------------------------------

    def _seed(self) -> dict[str, Any]:
        from django.conf import settings

        s = self.s
        interval = float(settings.FLASHSALE_LOG_INTERVAL_SECONDS)
        ticker = _BuilderTicker(interval)
        ticker.start()
        try:
            run = s.seed(
                scenario="log_seed",
                note=f"the transparency log on (the default); build_sale_logs sent every {interval:g} s as beat does",
            )
            sale_id = int(run.checks["sale_id"])
            covered = _wait_covered(sale_id, timeout_s=COVERAGE_TIMEOUT_S)
        finally:
            ticker.stop()
        lag = checkpoint_lag(sale_id)
        # How many ticks went out between the first entry and the first checkpoint over it: one
        # or two when the worker built on the next tick, more when ticks expired unbuilt.
        first_entry, first_checkpoint = lag.pop("first_entry_ms"), lag.pop("first_checkpoint_ms")
        lag["ticks_before_first_checkpoint"] = (
            sum(first_entry <= at <= first_checkpoint for at in ticker.sent_at_ms)
            if first_entry is not None and first_checkpoint is not None
            else None
        )
        answered = sum(run.statuses.values())
        total = s.plan.seed_users * s.plan.seed_per_user
        s.log(
            f"  checkpoint lag over {lag['entries']} entries, {lag['checkpoints']} checkpoints: "
            f"p50 {lag['p50_ms']} / p99 {lag['p99_ms']} / max {lag['max_ms']} ms"
        )
        return {
            "sale_id": sale_id,
            "answered": answered,
            "requests": total,
            "errors": run.errors,
            "winners": run.checks.get("winners"),
            "holds": run.checks_hold,
            "covered": covered,
            "ticks_sent": ticker.sent,
            "interval_s": interval,
            "stampede_s": run.duration_s,
            "lag": lag,
        }


class _BuilderTicker:
    """Beat's tick of the log builder, from a thread of this process: the task sent to the
    run's worker every ``interval`` seconds with an expiry of one tick (the settings'
    ``CELERY_BEAT_SCHEDULE`` entry ``build-sale-logs``)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.sent = 0
        self.sent_at_ms: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="log-builder-tick", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        from salelog.tasks import build_sale_logs

        while not self._stop.is_set():
            build_sale_logs.apply_async(expires=self.interval)
            self.sent += 1
            self.sent_at_ms.append(time.time() * 1000)
            self._stop.wait(self.interval)


def _log_length(sale_id: int) -> dict[str, object]:
    """Entries the sale's scripts sequenced (its log counter): 0 with the log off."""
    from core.redis_store import inventory_redis
    from sales import keys

    return {"log_entries": int(inventory_redis().get(keys.log_seq_key(sale_id)) or 0)}


def _command_calls(s: Scenarios) -> dict[str, int]:
    """Calls per command so far (``INFO commandstats``), every client."""
    assert s.stack.redis is not None
    client = redis.Redis.from_url(s.stack.redis.url, decode_responses=True)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return {name.removeprefix("cmdstat_"): int(row["calls"]) for name, row in stats.items()}


def _postgres_bytes() -> int:
    """The log's tables in PostgreSQL with their indexes and TOAST."""
    from django.db import connection

    from salelog.models import Checkpoint, LogEntry, LogNode

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT " + " + ".join("pg_total_relation_size(%s)" for _ in range(3)),
            [model._meta.db_table for model in (LogEntry, LogNode, Checkpoint)],
        )
        return int(cursor.fetchone()[0])  # type: ignore[index]


def _wait_covered(sale_id: int, *, timeout_s: float) -> bool:
    """Wait until the sale's newest checkpoint covers every entry its scripts sequenced."""
    from salelog.models import SaleLog

    wanted = int(_log_length(sale_id)["log_entries"])  # type: ignore[call-overload]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        size = SaleLog.objects.filter(sale_id=sale_id).values_list("size", flat=True).first() or 0
        if size >= wanted:
            return True
        time.sleep(0.1)
    return False


def checkpoint_lag(sale_id: int) -> dict[str, Any]:
    """Per entry of the sale's log: from its ``time_ms`` (the Redis clock the script judged it
    by) to the signing of the first checkpoint covering it, in milliseconds."""
    from salelog.models import Checkpoint, LogEntry

    checkpoints = [
        (size, signed_at.timestamp() * 1000)
        for size, signed_at in Checkpoint.objects.filter(sale_id=sale_id, size__gt=0)
        .order_by("size")
        .values_list("size", "signed_at")
    ]
    lags: list[float] = []
    uncovered = 0
    index = 0
    first_entry_ms: float | None = None
    for seq, entry in LogEntry.objects.filter(sale_id=sale_id).order_by("seq").values_list("seq", "entry"):
        time_ms = float(json.loads(bytes(entry))["time_ms"])
        first_entry_ms = time_ms if first_entry_ms is None else first_entry_ms
        while index < len(checkpoints) and checkpoints[index][0] <= seq:
            index += 1
        if index == len(checkpoints):
            uncovered += 1
            continue
        lags.append(checkpoints[index][1] - time_ms)
    lags.sort()

    def at(share: float) -> float | None:
        return round(lags[min(len(lags) - 1, int(share * len(lags)))], 1) if lags else None

    return {
        "entries": len(lags) + uncovered,
        "uncovered": uncovered,
        "checkpoints": len(checkpoints),
        "p50_ms": at(0.5),
        "p99_ms": at(0.99),
        "max_ms": round(lags[-1], 1) if lags else None,
        "first_entry_ms": first_entry_ms,
        "first_checkpoint_ms": checkpoints[0][1] if checkpoints else None,
    }


# --- what the table and the targets say -----------------------------------------------------


def describe(cost: dict[str, Any] | None) -> list[str]:
    if not cost:
        return []
    win, size, seed, catch = cost["win"], cost["size"], cost["seed"], cost["catch_up"]
    lines = [
        f"log (issue 23) @{cost['connections']}: a win {win['on']['median_rps']:,.0f} req/s with the log on, "
        f"{win['off']['median_rps']:,.0f} off (medians, order {' '.join(cost['order'])}): time per win "
        f"{win['time_ratio']}x; p50 {win['on']['median_p50_ms']} vs {win['off']['median_p50_ms']} ms, "
        f"p99 {win['on']['median_p99_ms']} vs {win['off']['median_p99_ms']} ms; web CPU per win "
        f"{win['on']['median_web_ms_per_win']} vs {win['off']['median_web_ms_per_win']} ms ({win['web_cpu_ratio']}x), "
        f"Redis {win['on']['median_redis_ms_per_win']} vs {win['off']['median_redis_ms_per_win']} ms"
    ]
    for path, local in cost["local"].items():
        lines.append(
            f"   {path.replace('_', '-')} answers: Redis ran {local['on']['commands_per_s']:,} commands a second with "
            f"the log on ({local['on']['rps']:,.0f} answers a second), {local['off']['commands_per_s']:,} off "
            f"({local['off']['rps']:,.0f}): {local['extra_per_answer']:+} per answer; entries sequenced "
            f"{local['on']['log_entries']} and {local['off']['log_entries']}"
        )
    lines.append(
        f"   size: {size['redis_bytes_per_entry']} bytes per entry in Redis ({size['redis_entries']:,} entries), "
        f"{size['postgres_bytes_per_entry']} in PostgreSQL with the tree and indexes (entry JSON "
        f"{size['entry_json_bytes_mean']} bytes); one builder pass built {catch['entries']:,} entries in "
        f"{catch['seconds']} s"
    )
    lag = seed["lag"]
    lines.append(
        f"   the stampede with the builder ticking: {seed['answered']:,} of {seed['requests']:,} answered; "
        f"checkpoint lag p50 {lag['p50_ms']} / p99 {lag['p99_ms']} / max {lag['max_ms']} ms over "
        f"{lag['entries']:,} entries and {lag['checkpoints']} checkpoints ({lag['ticks_before_first_checkpoint']} "
        f"ticks sent between the first entry and the first checkpoint; the stampede lasted {seed['stampede_s']} s)"
    )
    return lines


def targets(cost: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Issue 23's cost targets (the report's ``TargetCheck`` fields)."""
    names = (
        f"log (issue 23): a win's time with the log on <= {WIN_TIME_LIMIT:.2f}x off @{LEVEL} connections, same run",
        f"log (issue 23): local answers make no more Redis commands with the log on (< {EXTRA_COMMANDS_LIMIT} "
        "per answer more)",
        "log (issue 23): the seed's stampede with the log on (the default) and its builder running answers every "
        "request, exactly the stock in winners, I1-I4",
        f"log (issue 23): checkpoints lag the newest entry by <= {LAG_LIMIT_MS / 1000:g} s under the seed's stampede",
    )
    if not cost:
        return [_check(name, "not measured", None) for name in names]
    win, seed, lag = cost["win"], cost["seed"], cost["seed"]["lag"]
    time_ratio = win["time_ratio"]
    checks = [
        _check(
            names[0],
            f"{time_ratio}x ({win['on']['median_rps']:,.0f} on vs {win['off']['median_rps']:,.0f} off req/s, medians "
            f"of {len(win['on']['rps'])} each, spread {win['on']['spread']:.0%} and {win['off']['spread']:.0%}; p50 "
            f"{win['on']['median_p50_ms']} vs {win['off']['median_p50_ms']} ms; CPU per win {win['web_cpu_ratio']}x "
            f"in web, {win.get('web_redis_cpu_ratio')}x in web and Redis)",
            None if time_ratio is None else time_ratio <= WIN_TIME_LIMIT,
        )
    ]
    extras = {path: local["extra_per_answer"] for path, local in cost["local"].items()}
    checks.append(
        _check(
            names[1],
            "; ".join(
                f"{path.replace('_', '-')} {local['extra_per_answer']:+} per answer ({local['on']['commands_per_s']:,} "
                f"vs {local['off']['commands_per_s']:,} commands/s on and off at {local['on']['rps']:,.0f} and "
                f"{local['off']['rps']:,.0f} answers/s; {local['on']['log_entries']} and "
                f"{local['off']['log_entries']} entries sequenced)"
                for path, local in cost["local"].items()
            ),
            all(extra < EXTRA_COMMANDS_LIMIT for extra in extras.values()),
        )
    )
    checks.append(
        _check(
            names[2],
            f"{seed['answered']:,} of {seed['requests']:,} answered, errors {seed['errors']}, winners "
            f"{seed['winners']}, invariants " + ("hold" if seed["holds"] else "BROKEN"),
            seed["answered"] == seed["requests"] and seed["errors"] == 0 and seed["holds"],
        )
    )
    max_lag = lag["max_ms"]
    checks.append(
        _check(
            names[3],
            f"max {max_lag} ms, p99 {lag['p99_ms']} ms over {lag['entries']:,} entries and {lag['checkpoints']} "
            f"checkpoints ({lag['uncovered']} uncovered after {COVERAGE_TIMEOUT_S:.0f} s)",
            None if max_lag is None else (max_lag <= LAG_LIMIT_MS and lag["uncovered"] == 0),
        )
    )
    return checks


def _check(target: str, measured: str, met: bool | None) -> dict[str, Any]:
    return {"target": target, "measured": measured, "met": met}
