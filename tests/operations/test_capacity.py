"""``manage.py flashsale capacity``: the capacity model from measured per-node figures
(operations/capacity.py, docs/scale-out.md "Capacity")."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

from django.core.management import call_command

from operations.capacity import DEFAULTS, Demand, Figure, NodeFigures, capacity_plan, figures_from_results

MEASURED = NodeFigures(
    local_answers_per_s=Figure(1000, "answers/s", "test"),
    script_answers_per_s=Figure(100, "answers/s", "test"),
    script_runs_per_s=Figure(10_000, "runs/s", "test"),
    drain_rows_per_s=Figure(100, "rows/s", "test"),
)


def _results(directory: Path, name: str, *, quick: bool = False, sold_out: float = 9000.0) -> Path:
    document = {
        "quick": quick,
        "machine": {"load_average_at_start": [1.5, 1.0, 1.0]},
        "runs": [
            {"scenario": "sold_out", "load": "saturated", "connections": 10, "rps": 100.0},
            {"scenario": "sold_out", "load": "saturated", "connections": 100, "rps": sold_out},
            {"scenario": "sold_out", "load": "paced", "connections": 1000, "rps": 99_999.0},
            {"scenario": "winning", "load": "saturated", "connections": 100, "rps": 2500.0},
        ],
        "redis_ceiling": [{"script": "purchase.lua", "rps": 30_000.0, "method": "redis-benchmark"}],
        "drain": {"rows": 20_000, "seconds": 10.0, "rows_per_s": 2000.0},
    }
    path = directory / name
    path.write_text(json.dumps(document))
    return path


def test_the_plan_settles_web_nodes_with_the_script_calls_the_crowd_lets_through() -> None:
    # 10,000 attempts in a second; each of 2 processes per node lets 2 x 10 units through a second
    plan = capacity_plan(Demand(users=10_000, peak_seconds=1, stock=10, crowd_factor=2, headroom=1.0), MEASURED)

    # 16 nodes: 32 processes let 640 calls/s through; 9,360 local answers at 1,000/s and 640
    # script answers at 100/s are 15.76 nodes' work
    assert plan.web_nodes == 16
    lines = {line.what: line.value for line in plan.lines}
    assert lines["purchase.lua calls reaching Redis (calls/s)"] == 640
    assert lines["answers given in the process (answers/s)"] == 9360
    assert (plan.redis_masters, plan.redis_replicas, plan.workers) == (1, 1, 1)
    assert plan.warnings == []
    for line in plan.lines:
        assert line.assumption


def test_masters_follow_the_sales_and_workers_follow_the_wins_and_the_deadline() -> None:
    demand = Demand(users=1_000_000, peak_seconds=1, stock=10_000, sales=4, drain_seconds=10, headroom=1.0)

    plan = capacity_plan(demand, MEASURED)

    # 4 sales x up to 10,000 x 2 x processes, capped by the 250,000 arrivals each: 1,000,000 calls/s
    lines = {line.what: line.value for line in plan.lines}
    assert lines["purchase.lua calls reaching Redis (calls/s)"] == 1_000_000
    assert plan.redis_masters == 100  # at 10,000 runs/s each
    assert plan.workers == 40  # 40,000 wins in 10 s at 100 rows/s each
    # And one sale alone needs more than a master: said, since masters cannot split a sale
    assert len(plan.warnings) == 1 and "more masters do not help a single sale" in plan.warnings[0]


def test_figures_come_from_the_newest_full_benchmark_else_the_documented_defaults(tmp_path: Path) -> None:
    assert figures_from_results(tmp_path / "none") == DEFAULTS
    _results(tmp_path, "20260101-000000.json", sold_out=7000.0)
    _results(tmp_path, "20260202-000000.json", sold_out=9000.0)
    _results(tmp_path, "20260303-000000.json", quick=True, sold_out=1.0)  # a smoke run: not a capacity

    figures = figures_from_results(tmp_path)

    assert figures.local_answers_per_s.value == 9000.0  # the best saturated run of the newest full bench
    assert figures.script_answers_per_s.value == 2500.0
    assert figures.script_runs_per_s.value == 30_000.0
    assert figures.drain_rows_per_s.value == 2000.0
    assert figures.local_answers_per_s.source == "measured: 20260202-000000.json (load 1.5 at start)"


def test_the_command_prints_the_plan_with_its_assumptions_and_sources(tmp_path: Path) -> None:
    _results(tmp_path, "20260202-000000.json")
    out = StringIO()
    call_command(
        "flashsale", "capacity", "--users", "1000000", "--peak-seconds", "1", "--results", str(tmp_path), stdout=out
    )
    text = out.getvalue()
    assert text.splitlines()[0].endswith("Celery worker(s)")
    assert "web nodes" in text and "Redis masters" in text and "Celery workers" in text
    assert "measured: 20260202-000000.json" in text

    out = StringIO()
    call_command("flashsale", "capacity", "--users", "1000", "--results", str(tmp_path / "none"), "--json", stdout=out)
    result = json.loads(out.getvalue())
    assert result["web_nodes"] >= 1 and result["redis_masters"] == 1
    assert result["figures"]["drain_rows_per_s"]["source"].startswith("default")
