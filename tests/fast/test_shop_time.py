"""The shop's wall clock against UTC (core/shop_time.py), with no server: a wall time is one
instant or it is refused, never guessed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.shop_time import (
    UnknownTimeZone,
    WallTimeInvalid,
    utc_to_wall_time,
    wall_time_label,
    wall_time_parse,
    wall_time_to_utc,
    zone_named,
)

ZONES = ["UTC", "Asia/Shanghai", "America/New_York", "Europe/Paris", "Australia/Lord_Howe", "Asia/Kathmandu"]


def test_an_11_11_midnight_in_shanghai_is_four_in_the_afternoon_before_in_utc() -> None:
    wall = wall_time_parse("2026-11-11 00:00")

    moment = wall_time_to_utc(wall, zone_named("Asia/Shanghai"))

    assert moment == datetime(2026, 11, 10, 16, 0, tzinfo=UTC)
    assert moment.tzinfo is UTC
    assert wall_time_label(moment, zone_named("Asia/Shanghai")) == "2026-11-11 00:00 Asia/Shanghai"
    assert wall_time_label(moment, zone_named("America/New_York")) == "2026-11-10 11:00 America/New_York"


def test_a_wall_time_the_clocks_skip_is_refused() -> None:
    # New York springs forward on 2026-03-08: 02:00 becomes 03:00.
    with pytest.raises(WallTimeInvalid, match="does not exist there") as refused:
        wall_time_to_utc(datetime(2026, 3, 8, 2, 30), zone_named("America/New_York"))
    assert refused.value.skipped is True


def test_a_wall_time_the_clocks_repeat_is_refused() -> None:
    # New York falls back on 2026-11-01: 01:00-02:00 happens twice.
    with pytest.raises(WallTimeInvalid, match="happens twice there") as refused:
        wall_time_to_utc(datetime(2026, 11, 1, 1, 30), zone_named("America/New_York"))
    assert refused.value.skipped is False


def test_the_hours_either_side_of_a_change_are_taken() -> None:
    zone = zone_named("America/New_York")
    assert wall_time_to_utc(datetime(2026, 3, 8, 1, 59), zone) == datetime(2026, 3, 8, 6, 59, tzinfo=UTC)
    assert wall_time_to_utc(datetime(2026, 3, 8, 3, 0), zone) == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)


@given(
    moment=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)).map(
        lambda naive: naive.replace(tzinfo=UTC, microsecond=0)
    ),
    zone_name=st.sampled_from(ZONES),
)
def test_every_instant_comes_back_from_its_wall_time_unless_that_wall_time_repeats(
    moment: datetime, zone_name: str
) -> None:
    zone = zone_named(zone_name)
    wall = utc_to_wall_time(moment, zone)
    try:
        back = wall_time_to_utc(wall, zone)
    except WallTimeInvalid as refused:
        # Only a repeated hour can refuse a wall time some instant shows: two instants show it.
        assert refused.skipped is False
        both = {wall.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1)}
        assert moment in both
        assert len(both) == 2
        assert all(utc_to_wall_time(one, zone) == wall for one in both)
    else:
        assert back == moment


@pytest.mark.parametrize(
    ("text", "wall"),
    [
        ("2026-11-11 00:00", datetime(2026, 11, 11, 0, 0)),
        ("2026-11-11 00:00:30", datetime(2026, 11, 11, 0, 0, 30)),
        ("2026-11-11T09:15", datetime(2026, 11, 11, 9, 15)),
        ("  2026-11-11 09:15  ", datetime(2026, 11, 11, 9, 15)),
    ],
)
def test_wall_times_are_read_with_minutes_or_seconds(text: str, wall: datetime) -> None:
    assert wall_time_parse(text) == wall


@pytest.mark.parametrize(
    "text", ["11/11/2026 00:00", "2026-11-11", "2026-11-11 24:00", "midnight", "2026-11-11 00:00+08:00"]
)
def test_anything_else_is_refused_naming_the_form(text: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM-DD HH:MM"):
        wall_time_parse(text)


def test_an_unknown_zone_is_refused() -> None:
    for name in ("Mars/Olympus", "", "../etc/passwd"):
        with pytest.raises(UnknownTimeZone):
            zone_named(name)
