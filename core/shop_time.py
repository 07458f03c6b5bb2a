"""The shop's time zone (``SHOP_TIME_ZONE``): the wall clock operators schedule sales by and
shoppers read the start in.

Inside, every time stays aware UTC; only the edges convert: the admin's form, ``manage.py
flashsale init --starts-at``, the pages. A wall time the zone's clocks skip (the hour lost
when summer time begins) or show twice (the hour repeated when it ends) names no single
instant, so it is refused rather than guessed.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

WALL_TIME_FORMATS = ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S")
"""What ``wall_time_parse`` reads: a date and a time of day, minutes or seconds."""


class UnknownTimeZone(ValueError):
    """A name the IANA time zone database does not know."""


class WallTimeInvalid(ValueError):
    """A wall time that is not exactly one instant in its zone."""

    def __init__(self, wall: datetime, zone: ZoneInfo, *, skipped: bool) -> None:
        self.wall, self.zone, self.skipped = wall, zone, skipped
        if skipped:
            why = "does not exist there (the clocks skip it when summer time begins)"
        else:
            why = "happens twice there (the clocks repeat that hour when summer time ends)"
        super().__init__(f"{wall:%Y-%m-%d %H:%M} in {zone.key} {why}; choose another time.")


@functools.cache
def zone_named(name: str) -> ZoneInfo:
    """The IANA zone ``name`` (``Asia/Shanghai``, ``UTC``). Raises ``UnknownTimeZone``."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UnknownTimeZone(f"{name!r} is not a time zone (an IANA name such as Asia/Shanghai or UTC).") from None


def shop_zone() -> ZoneInfo:
    """``SHOP_TIME_ZONE``; a name that is no time zone stops whatever asked."""
    try:
        return zone_named(settings.SHOP_TIME_ZONE)
    except UnknownTimeZone as error:
        raise ImproperlyConfigured(f"SHOP_TIME_ZONE: {error}") from None


def wall_time_to_utc(wall: datetime, zone: ZoneInfo) -> datetime:
    """The instant (aware, UTC) that a clock in ``zone`` shows as ``wall`` (naive). Raises
    ``WallTimeInvalid`` for a wall time that zone skips or repeats."""
    if wall.tzinfo is not None:
        raise ValueError("a wall time carries no zone of its own")
    first, second = wall.replace(tzinfo=zone, fold=0), wall.replace(tzinfo=zone, fold=1)
    if first.utcoffset() != second.utcoffset():
        skipped = first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != wall
        raise WallTimeInvalid(wall, zone, skipped=skipped)
    return first.astimezone(UTC)


def utc_to_wall_time(moment: datetime, zone: ZoneInfo) -> datetime:
    """What a clock in ``zone`` shows at ``moment`` (aware), as a naive wall time."""
    if moment.tzinfo is None:
        raise ValueError("an instant must be aware")
    return moment.astimezone(zone).replace(tzinfo=None)


def wall_time_parse(text: str) -> datetime:
    """``2026-11-11 00:00`` (or with seconds, or a ``T``) as a naive wall time. Raises
    ``ValueError`` naming the expected form."""
    cleaned = text.strip()
    for form in WALL_TIME_FORMATS:
        try:
            return datetime.strptime(cleaned, form)
        except ValueError:
            continue
    raise ValueError(f"{text!r} is not a wall time: write it as YYYY-MM-DD HH:MM (seconds optional).")


def wall_time_label(moment: datetime, zone: ZoneInfo) -> str:
    """``2026-11-11 00:00 Asia/Shanghai``: an instant as that zone's clock shows it."""
    wall = moment.astimezone(zone)
    seconds = ":%S" if wall.second else ""
    return f"{wall:%Y-%m-%d %H:%M}{wall.strftime(seconds)} {zone.key}"
