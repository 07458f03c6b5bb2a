"""The load generator: wrk (C, epoll) driving ``wrk/requests.lua``, and what it measured.

wrk sends each line of a request file once (distinct users, single-use challenges) and stops
when every line was sent and answered, or the duration ran out (the lines still in flight
are then reported as ``unanswered`` errors). Its CPU time is read from the
kernel (``wait4``) so the report can say how much of the machine the load itself took.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

WRK_SCRIPT = Path(__file__).resolve().parent / "wrk" / "requests.lua"
_MARKER = "BENCH_JSON "
_EXHAUSTED = "BENCH_EXHAUSTED\n"


class LoadGeneratorError(RuntimeError):
    pass


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise LoadGeneratorError("wrk is not installed (Debian: apt-get install wrk).")
    return found


def wrk_version() -> str:
    result = subprocess.run([wrk_binary(), "-v"], capture_output=True, text=True, check=False)
    first = (result.stdout or result.stderr).splitlines()
    return first[0].split(" [")[0] if first else "wrk"


class RunTotals:
    """What every load run reports from its counts: wrk's closed loop, the paced open loop and
    the TCP door's runs (``bench/tcp.py``)."""

    connections: int
    latency_ms: dict[str, float]
    lines_exhausted: bool
    requests: int
    duration_s: float
    statuses: dict[int, int] | dict[str, int]
    socket_errors: dict[str, int]
    loadgen_cpu_s: float
    wall_s: float

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def loadgen_cpu_share(self) -> float:
        """The load generator's CPU time over wall time: 1.0 is one core busy the whole run."""
        return self.loadgen_cpu_s / self.wall_s if self.wall_s else 0.0

    def unexpected(self, expected: set[int] | set[str]) -> int:
        """Answers outside ``expected`` plus socket errors and timeouts: the run's errors.
        Statuses are HTTP codes, or the TCP door's answer statuses (``bench/tcp.py``)."""
        return sum(count for status, count in self.statuses.items() if status not in expected) + sum(
            self.socket_errors.values()
        )


@dataclass
class LoadResult(RunTotals):
    """One wrk run. Latencies in milliseconds; ``statuses`` counts answers per HTTP status."""

    connections: int
    requests: int
    duration_s: float
    latency_ms: dict[str, float]
    statuses: dict[int, int]
    socket_errors: dict[str, int]
    lines_exhausted: bool
    loadgen_cpu_s: float
    wall_s: float
    in_flight_at_end: int = 0
    raw: dict[str, object] = field(default_factory=dict, repr=False)


def wrk_run(
    *,
    base_url: str,
    path: str,
    connections: int,
    duration_s: int,
    method: str = "POST",
    lines: Path | None = None,
    threads: int = 1,
    count_statuses: bool = True,
    timeout_s: int = 10,
) -> LoadResult:
    """Run wrk once against ``base_url + path``; bounded by ``duration_s`` and the lines file."""
    threads = max(1, min(threads, connections))
    command = [
        wrk_binary(),
        "-t", str(threads),
        "-c", str(connections),
        "-d", f"{duration_s}s",
        "--timeout", f"{timeout_s}s",
        "-s", str(WRK_SCRIPT),
        base_url + path,
        "--", method, path, str(lines) if lines is not None else "-", "1" if count_statuses else "0", str(threads),
    ]  # fmt: skip
    run = measured_run(
        command,
        timeout=duration_s + timeout_s + 60,
        interrupt_when=lambda output: output.count(_EXHAUSTED) >= threads,
    )
    if run.returncode != 0:
        raise LoadGeneratorError(f"wrk exited with {run.returncode}: {run.stderr[-2000:]}")
    summary = next((line[len(_MARKER) :] for line in run.stdout.splitlines() if line.startswith(_MARKER)), None)
    if summary is None:
        raise LoadGeneratorError(f"wrk printed no summary:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
    raw = json.loads(summary)
    latency = raw["latency_us"]
    percentiles = {float(key): value for key, value in latency["percentiles"].items()}
    errors = dict(raw["errors"])
    errors.pop("status")  # Non-2xx answers: counted per status instead.
    in_flight = max(0, int(raw["lines_sent"]) - int(raw["lines_answered"])) if lines is not None else 0
    if lines is not None and int(raw["lines_sent"]) == int(raw["lines_total"]):
        # Every line was sent, so every one must be answered: one that was not (the run's
        # time ran out, a timeout) is an error, and "zero errors" means all were answered.
        # A run that ended by its duration with lines left leaves its last requests in
        # flight by design (closed loop): reported, not an error.
        errors["unanswered"] = in_flight
    return LoadResult(
        connections=connections,
        requests=int(raw["requests"]),
        duration_s=raw["duration_us"] / 1e6,
        latency_ms={
            "p50": percentiles[50.0] / 1000,
            "p90": percentiles[90.0] / 1000,
            "p95": percentiles[95.0] / 1000,
            "p99": percentiles[99.0] / 1000,
            "p99.9": percentiles[99.9] / 1000,
            "max": latency["max"] / 1000,
            "mean": latency["mean"] / 1000,
        },
        statuses={int(key): int(value) for key, value in raw["statuses"].items()},
        socket_errors={key: int(value) for key, value in errors.items()},
        lines_exhausted=bool(raw["threads_exhausted"]),
        in_flight_at_end=in_flight,
        loadgen_cpu_s=run.cpu_s,
        wall_s=run.wall_s,
        raw=raw,
    )


@dataclass
class MeasuredRun:
    stdout: str
    stderr: str
    returncode: int
    cpu_s: float
    wall_s: float


def measured_run(
    command: list[str], *, timeout: float, interrupt_when: Callable[[str], bool] | None = None
) -> MeasuredRun:
    """Run a command to the end and reap it with ``wait4``, which (unlike ``Popen.wait``)
    returns the child's CPU time. ``interrupt_when`` sees the output so far and may ask for
    a SIGINT (wrk's way to end a run early and still print its summary)."""
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    chunks: dict[int, list[bytes]] = {process.stdout.fileno(): [], process.stderr.fileno(): []}
    deadline = started + timeout
    interrupted = False
    with selectors.DefaultSelector() as selector:
        for stream in (process.stdout, process.stderr):
            selector.register(stream, selectors.EVENT_READ)
        while selector.get_map():
            if time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise LoadGeneratorError(f"{Path(command[0]).name} did not finish in {timeout:.0f} s")
            for key, _ in selector.select(timeout=1.0):
                data = os.read(key.fd, 65536)
                if data:
                    chunks[key.fd].append(data)
                else:
                    selector.unregister(key.fileobj)
            if interrupt_when is not None and not interrupted:
                so_far = b"".join(chunks[process.stdout.fileno()]).decode(errors="replace")
                if interrupt_when(so_far):
                    # os.kill, not Popen.send_signal: that polls first, and a child that
                    # just ended by itself would be reaped there, leaving wait4 below
                    # nothing to wait for (ECHILD). Unreaped, the pid cannot be reused.
                    os.kill(process.pid, signal.SIGINT)
                    interrupted = True
    _, wait_status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(wait_status)
    stdout = b"".join(chunks[process.stdout.fileno()]).decode(errors="replace")
    stderr = b"".join(chunks[process.stderr.fileno()]).decode(errors="replace")
    process.stdout.close()
    process.stderr.close()
    return MeasuredRun(
        stdout=stdout,
        stderr=stderr,
        returncode=process.returncode,
        cpu_s=usage.ru_utime + usage.ru_stime,
        wall_s=time.monotonic() - started,
    )
