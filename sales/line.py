"""The waiting room's rules: places, the serving counter, turns, the shuffled pre-queue.

A queue-mode sale gives every arrival a number, in the order its join reached Redis
(``lua/join.lua``), and admits numbers in order as its serving counter moves. These are the
rules, as pure functions of the line's state and a ``now`` passed in; ``lua/line.lua`` holds
the same rules for the scripts, which decide (docs/design.md, "The waiting room"). A web
process uses these to answer locally (not your turn yet, your turn passed, where you are),
and sends on to the script only what may be admitted.

- **The counter.** ``served`` moves at the serving rate from the sale's start: every
  ``1 / rate`` seconds the next number is let in. While the line is empty it runs ahead of
  the last number given by at most a second's serving (``IDLE_SECONDS``), so the next
  arrivals walk straight in, never more than that at once; places up to
  ``min(joined, served)`` have been let in. The rate is the sale's ``serving_rate`` per
  second, or, when that is ``auto`` (0), ``ceil(k x R)`` per crowd interval: the crowd factor
  k times the units left R, as crowd admission lets attempts through in direct mode.
  Nobody's absence stops it: an abandoned place is passed like any other.
- **A turn.** The shopper at position p may buy once ``served >= p``, until the line has
  moved ``rate x turn_seconds`` places past them (about ``turn_seconds`` at that rate): then
  the turn has passed and the shopper may join again, at the back.
- **The pre-queue.** Numbers given before the start (after ``pre_queue_opens_at``) form the
  pre-queue, whose size P is fixed at the start. When the sale shuffles it, the number n of
  a pre-queue arrival stands at ``position(seed, P, n)``, a permutation of 1..P keyed by a
  seed committed (its SHA-256 published) before the line opened and revealed at the start:
  anyone can check the order. Later arrivals keep their number as their position.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

FEISTEL_ROUNDS = 4
IDLE_SECONDS = 1.0
"""How far (in seconds of serving) the counter may run ahead of an empty line."""


@dataclass(frozen=True, slots=True)
class LineState:
    """The line as Redis held it at ``at_ms`` (Redis clock)."""

    joined: int = 0
    """The last number given (numbers are 1, 2, ...: gap-free)."""
    served: float = 0.0
    """Numbers at or below it have been let in (a fraction: the next is on its way)."""
    at_ms: int = 0
    pre_queue: int = -1
    """P, the pre-queue's size, fixed at the start (-1 before)."""
    seed: str = ""
    """The shuffle's seed: empty until the start, or when the pre-queue is kept in order."""
    measured_rate: float = 0.0
    """Numbers let in per second, measured over the last few seconds."""


def serving_rate(*, configured: int, crowd_factor: float, remaining: int, crowd_interval_ms: int) -> float:
    """Numbers let in per second: the sale's own rate, or auto from the units left."""
    if configured > 0:
        return float(configured)
    if remaining <= 0 or crowd_factor <= 0:
        return 0.0
    return math.ceil(crowd_factor * remaining) * 1000 / crowd_interval_ms


def served_at(state: LineState, *, rate: float, starts_at_ms: int, now_ms: float) -> float:
    """The counter at ``now_ms`` at most: ``state``'s moved on at ``rate``, with no cap. Redis's
    counter, capped by the line it has seen, is never ahead of it (at a rate that did not
    rise), so a place beyond it has clearly not been let in."""
    if now_ms < starts_at_ms:
        return 0.0
    since = max(state.at_ms, starts_at_ms)
    return state.served + rate * max(0.0, now_ms - since) / 1000


def served_at_least(state: LineState, *, rate: float, starts_at_ms: int, now_ms: float) -> float:
    """Places let in by ``now_ms`` for sure (at a rate that did not fall): the line as last
    heard (it only grows), and the counter moved on at ``rate`` up to it."""
    return min(float(state.joined), served_at(state, rate=rate, starts_at_ms=starts_at_ms, now_ms=now_ms))


def idle_allowance(rate: float) -> float:
    return max(1.0, rate * IDLE_SECONDS)


def position(*, seed: str, pre_queue: int, number: int) -> int:
    """Where number n stands in the line: itself, or its place in the shuffled pre-queue."""
    if not seed or pre_queue <= 1 or number > pre_queue:
        return number
    return _feistel(seed, pre_queue, number - 1) + 1


def _feistel(seed: str, size: int, index: int) -> int:
    """A permutation of range(size), keyed by ``seed``: a balanced Feistel network over the
    smallest even number of bits that holds ``size``, cycle-walked back into the range.
    ``lua/line.lua`` computes the same with Redis's ``sha1hex``."""
    bits = max(2, (size - 1).bit_length())
    bits += bits % 2
    half = bits // 2
    mask = (1 << half) - 1
    value = index
    while True:
        left, right = value >> half, value & mask
        for round_number in range(1, FEISTEL_ROUNDS + 1):
            digest = hashlib.sha1(f"{seed}:{round_number}:{right}".encode()).hexdigest()
            left, right = right, left ^ (int(digest[:8], 16) & mask)
        value = (left << half) | right
        if value < size:
            return value


def turn_passed(*, position_in_line: int, served: float, rate: float, turn_seconds: int) -> bool:
    """The line moved ``rate x turn_seconds`` places past this position: the turn is over."""
    return served - position_in_line >= max(1.0, rate * turn_seconds)


def ahead_of(*, position_in_line: int, served: float) -> int:
    """Shoppers still to be let in before this one."""
    return max(0, position_in_line - math.floor(served) - 1)


def eta_seconds(*, ahead: int, rate: float) -> float | None:
    """How long until this shopper's turn, at the measured rate (None: the line is not moving)."""
    if ahead <= 0:
        return 0.0
    if rate <= 0:
        return None
    return ahead / rate


def shuffle_commitment(seed: str) -> str:
    """What a sale publishes before its line opens: the SHA-256 of the seed it will reveal."""
    return hashlib.sha256(seed.encode()).hexdigest()
