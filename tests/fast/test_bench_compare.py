"""``python -m bench.compare``: medians per row over the runs of each side, and after/before."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.compare import compare, main


def _document(control_rps: float, win_p99: float, script_rps: float, *, extra: bool = False) -> dict[str, Any]:
    runs = [
        {"scenario": "control", "connections": 100, "load": "saturated", "rps": control_rps, "latency_ms": {}},
        {"scenario": "winning", "connections": 100, "load": "paced", "rps": 500.0, "latency_ms": {"p99": win_p99}},
    ]
    if extra:
        runs.append({"scenario": "queue_join", "connections": 100, "rps": 1.0, "latency_ms": {}})
    return {"runs": runs, "redis_ceiling": [{"script": "purchase.lua", "note": "", "rps": script_rps}]}


def test_each_row_is_the_median_of_its_side_and_the_ratio_is_after_over_before() -> None:
    before = [_document(1000, 10, 40_000), _document(3000, 30, 44_000), _document(2000, 20, 42_000)]
    after = [_document(1800, 12, 21_000, extra=True), _document(2200, 16, 21_000, extra=True)]

    rows, alone = compare(before, after)

    by_name = {("/".join(row.key), row.metric): row for row in rows}
    control = by_name["control/100/saturated", "rps"]
    assert (control.before, control.after) == (2000, 2000)
    assert control.ratio == 1.0
    assert control.spread == pytest.approx(1.0)  # before: (3000 - 1000) / 2000
    assert by_name["winning/100/paced", "p99_ms"].after == 14
    assert by_name["redis/purchase.lua/", "rps"].ratio == 0.5
    assert ("control/100/saturated", "p99_ms") not in by_name  # neither side has it
    assert alone == ["queue_join/100/saturated rps: only after"]


def test_the_command_reads_results_files_and_refuses_what_is_not_one(tmp_path: Path, capsys: Any) -> None:
    first, second, broken = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    first.write_text(json.dumps(_document(1000, 10, 40_000)))
    second.write_text(json.dumps(_document(1100, 10, 40_000)))
    broken.write_text("{not json")

    assert main(["--before", str(first), "--after", str(second), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert {"key": ["control", "100", "saturated"], "metric": "rps", "ratio": 1.1}.items() <= next(
        row for row in printed["rows"] if row["metric"] == "rps" and row["key"][0] == "control"
    ).items()
    with pytest.raises(SystemExit, match="not a results file"):
        main(["--before", str(broken), "--after", str(second)])
