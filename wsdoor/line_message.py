"""What a queue-mode sale's room tells every socket of its line (the ``queue`` message), as a
pure function of the process's model of the sale and a ``now`` passed in (docs/design.md,
"WebSocket"). The room reads the sale once a second (``wsdoor.hub``); this says what that
reading means at the instant of the message. Nothing here reads a clock or Redis, so the
rule is tested on its own (``tests/fast/``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sales import funnel, line
from sales.funnel import SaleSnapshot


@dataclass(frozen=True, slots=True)
class LineFigures:
    """A queue-mode sale's line as every socket of it hears it (the ``queue`` message)."""

    served: int
    """Places let in: every position up to it may buy (its turn lasting)."""
    rate_per_second: float
    """Places let in per second, as the scripts measured it."""
    waiting: int
    """Places given and not let in yet."""

    def fields(self) -> dict[str, Any]:
        return {"served": self.served, "rate_per_second": self.rate_per_second, "waiting": self.waiting}


def line_figures(snapshot: SaleSnapshot, *, starts_at_ms: int, now_ms: float) -> LineFigures:
    """The line at ``now_ms`` by the model: the counter as last read, moved on at the serving
    rate (``sales.line.served_at``) and never past the last number given; the rate the
    scripts measured, or the sale's own (configured, or auto from the units left) while
    nothing was measured. Before ``starts_at_ms`` nobody has been let in and everyone who
    joined (the pre-queue) waits."""
    state = snapshot.line
    rate = funnel.line_rate(snapshot)
    moved = line.served_at(state, rate=rate, starts_at_ms=starts_at_ms, now_ms=now_ms)
    served = max(0, math.floor(min(float(state.joined), moved)))
    return LineFigures(
        served=served,
        rate_per_second=round(state.measured_rate or rate, 3),
        waiting=max(0, state.joined - served),
    )
