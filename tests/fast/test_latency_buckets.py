"""The console's latency histogram (sales/latency.py), with no server: each answer lands in
the one bucket its time falls in, and a quantile read back lies inside that bucket."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sales.latency import BOUNDS_MS, FIELDS, bucket_field, histogram_delta, quantile_ms


def test_an_answer_falls_in_the_bucket_of_the_first_bound_it_does_not_exceed() -> None:
    assert bucket_field(0.0004) == "0.5"
    assert bucket_field(0.0005) == "0.5"
    assert bucket_field(0.0011) == "2"
    assert bucket_field(0.0075) == "7.5"
    assert bucket_field(0.2) == "250"
    assert bucket_field(6.0) == "inf"
    assert len(FIELDS) == len(BOUNDS_MS) + 1


def test_nothing_counted_has_no_quantile() -> None:
    assert quantile_ms({}, 0.5) is None
    assert quantile_ms(dict.fromkeys(FIELDS, 0), 0.99) is None


def test_quantiles_interpolate_inside_their_bucket() -> None:
    # 98 answers between 1 and 2 ms, 2 between 100 and 150 ms
    counts = {"2": 98, "150": 2}
    assert quantile_ms(counts, 0.5) == pytest.approx(1 + 50 / 98)
    assert quantile_ms(counts, 0.99) == 125.0
    assert quantile_ms({"inf": 3}, 0.5) == 5000


@given(st.lists(st.floats(min_value=0, max_value=4.9), min_size=1, max_size=300), st.sampled_from([0.5, 0.9, 0.99]))
def test_a_quantile_lies_in_the_bucket_of_the_true_one(times: list[float], fraction: float) -> None:
    counts = Counter(bucket_field(seconds) for seconds in times)
    ordered = sorted(times)
    true_ms = ordered[math.ceil(fraction * len(ordered)) - 1] * 1000
    estimate = quantile_ms(counts, fraction)
    assert estimate is not None
    index = FIELDS.index(bucket_field(true_ms / 1000))
    lower = BOUNDS_MS[index - 1] if index else 0.0
    assert lower <= estimate <= BOUNDS_MS[index] + 1e-9


def test_a_delta_is_what_was_counted_in_between_and_a_reset_counts_from_zero() -> None:
    assert histogram_delta({"1": 5, "2": 3}, {"1": 2})["1"] == 3
    assert histogram_delta({"1": 5, "2": 3}, {"1": 2})["2"] == 3
    assert histogram_delta({"1": 1}, {"1": 7})["1"] == 1
