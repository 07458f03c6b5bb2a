"""The ``queue`` message's figures (wsdoor/line_message.py) with no server: what a room tells
every socket of a queue-mode sale's line is the counter moved on at the serving rate, never
past the last number given, and the measured rate before the sale's own."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sales.funnel import AdmissionPlan, SaleSnapshot
from sales.line import LineState
from wsdoor.line_message import LineFigures, line_figures

START_MS = 1_800_000_000_000


def _sale(*, joined: int, served: float = 0.0, at_ms: int = 0, measured: float = 0.0, rate: int = 2) -> SaleSnapshot:
    return SaleSnapshot(
        1,
        starts_at_ms=START_MS,
        ends_at_ms=START_MS + 3_600_000,
        total=10,
        remaining=10,
        plan=AdmissionPlan(queued=True, serving_rate=rate, crowd_factor=2.0),
        line=LineState(joined=joined, served=served, at_ms=at_ms, measured_rate=measured),
    )


@given(
    joined=st.integers(min_value=0, max_value=10**6),
    served=st.floats(min_value=0, max_value=10**6),
    read_ms=st.integers(min_value=-10_000, max_value=10**7),
    since_ms=st.lists(st.integers(min_value=0, max_value=10**7), min_size=1, max_size=20),
    rate=st.integers(min_value=0, max_value=1000),
)
def test_every_place_given_is_let_in_or_waiting_and_the_counter_never_goes_back(
    joined: int, served: float, read_ms: int, since_ms: list[int], rate: int
) -> None:
    sale = _sale(joined=joined, served=min(served, joined + 1), at_ms=max(0, START_MS + read_ms), rate=rate)
    told = [line_figures(sale, starts_at_ms=START_MS, now_ms=START_MS + read_ms + ms) for ms in sorted(since_ms)]
    for figures in told:
        assert 0 <= figures.served <= joined
        assert figures.served + figures.waiting == joined
    assert [figures.served for figures in told] == sorted(figures.served for figures in told)


def test_before_the_start_nobody_is_let_in_and_the_pre_queue_waits() -> None:
    sale = _sale(joined=7)
    assert line_figures(sale, starts_at_ms=START_MS, now_ms=START_MS - 1) == LineFigures(0, 2.0, 7)


def test_the_counter_moves_at_the_serving_rate_from_its_last_reading_up_to_the_last_number_given() -> None:
    # Read 3.5 places in at the start plus a second; at two places a second
    sale = _sale(joined=10, served=3.5, at_ms=START_MS + 1000)
    at = [line_figures(sale, starts_at_ms=START_MS, now_ms=START_MS + 1000 + ms) for ms in (0, 250, 1000, 60_000)]
    assert [figures.served for figures in at] == [3, 4, 5, 10]
    assert [figures.waiting for figures in at] == [7, 6, 5, 0]
    # Never read since the start: the counter moves from the start itself
    assert line_figures(_sale(joined=10), starts_at_ms=START_MS, now_ms=START_MS + 2600).served == 5


def test_the_rate_told_is_the_measured_one_and_the_sales_own_only_until_something_was_measured() -> None:
    assert line_figures(_sale(joined=5, measured=0.25), starts_at_ms=START_MS, now_ms=START_MS).rate_per_second == 0.25
    assert line_figures(_sale(joined=5), starts_at_ms=START_MS, now_ms=START_MS).rate_per_second == 2.0
    # auto: the crowd factor times the units left, per second
    auto = line_figures(_sale(joined=5, rate=0), starts_at_ms=START_MS, now_ms=START_MS)
    assert auto.rate_per_second == 20.0
