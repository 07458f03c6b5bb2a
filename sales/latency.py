"""The purchase answer's latency as each process counts it for the operator's console: a
fixed-bucket histogram per sale (``sales.tally`` keeps it beside the answer counts), cheap
enough for the hot path (a bisect and an increment), and its quantiles read back.

Bounds are in milliseconds; a count under bound ``b`` is an answer that took at most ``b``
and more than the bound before it; ``inf`` holds the rest.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping

BOUNDS_MS: tuple[float, ...] = (
    0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 250, 500, 1000, 2500, 5000,
)  # fmt: skip
FIELDS: tuple[str, ...] = (*(f"{bound:g}" for bound in BOUNDS_MS), "inf")
"""The histogram's field names, one per bucket, in order."""


def bucket_field(seconds: float) -> str:
    """The field of the bucket an answer that took ``seconds`` falls in."""
    return FIELDS[bisect.bisect_left(BOUNDS_MS, seconds * 1000.0)]


def quantile_ms(counts: Mapping[str, int], fraction: float) -> float | None:
    """The ``fraction`` quantile (0.5, 0.99) of the answers counted in ``counts`` (field ->
    count), interpolated linearly inside its bucket; None when nothing was counted. A
    quantile in the open bucket is reported as the last bound: at least that."""
    total = sum(max(0, counts.get(name, 0)) for name in FIELDS)
    if total <= 0:
        return None
    rank = fraction * total
    seen = 0
    for index, name in enumerate(FIELDS):
        count = max(0, counts.get(name, 0))
        if count and seen + count >= rank:
            if index == len(BOUNDS_MS):
                return BOUNDS_MS[-1]
            lower = BOUNDS_MS[index - 1] if index else 0.0
            upper = BOUNDS_MS[index]
            return lower + (upper - lower) * max(0.0, rank - seen) / count
        seen += count
    return BOUNDS_MS[-1]


def histogram_delta(now: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    """What was counted between two reads of a histogram (a counter that went back, as after
    a reset, counts from zero)."""
    delta = {}
    for name in FIELDS:
        change = now.get(name, 0) - before.get(name, 0)
        delta[name] = change if change >= 0 else now.get(name, 0)
    return delta
