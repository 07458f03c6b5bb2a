"""The operator console's figures as pure functions: from two readings of a sale's counters
to one point of the console (rates per second, the latency's quantiles over the interval,
the stock, the orders, the sockets, the line). No server is read here (``wsdoor.console``
reads them); the fast tier tests these rules.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sales.latency import histogram_delta, quantile_ms

ANSWER_KINDS: dict[str, str] = {
    "won": "answer:SUCCESS",
    "sold_out": "answer:SOLD_OUT",
    "limited_bucket": "shed:bucket",
    "limited_crowd": "shed:crowd",
    "limited_user": "shed:user",
    "limited_ip": "shed:ip",
    "pow_refused": "answer:POW_INVALID",
    "not_started": "answer:NOT_STARTED",
    "already_purchased": "answer:ALREADY_PURCHASED",
    "ended": "answer:ENDED",
    "not_your_turn": "answer:NOT_YOUR_TURN",
    "pass_refused": "answer:QUEUE_PASS_INVALID",
    "arrived": "arrived",
    "to_redis": "script",
}
"""Each rate a point carries, by the sale's stats field it is the change of per second
(``sales.tally``): the answers by kind, rate limited by reason (the funnel's ``shed``
counts, where every 429 is decided), attempts that arrived and attempts sent to Redis."""

IDLE_KEEP_SECONDS = 30.0
"""A point in which nothing moved is still kept this often, so the curves stay continuous."""


@dataclass(frozen=True)
class Reading:
    """A sale's counters at one instant (``at_ms``, the Redis clock), as the console reads them."""

    at_ms: int
    total: int
    remaining: int
    buyers: int
    status: str
    stats: dict[str, int] = field(default_factory=dict)
    latency: dict[str, int] = field(default_factory=dict)
    backlog: int = 0
    stored: int = 0
    emailed: int = 0
    sockets: int = 0
    line: dict[str, float] | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Reading:
        return cls(**{name: raw[name] for name in cls.__dataclass_fields__ if name in raw})


def point_between(before: Reading | None, now: Reading) -> dict[str, Any]:
    """The console's point for ``now``: every rate over the interval since ``before`` (none
    without one, or when the clock did not move), p50 and p99 of the answers in it."""
    seconds = (now.at_ms - before.at_ms) / 1000 if before is not None else 0.0
    rates: dict[str, float | None] = {}
    for kind, name in ANSWER_KINDS.items():
        if before is None or seconds <= 0:
            rates[kind] = None
        else:
            change = now.stats.get(name, 0) - before.stats.get(name, 0)
            # A counter that went back (the sale was reset) counts from zero.
            rates[kind] = round((change if change >= 0 else now.stats.get(name, 0)) / seconds, 2)
    answered = histogram_delta(now.latency, before.latency) if before is not None else {}
    p50, p99 = quantile_ms(answered, 0.5), quantile_ms(answered, 0.99)
    return {
        "type": "point",
        "t": now.at_ms,
        "status": now.status,
        "stock": now.remaining,
        "total": now.total,
        "buyers": now.buyers,
        "rates": rates,
        "p50_ms": None if p50 is None else round(p50, 2),
        "p99_ms": None if p99 is None else round(p99, 2),
        "answers": sum(answered.values()),
        "orders": {"waiting": now.backlog, "stored": now.stored, "emailed": now.emailed},
        "sockets": now.sockets,
        "line": now.line,
    }


def point_worth_keeping(point: dict[str, Any], kept: dict[str, Any] | None) -> bool:
    """Whether ``point`` goes into the sale's kept series after ``kept``, the last one kept:
    when anything moved, and at least every ``IDLE_KEEP_SECONDS`` otherwise."""
    if kept is None:
        return True
    if any(rate for rate in point["rates"].values()):
        return True
    for name in ("stock", "buyers", "orders", "sockets", "line", "status"):
        if point[name] != kept.get(name):
            return True
    return bool(point["t"] - kept["t"] >= IDLE_KEEP_SECONDS * 1000)
