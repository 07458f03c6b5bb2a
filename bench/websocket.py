"""Scenario 9: how many storefront WebSockets one ws process holds, and how fast every one of
them hears ``sale_started`` (issue 16).

Sockets are opened in steps (1,000, 5,000, 10,000, 15,000, then as many as the ws process's
open-file limit allows), from several client processes (``bench/wscrowd.py``) so the client
is not the bottleneck, to one sale. At each step, once every socket has its ``hello``, the
operator moves the sale's start to a few seconds from now (``sale_update``, as the admin
does), and each client stamps the arrival of ``sale_started``. Per step: sockets held, the
ws process's memory per socket (its RSS growth since before the first socket, divided by the
sockets), its CPU time over the round, and when the first, median and last socket heard the
start (arrival minus the start instant: this machine's clock, which is Redis's too).

``python -m bench.websocket --servers uvicorn-websockets,granian,...`` runs the same steps
against each ASGI server (the comparison in docs/websockets.md) on a stack of its own.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from .plan import BenchPlan
from .stack import WS_SERVER, BenchStack, Child, StackError
from .wscrowd import CrowdProcess, crowd_started

SOCKETS_PER_CLIENT_PROCESS = 5000
LEAD_S = 3.0
ROUND_TIMEOUT_S = 20.0
OPEN_TIMEOUT_S = 300.0
# The targets of issue 16.
TARGET_SOCKETS = 15_000
TARGET_LAST_MS = 1000.0
TARGET_P50_MS = 300.0
TARGET_BYTES_PER_SOCKET = 20_000
FULL_STEPS = (1000, 5000, 10_000, 15_000)
# Every client is 127.0.0.x, so no per-address cap; INFO for the line of each start.
WS_BENCH_ENV = {"WS_MAX_CONNECTIONS_PER_IP": "0", "LOG_LEVEL": "INFO"}
QUICK_STEPS = (100, 300)


@dataclass
class StepResult:
    sockets_asked: int
    sockets_held: int
    open_s: float
    rss_mib: float
    bytes_per_socket: int
    heard: int
    first_ms: float | None
    p50_ms: float | None
    p99_ms: float | None
    last_ms: float | None
    ws_cpu_s_round: float
    server_late_ms: float | None = None
    server_write_ms: float | None = None
    failures: dict[str, int] = field(default_factory=dict)
    closed_by_server: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        timing = (
            f"first {self.first_ms:.0f} / p50 {self.p50_ms:.0f} / last {self.last_ms:.0f} ms"
            if self.last_ms is not None
            else "no sale_started heard"
        )
        extra = (
            f"; the server wrote it {self.server_late_ms:.0f} ms after the start, in {self.server_write_ms:.0f} ms"
            if self.server_write_ms is not None
            else ""
        )
        extra += f"; failures {self.failures}" if self.failures else ""
        extra += f"; closed by the server {self.closed_by_server}" if self.closed_by_server else ""
        return (
            f"{self.sockets_held:>6,} of {self.sockets_asked:>6,} held, {self.bytes_per_socket / 1000:5.1f} KB/socket "
            f"(RSS {self.rss_mib:.0f} MiB), sale_started heard by {self.heard:,}: {timing}, "
            f"ws CPU {self.ws_cpu_s_round:.2f} s over the round{extra}"
        )


def _percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _children(pid: int) -> list[int]:
    found = [pid]
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid:
            found.extend(_children(int(entry)))
    return found


def tree_rss_bytes(pid: int) -> int:
    """RSS of ``pid`` and its descendants (granian serves from a child of its main process)."""
    total = 0
    for member in _children(pid):
        try:
            with open(f"/proc/{member}/status", encoding="ascii") as status:
                total += next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            continue
    return total


def tree_cpu_seconds(pid: int) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for member in _children(pid):
        try:
            with open(f"/proc/{member}/stat", encoding="ascii", errors="replace") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        except (OSError, IndexError, ValueError):
            continue
    return total


def open_file_limit(pid: int) -> int:
    """The soft open-file limit the ws process runs with (it raises its own at start)."""
    best = 0
    for member in _children(pid):
        try:
            with open(f"/proc/{member}/limits", encoding="ascii") as limits:
                line = next(line for line in limits if line.startswith("Max open files"))
            best = max(best, int(line.split()[3]))
        except (OSError, StopIteration, ValueError, IndexError):
            continue
    return best


STARTED_LINE = re.compile(r"sale (\d+) started: sale_started written to (\d+) sockets in ([0-9.]+) ms, from (-?\d+) ms")


def server_share(ws: Child, sale_id: int) -> tuple[float, float] | None:
    """How late after the start the ws process began writing ``sale_started``, and how long
    writing it to every socket took (the line ``wsdoor.hub`` logs), from its last start."""
    found = None
    for match in STARTED_LINE.finditer(ws.log.read_text(errors="replace")):
        if int(match[1]) == sale_id:
            found = (float(match[4]), float(match[3]))
    return found


def _move_start(sale: Any, *, seconds_from_now: float) -> float:
    from django.utils import timezone

    from sales.services import sale_update

    duration = sale.ends_at - sale.starts_at
    sale.starts_at = timezone.now() + timedelta(seconds=seconds_from_now)
    sale.ends_at = sale.starts_at + duration
    sale_update(sale=sale)
    # The instant Redis holds (whole milliseconds), by which purchase.lua and the ws process judge.
    return int(sale.starts_at.timestamp() * 1000) / 1000


def _spread(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]


def steps_run(
    *, ws: Child, steps: Sequence[int], log: Callable[[str], None], processes: int | None = None
) -> list[StepResult]:
    """Open sockets to a new sale on ``ws`` in ``steps``; at each, time one start."""
    from . import data

    sale = data.sale_open(stock=10, pow_difficulty=0, starts_in_s=3600)
    host, path = "127.0.0.1", f"/ws/sales/{sale.pk}/"
    origin = f"http://127.0.0.1:{ws.port}"
    count = processes or max(2, math.ceil(max(steps) / SOCKETS_PER_CLIENT_PROCESS))
    crowds: list[CrowdProcess] = crowd_started(count)
    results: list[StepResult] = []
    try:
        rss_before = tree_rss_bytes(ws.pid)
        held = 0
        for step in steps:
            began = time.perf_counter()
            for crowd, share in zip(crowds, _spread(step - held, count), strict=True):
                crowd.ask("open", host=host, port=ws.port, path=path, origin=origin, count=share)
            opened = [crowd.answer(OPEN_TIMEOUT_S) for crowd in crowds]
            open_s = time.perf_counter() - began
            held = sum(reply["held"] for reply in opened)
            for crowd in crowds:
                crowd.ask("arm")
                crowd.answer(30.0)
            cpu_before = tree_cpu_seconds(ws.pid)
            starts_at = _move_start(sale, seconds_from_now=LEAD_S)
            deadline = starts_at + ROUND_TIMEOUT_S
            for crowd in crowds:
                crowd.ask("collect", deadline=deadline)
            replies = [crowd.answer(ROUND_TIMEOUT_S + 60.0) for crowd in crowds]
            cpu_round = tree_cpu_seconds(ws.pid) - cpu_before
            written = server_share(ws, sale.pk)
            rss = tree_rss_bytes(ws.pid)
            held = sum(reply["held"] for reply in replies)
            delays = [(arrival - starts_at) * 1000 for reply in replies for arrival in reply["arrivals"]]
            failures: dict[str, int] = {}
            closed: dict[str, int] = {}
            for reply in replies:
                for reason, times in reply["failures"].items():
                    failures[reason] = failures.get(reason, 0) + times
                for code, times in reply["closed_by_server"].items():
                    closed[str(code)] = closed.get(str(code), 0) + times
            result = StepResult(
                sockets_asked=step,
                sockets_held=held,
                open_s=round(open_s, 2),
                rss_mib=round(rss / 2**20, 1),
                bytes_per_socket=round((rss - rss_before) / held) if held else 0,
                heard=len(delays),
                first_ms=round(min(delays), 1) if delays else None,
                p50_ms=round(_percentile(delays, 0.5), 1) if delays else None,
                p99_ms=round(_percentile(delays, 0.99), 1) if delays else None,
                last_ms=round(max(delays), 1) if delays else None,
                ws_cpu_s_round=round(cpu_round, 2),
                server_late_ms=written[0] if written else None,
                server_write_ms=written[1] if written else None,
                failures=failures,
                closed_by_server=closed,
            )
            results.append(result)
            log(f"  {result.line()}")
            if held < step * 0.9:
                log(f"  stopping: the ws process held {held:,} of {step:,} sockets")
                break
    finally:
        for crowd in crowds:
            crowd.stop()
    return results


def steps_planned(*, quick: bool, limit: int, capacity: int) -> list[int]:
    """The steps for a ws process that allows ``capacity`` sockets (its open-file limit
    less what it keeps for itself), the last one ``capacity`` itself."""
    if quick:
        return [step for step in QUICK_STEPS if step <= capacity]
    steps = [step for step in FULL_STEPS if step <= capacity]
    if capacity > steps[-1]:
        steps.append(capacity)
    return steps


def _capacity(limit: int) -> int:
    from wsdoor.hub import sockets_allowed

    return sockets_allowed(limit)


def targets(websocket: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Issue 16's targets, judged on the step of 15,000 sockets."""
    names = (
        f"ws (issue 16): {TARGET_SOCKETS:,} sockets held by one ws process",
        f"ws (issue 16): every socket hears sale_started within {TARGET_LAST_MS:.0f} ms of the start, p50 under "
        f"{TARGET_P50_MS:.0f} ms, @{TARGET_SOCKETS:,}",
        f"ws (issue 16): at most {TARGET_BYTES_PER_SOCKET // 1000} KB of ws-process memory per socket "
        f"@{TARGET_SOCKETS:,}",
    )
    steps = [step for step in (websocket or {}).get("steps", []) if step["sockets_asked"] >= TARGET_SOCKETS]
    if not steps:
        return [{"target": name, "measured": "not measured", "met": None} for name in names]
    step = steps[0]
    held = step["sockets_held"]
    heard_all = step["heard"] == held and held > 0
    return [
        {"target": names[0], "measured": f"{held:,} held of {step['sockets_asked']:,}", "met": held >= TARGET_SOCKETS},
        {
            "target": names[1],
            "measured": f"heard by {step['heard']:,} of {held:,}; p50 {step['p50_ms']} ms, last {step['last_ms']} ms",
            "met": heard_all
            and step["last_ms"] is not None
            and step["last_ms"] < TARGET_LAST_MS
            and step["p50_ms"] < TARGET_P50_MS,
        },
        {
            "target": names[2],
            "measured": f"{step['bytes_per_socket'] / 1000:.1f} KB per socket",
            "met": step["bytes_per_socket"] <= TARGET_BYTES_PER_SOCKET,
        },
    ]


def websocket_scenario(*, stack: BenchStack, plan: BenchPlan, log: Callable[[str], None]) -> dict[str, Any]:
    try:
        ws = stack.start_ws(env=WS_BENCH_ENV)
    except StackError as error:
        log(f"  not measured: the ws process did not start: {error}")
        return {"measured": False, "summary": "not measured: the ws process did not start", "steps": []}
    limit = open_file_limit(ws.pid)
    capacity = _capacity(limit)
    steps = steps_planned(quick=plan.quick, limit=limit, capacity=capacity)
    log(f"  {WS_SERVER}: open-file limit {limit:,}, room for {capacity:,} sockets; steps {steps}")
    results = steps_run(ws=ws, steps=steps, log=log)
    ws.stop()
    top = results[-1] if results else None
    summary = (
        f"up to {top.sockets_held:,} sockets held by one ws process ({WS_SERVER}; open-file limit {limit:,}, "
        f"room for {capacity:,}); per step:"
        if top
        else "no step ran"
    )
    return {
        "measured": True,
        "server": WS_SERVER,
        "open_file_limit": limit,
        "capacity": capacity,
        "steps": [asdict(result) for result in results],
        "summary": summary,
    }


def compare(servers: Sequence[str], steps: Sequence[int], log: Callable[[str], None]) -> dict[str, Any]:
    """The same steps against each ASGI server, each on a fresh ws process of one stack:
    per server, one list of step results per pass."""
    import django
    from django.core.management import call_command

    stack = BenchStack()
    table: dict[str, Any] = {"load_average_at_start": list(os.getloadavg())}
    try:
        os.environ.update(stack.start_servers())
        django.setup()
        call_command("migrate", "--noinput", verbosity=0)
        for server in servers:
            log(f"{server}:")
            try:
                ws = stack.start_ws(server, env=WS_BENCH_ENV)
            except StackError as error:
                log(f"  did not start: {error}")
                continue
            try:
                table.setdefault(server, []).append(
                    [asdict(result) for result in steps_run(ws=ws, steps=steps, log=log)]
                )
            finally:
                ws.stop()
    finally:
        stack.stop()
    table["load_average_at_end"] = list(os.getloadavg())
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.websocket", description="scenario 9 against ASGI servers")
    parser.add_argument("--servers", default=WS_SERVER, help="comma-separated, e.g. uvicorn-websockets,granian")
    parser.add_argument("--steps", default="1000,5000,10000", help="sockets per step, e.g. 1000,5000,10000")
    parser.add_argument("--passes", type=int, default=1, help="run every server this many times, in turn")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    began = time.monotonic()

    def say(message: str) -> None:
        print(f"[ws {time.monotonic() - began:6.1f}s] {message}", flush=True)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    servers = args.servers.split(",") * args.passes
    result = compare(servers, [int(step) for step in args.steps.split(",")], say)
    say(f"load average at start {result['load_average_at_start']}, at end {result['load_average_at_end']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
