"""The environment the settings read, through django-environ.

``env`` is django-environ's ``Env`` with three differences a shop's operator would expect:
a malformed value is refused with its variable's name (not a bare ``ValueError``), a boolean
must be a boolean word (``maybe`` is not ``False``), and an empty value counts as unset.
Values are taken as written: no ``$VAR`` indirection, so a secret may start with ``$``.
"""

from __future__ import annotations

import math
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
_KINDS = {int: "an integer", float: "a number", bool: "a boolean (use 1/0, true/false, yes/no)"}


class StrictEnv(environ.Env):
    def get_value(
        self, var: str, cast: Any = None, default: Any = environ.Env.NOTSET, parse_default: bool = False
    ) -> Any:
        raw = self.ENVIRON.get(var, "")
        if not raw.strip():
            if default is self.NOTSET:
                raise ImproperlyConfigured(f"Set the {var} environment variable.")
            return default
        if cast is bool and raw.strip().lower() not in TRUE_WORDS | FALSE_WORDS:
            raise ImproperlyConfigured(f"{var}={raw!r} is not {_KINDS[bool]}.")
        try:
            return self.parse_value(raw.strip() if cast in _KINDS else raw, cast)
        except ValueError:
            raise ImproperlyConfigured(f"{var}={raw!r} is not {_KINDS.get(cast, 'valid')}.") from None

    def list(self, var: str, cast: Any = None, default: Any = environ.Env.NOTSET) -> list[str]:  # type: ignore[override]
        """Comma-separated, each item stripped, empty items dropped."""
        value = self.get_value(var, cast=str, default=default)
        if isinstance(value, list):
            return value
        return [item.strip() for item in value.split(",") if item.strip()]


env = StrictEnv()


def seconds_list(var: str, raw: list[str]) -> list[float]:
    """``raw`` (``env.list(var, ...)``) as non-negative numbers of seconds, refused with the
    variable's name."""
    try:
        values = [float(item) for item in raw]
    except ValueError:
        raise ImproperlyConfigured(f"{var}={','.join(raw)!r} is not a list of seconds.") from None
    if any(not math.isfinite(value) or value < 0 for value in values):
        raise ImproperlyConfigured(f"{var}: seconds cannot be negative.")
    return values


def redis_db_url(url: str, db: int) -> str:
    """The same Redis server with another logical database (Celery and cache stay apart)."""
    base, _, last = url.rpartition("/")
    if base.startswith("redis") and "://" in base and last.split("?")[0].isdigit():
        return f"{base}/{db}"
    return f"{url.rstrip('/')}/{db}"
