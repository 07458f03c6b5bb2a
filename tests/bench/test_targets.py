"""The benchmark's targets judged from rows (bench/report.py): which rows each target reads,
and the verdict at the boundary. The rows are made here; the run that measures them is
tests/bench/test_bench_run.py."""

from __future__ import annotations

from bench.report import CROWD_RATIO, P99_LIMIT_MS, TCP_P99_MS_AT_1000, cpu_per_answer, targets
from bench.scenarios import RunResult


def _row(scenario: str, connections: int, rps: float, *, load: str = "saturated", p99: float = 1.0) -> RunResult:
    return RunResult(
        scenario=scenario, connections=connections, requests=int(rps), duration_s=1.0, rps=rps,
        latency_ms={"p50": p99 / 2, "p95": p99, "p99": p99, "max": p99}, statuses={"200": int(rps)},
        expected_statuses=[200], errors=0, socket_errors={}, lines_exhausted=False,
        cpu_cores={"web": 1.5, "redis": 0.25, "idle": 0.2}, loadgen_cpu_share=0.1, load=load, offered_rps=rps / 2,
    )  # fmt: skip


def _verdicts(runs: list[RunResult]) -> dict[str, bool | None]:
    return {check.target: check.met for check in targets(runs, [])}


def test_the_crowds_answers_are_judged_at_100_and_at_1000_connections() -> None:
    runs = [_row("control", 100, 1000), _row("control", 1000, 1000), _row("control", 10, 1000)]
    runs += [_row("sold_out", 100, 1000 * CROWD_RATIO), _row("sold_out", 1000, 1000 * CROWD_RATIO - 1)]
    runs += [_row("rate_limited", 100, 2000), _row("rate_limited", 1000, 2000), _row("rate_limited", 10, 1)]

    verdicts = _verdicts(runs)

    assert verdicts[f"sold-out >= {CROWD_RATIO}x control throughput @100 and 1,000 connections"] is False
    assert verdicts[f"rate-limited >= {CROWD_RATIO}x control throughput @100 and 1,000 connections"] is True


def test_http_and_tcp_open_loop_tails_at_1000_are_judged_apart() -> None:
    runs = [
        _row("sold_out", 1000, 1000, load="paced", p99=P99_LIMIT_MS - 1),
        _row("tcp_sold_out", 1000, 1000, load="paced", p99=TCP_P99_MS_AT_1000 + 1),
    ]

    verdicts = _verdicts(runs)

    assert verdicts[f"p99 < {P99_LIMIT_MS:.0f} ms @1,000 connections, every HTTP path, zero errors, open loop"] is True
    tcp = f"TCP p99 < {TCP_P99_MS_AT_1000:g} ms @1,000 connections open loop, every TCP path, zero errors"
    assert verdicts[tcp] is False
    runs[1].latency_ms["p99"] = TCP_P99_MS_AT_1000 - 1
    assert _verdicts(runs)[tcp] is True


def test_the_cpu_an_answer_costs_is_cores_over_throughput_per_process() -> None:
    runs = [_row("winning", 100, 500), _row("control", 100, 5000), _row("winning", 100, 500, load="paced")]

    rows = {row["scenario"]: row for row in cpu_per_answer(runs, cpus=2)}

    assert set(rows) == {"winning", "control"}  # saturated rows only
    expected = {"web": 3000.0, "tcp": 0.0, "redis": 500.0, "postgres": 0.0, "worker": 0.0}
    assert rows["winning"]["us_per_request"] == expected
    assert rows["winning"]["us_total"] == 3500.0 and rows["control"]["us_total"] == 350.0
    assert rows["winning"]["idle_share"] == 0.1
