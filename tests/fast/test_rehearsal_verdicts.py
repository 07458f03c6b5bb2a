"""A rehearsal's verdict (operations/verdicts.py, operations/reports.py), with no server: each
target the operator set is met or missed by what was measured; the report reads back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from operations.reports import report_failures, report_lines
from operations.verdicts import Measured, Targets, percentile, verdicts


def test_every_target_set_is_judged_and_unset_ones_are_not() -> None:
    judged = verdicts(Targets(p99_ms=100, sell_out_seconds=2, zero_errors=True), Measured(80.0, 2.5, 0))
    assert [(v.target, v.met) for v in judged] == [("p99_ms", True), ("sell_out_seconds", False), ("zero_errors", True)]
    assert verdicts(Targets(p99_ms=None, sell_out_seconds=None, zero_errors=False), Measured(None, None, 9)) == []


def test_no_answer_and_no_sell_out_miss_their_targets() -> None:
    judged = verdicts(Targets(p99_ms=100, sell_out_seconds=10), Measured(None, None, 1))
    assert [(v.target, v.met) for v in judged] == [
        ("p99_ms", False),
        ("sell_out_seconds", False),
        ("zero_errors", False),
    ]


def test_targets_come_back_from_their_json_and_refuse_nonsense() -> None:
    targets = Targets(p99_ms=250.0, sell_out_seconds=None, zero_errors=False)
    assert Targets.from_json(targets.as_json()) == targets
    assert Targets.from_json({}) == Targets()
    for bad in ({"p99_ms": -1}, {"sell_out_seconds": "nan"}, {"p99_ms": "inf"}):
        with pytest.raises(ValueError):
            Targets.from_json(bad)


@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=200), st.floats(0.01, 1.0))
def test_a_percentile_is_a_value_with_that_share_at_or_below_it(values: list[float], fraction: float) -> None:
    found = percentile(values, fraction)
    assert found in values
    assert sum(1 for value in values if value <= found) >= fraction * len(values) - 1e-9
    assert sum(1 for value in values if value < found) < fraction * len(values) + 1e-9


def test_a_failed_reports_lines_say_why() -> None:
    report = {
        "rehearsal_id": 7,
        "sale_id": 3,
        "shoppers": 500,
        "attempts": 3,
        "transport": "http",
        "passed": False,
        "invariants": {"I1": True, "I2": True, "I3": True, "I4": True},
        "verdicts": [
            {"target": "p99_ms", "limit": 100.0, "measured": 420.5, "met": False},
            {"target": "sell_out_seconds", "limit": 5.0, "measured": None, "met": False},
        ],
        "answers": {"SOLD_OUT": 490, "SUCCESS": 10},
        "problems": [],
    }
    assert report_failures(report) == "p99_ms 420.5 over 100.0; did not sell out"
    lines = report_lines(report)
    assert lines[0] == "Rehearsal 7 of sale 3 (500 shoppers x 3 attempts, http):"
    assert "FAILED: p99_ms 420.5 over 100.0; did not sell out" in lines[1]
    assert any("SOLD_OUT 490, SUCCESS 10" in line for line in lines)
