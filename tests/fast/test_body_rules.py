"""The web server's rules for request bodies (core/body_rules.py), with no server: framing as
HTTP says, the per-address cap and its patience with fresh bodies, the deadline."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from core.body_rules import (
    NO_BODY,
    PATIENCE_SECONDS,
    Admission,
    Framing,
    admission_wait,
    arrived_late,
    body_admission,
    body_framing,
)

LIMIT = 65536


def _framing(
    *,
    length: str | None = None,
    coding: str | None = None,
    protocol: str = "HTTP/1.1",
    method: str = "POST",
    limit: int | None = LIMIT,
) -> Framing:
    return body_framing(content_length=length, transfer_encoding=coding, protocol=protocol, method=method, limit=limit)


@given(length=st.integers(min_value=1, max_value=LIMIT))
def test_a_length_within_the_limit_is_read_exactly(length: int) -> None:
    assert _framing(length=str(length)) == Framing(length)


@given(length=st.integers(min_value=LIMIT + 1, max_value=10**12))
def test_a_length_over_the_limit_is_refused_before_a_byte_is_read(length: int) -> None:
    assert _framing(length=str(length)) == Framing(0, too_large=True)


def test_no_limit_takes_any_length() -> None:
    assert _framing(length=str(10**9), limit=None) == Framing(10**9)


@pytest.mark.parametrize("length", ["", "0", None])
def test_no_length_or_a_zero_length_is_no_body_on_http_1(length: str | None) -> None:
    assert _framing(length=length) is NO_BODY


@pytest.mark.parametrize("length", ["-1", "12a", "1e3", " "])
def test_a_length_that_is_not_a_number_of_bytes_is_refused(length: str) -> None:
    assert _framing(length=length) == Framing(0, refusal="Content-Length must be a number of bytes.")


@pytest.mark.parametrize("coding", ["chunked", "Chunked", " chunked ", "chunked,"])
def test_a_chunked_body_is_read_to_its_end(coding: str) -> None:
    assert _framing(coding=coding) == Framing(None)


def test_chunked_wins_over_a_length() -> None:
    # The server drops a Content-Length sent with chunked; whichever it passes on, chunked decides.
    assert _framing(length="10", coding="chunked") == Framing(None)


@pytest.mark.parametrize("coding", ["gzip, chunked", "gzip", "chunked, chunked", "identity"])
def test_any_other_transfer_coding_is_refused(coding: str) -> None:
    framing = _framing(coding=coding)

    assert framing.length == 0 and not framing.too_large
    assert framing.refusal == f"Transfer-Encoding {coding!r} is not supported: send the body as it is, or chunked."


@pytest.mark.parametrize("protocol", ["HTTP/2", "HTTP/3"])
def test_an_http_2_body_without_a_length_is_read_to_the_end_of_its_stream(protocol: str) -> None:
    assert _framing(protocol=protocol) == Framing(None)
    assert _framing(protocol=protocol, method="GET") is NO_BODY
    assert _framing(protocol=protocol, length="12") == Framing(12)


starts = st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), max_size=20)


@given(reading=starts, cap=st.integers(min_value=1, max_value=20), later=st.floats(min_value=0, max_value=10))
def test_below_its_cap_an_address_begins_a_body_at_once(reading: list[float], cap: int, later: float) -> None:
    now = max(reading, default=0.0) + later
    admission = body_admission(reading, now=now, cap=cap, patience=PATIENCE_SECONDS)

    assert (admission is Admission.START) is (len(reading) < cap)


@given(reading=starts, later=st.floats(min_value=0, max_value=10))
def test_a_cap_of_zero_is_no_limit(reading: list[float], later: float) -> None:
    now = max(reading, default=0.0) + later
    assert body_admission(reading, now=now, cap=0, patience=PATIENCE_SECONDS) is Admission.START


@given(reading=starts.filter(bool), late=st.floats(min_value=0, max_value=10))
def test_at_its_cap_an_address_arriving_slowly_is_refused(reading: list[float], late: float) -> None:
    # One of its bodies has been arriving for the patience already
    now = min(reading) + PATIENCE_SECONDS + late

    assert body_admission(reading, now=now, cap=len(reading), patience=PATIENCE_SECONDS) is Admission.REFUSE


@given(
    fresh=st.lists(st.floats(min_value=0, max_value=PATIENCE_SECONDS * 0.99), min_size=1, max_size=20),
)
def test_at_its_cap_an_address_whose_bodies_are_all_fresh_waits_at_most_the_patience(fresh: list[float]) -> None:
    # A busy client's bodies, each begun less than the patience ago
    now = PATIENCE_SECONDS
    reading = [now - age for age in fresh]

    assert body_admission(reading, now=now, cap=len(reading), patience=PATIENCE_SECONDS) is Admission.WAIT
    wait = admission_wait(reading, now=now, patience=PATIENCE_SECONDS)
    assert 0 < wait <= PATIENCE_SECONDS
    # And once that wait is over (a clock tick later), the oldest is slow: the address is
    # refused, never left waiting
    over = now + wait + 1e-9
    assert body_admission(reading, now=over, cap=len(reading), patience=PATIENCE_SECONDS) is Admission.REFUSE


@given(
    began=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    took=st.floats(min_value=0, max_value=100, allow_nan=False),
    timeout=st.floats(min_value=0.001, max_value=60, allow_nan=False),
)
def test_a_body_is_late_only_past_the_deadline(began: float, took: float, timeout: float) -> None:
    assume(abs(took - timeout) > 1e-6)  # clear of the clock's rounding either way

    assert arrived_late(began=began, ended=began + took, timeout=timeout) is (took > timeout)


def test_a_deadline_of_zero_is_none() -> None:
    assert not arrived_late(began=0.0, ended=3600.0, timeout=0)
