"""A rehearsal's verdict as pure functions: the operator's targets against what was measured,
and the quantiles of the crowd's answer times. No server is read here."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Targets:
    """What the operator asks of a rehearsal. ``None`` leaves a figure unjudged."""

    p99_ms: float | None = 500.0
    """The shoppers' p99 purchase answer time, as the crowd measured it, at most this."""
    sell_out_seconds: float | None = None
    """The stock sold out within this many seconds of the start (by the Redis clock)."""
    zero_errors: bool = True
    """No request failed: no 5xx, no refused connection, no answer outside the contract."""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Targets:
        def number(name: str) -> float | None:
            value = raw.get(name, getattr(cls, name))
            if value is None or value == "":
                return None
            parsed = float(value)
            if not math.isfinite(parsed) or parsed < 0:
                raise ValueError(f"{name} is a number of at least 0, not {value!r}")
            return parsed

        zero_errors = bool(raw.get("zero_errors", True))
        return cls(p99_ms=number("p99_ms"), sell_out_seconds=number("sell_out_seconds"), zero_errors=zero_errors)


@dataclass(frozen=True)
class Measured:
    p99_ms: float | None
    sell_out_seconds: float | None
    """None: the stock did not sell out."""
    errors: int


@dataclass(frozen=True)
class Verdict:
    target: str
    limit: float | None
    measured: float | None
    met: bool

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def verdicts(targets: Targets, measured: Measured) -> list[Verdict]:
    """One verdict per target set. A p99 nobody measured (no answer came) misses its target;
    so does a sell-out time when the stock did not sell out."""
    judged = []
    if targets.p99_ms is not None:
        met = measured.p99_ms is not None and measured.p99_ms <= targets.p99_ms
        judged.append(Verdict("p99_ms", targets.p99_ms, measured.p99_ms, met))
    if targets.sell_out_seconds is not None:
        met = measured.sell_out_seconds is not None and measured.sell_out_seconds <= targets.sell_out_seconds
        judged.append(Verdict("sell_out_seconds", targets.sell_out_seconds, measured.sell_out_seconds, met))
    if targets.zero_errors:
        judged.append(Verdict("zero_errors", 0, measured.errors, measured.errors == 0))
    return judged


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank ``fraction`` quantile (0.5, 0.99) of ``values``; None for none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]
