"""The admission funnel: what a web process answers on its own, with no network call, and
what it lets through to ``purchase.lua`` (DESIGN.md, "The purchase path: a funnel").

Each process keeps a ``SaleGate`` per sale it serves:

- the sale's window, judged by this process's clock corrected to Redis's (the offset comes
  with every meta read), with a margin: only attempts clearly outside it are answered here;
- the buyers (user -> order id), so that a winner hears ``ALREADY_PURCHASED`` with their
  order from every layer: completed from Redis once per sale (one call) before the process
  first answers anyone locally, then kept by the events, which carry every win's order id;
- the sold-out marker: set when the script said SOLD_OUT or a win took the last unit (this
  process's, or another's heard as an event), cleared by a stock-return event newer than
  that (Redis clock);
- the remaining stock R, newest by Redis clock among the events, meta reads and answers;
- per-user and per-IP fixed windows, counted in this process;
- crowd admission: at most ``ceil(k x R)`` attempts per interval go on to the script, R the
  stock left when the interval began (k is the sale's ``crowd_factor``), the rest hear 429
  ``reason: "crowd"``;
- bucket tokens, leased from Redis in batches (``lua/lease.lua``) and handed out here.

The answers that rest on what the events keep current (the winners table, the sold-out
marker, the stock behind crowd admission) are given only while the process's event
subscription is live: a process that cannot hear a win or a unit coming back must not
answer for Redis. While it is not live, the window and the per-user and per-IP windows
still answer here, after one call to Redis asks whether the shopper already holds a unit.

How far local admission can exceed the sale's rate (docs/funnel.md): tokens all come from
the one bucket in Redis, so over any interval T the sale admits at most
``capacity + refill x T`` plus what the processes held when T began, at most one lease
each (``P x batch``); a lease's unspent tokens are dropped after ``LEASE_SECONDS``, so no
process saves them up, and a process that dies takes only its unspent lease with it.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum

from django.conf import settings

from core.events import event_listener
from core.process_state import forgets_process_state

from . import keys

LEASE_SECONDS = 1.0
"""A lease's unspent tokens are dropped after this long."""
LEASE_BATCH_MAX = 64
WINDOW_MARGIN_MS = 200
"""Attempts within this of the window's edges (by the corrected clock) go to the script,
which judges by the Redis clock itself."""


class Shed(StrEnum):
    """Why an attempt was answered without the script (the stats' ``shed:<reason>``)."""

    WINNER = "winner"
    NOT_STARTED = "not_started"
    ENDED = "ended"
    SOLD_OUT = "sold_out"
    USER = "user"
    IP = "ip"
    CROWD = "crowd"
    BUCKET = "bucket"


@dataclass(frozen=True, slots=True)
class Verdict:
    """``shed`` None: go on. Otherwise the local answer, with the winner's order id or when
    to come back."""

    shed: Shed | None = None
    order_id: str = ""
    retry_after_ms: int = 0


GO_ON = Verdict()


@dataclass
class SaleGate:
    """One sale as this process knows it. Every field is read and written under ``lock``."""

    sale_id: int
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # The window, in Redis ms, and this process's clock offset to Redis.
    starts_at_ms: int = 0
    ends_at_ms: int = 0
    clock_offset_ms: float = 0.0
    crowd_factor: float = 0.0
    # Buyers: complete once loaded from Redis, kept current by the events meanwhile.
    winners: dict[int, str] = field(default_factory=dict)
    winners_loaded: bool = False
    # Stock as last heard, and when (Redis ms).
    remaining: int | None = None
    remaining_at_ms: int = -1
    sold_out_at_ms: int | None = None
    returned_at_ms: int = -1
    # Fixed windows per user and per IP, of the current window number.
    window_number: int = -1
    user_calls: dict[int, int] = field(default_factory=dict)
    ip_calls: dict[str, int] = field(default_factory=dict)
    # Crowd admission: attempts let through in the current interval, and how many it allows.
    crowd_interval: int = -1
    crowd_admitted: int = 0
    crowd_budget: int = 0
    # Leased bucket tokens.
    tokens: int = 0
    tokens_until: float = 0.0
    empty_until: float = 0.0


class Funnel:
    """The process's gates, fed by the event subscription."""

    def __init__(self) -> None:
        self._gates: dict[int, SaleGate] = {}
        self._lock = threading.Lock()

    def gate(self, sale_id: int) -> SaleGate:
        found = self._gates.get(sale_id)
        if found is None:
            with self._lock:
                found = self._gates.setdefault(sale_id, SaleGate(sale_id))
        return found

    @property
    def live(self) -> bool:
        event_listener.ensure_running()
        return event_listener.live

    def forget(self) -> None:
        with self._lock:
            self._gates.clear()

    def lost(self) -> None:
        """The subscription dropped: what the events kept current can no longer be trusted."""
        with self._lock:
            gates = list(self._gates.values())
        for gate in gates:
            with gate.lock:
                gate.winners_loaded = False
                gate.sold_out_at_ms = None
                gate.remaining = None
                gate.remaining_at_ms = -1

    # --- What the process hears ---------------------------------------------------------

    def heard_event(self, event: dict[str, object]) -> None:
        """A purchase or stock-return event: ``{"sale_id","buyer","remaining","timestamp",
        "order_id"}`` (``order_id`` on every win and return)."""
        try:
            sale_id = int(event["sale_id"])  # type: ignore[call-overload]
            remaining = int(event["remaining"])  # type: ignore[call-overload]
            timestamp = int(event["timestamp"])  # type: ignore[call-overload]
            buyer = int(event["buyer"])  # type: ignore[call-overload]
        except (KeyError, TypeError, ValueError):
            return
        order_id = event.get("order_id")
        gate = self.gate(sale_id)
        with gate.lock:
            if isinstance(order_id, str) and order_id:
                gate.winners[buyer] = order_id
            _heard_remaining(gate, remaining, timestamp)
            if remaining > 0:
                gate.returned_at_ms = max(gate.returned_at_ms, timestamp)
                # A purchase in the same millisecond as the sell-out also clears it:
                # harmless, the next attempt asks Redis and marks again.
                if gate.sold_out_at_ms is not None and timestamp >= gate.sold_out_at_ms:
                    gate.sold_out_at_ms = None
            elif gate.returned_at_ms < timestamp:
                # The win that took the last unit, heard from another process: sold out here too.
                gate.sold_out_at_ms = max(timestamp, gate.sold_out_at_ms or 0)

    def heard_state(
        self,
        sale_id: int,
        *,
        starts_at_ms: int,
        ends_at_ms: int,
        crowd_factor: float,
        remaining: int,
        redis_now_ms: int,
        local_now_ms: float,
    ) -> None:
        """A meta read (``lua/sale_state.lua``): the window, the stock and Redis's clock."""
        gate = self.gate(sale_id)
        with gate.lock:
            gate.starts_at_ms, gate.ends_at_ms, gate.crowd_factor = starts_at_ms, ends_at_ms, crowd_factor
            gate.clock_offset_ms = redis_now_ms - local_now_ms
            if remaining >= 0:
                _heard_remaining(gate, remaining, redis_now_ms)

    def heard_answer(
        self, sale_id: int, *, status: str, user_id: int, order_id: str, remaining: int, now_ms: int
    ) -> None:
        """What the script answered: a winner, the stock, a sell-out."""
        gate = self.gate(sale_id)
        with gate.lock:
            if status in ("SUCCESS", "ALREADY_PURCHASED") and order_id:
                gate.winners[user_id] = order_id
            if remaining >= 0:
                _heard_remaining(gate, remaining, now_ms)
            sold_out = status == "SOLD_OUT" or (status == "SUCCESS" and remaining == 0)
            if sold_out and self.live and gate.returned_at_ms < now_ms:
                gate.sold_out_at_ms = max(now_ms, gate.sold_out_at_ms or 0)

    def forget_window(self, sale_id: int) -> None:
        """Stop judging the window here until the next meta read."""
        gate = self.gate(sale_id)
        with gate.lock:
            gate.starts_at_ms = gate.ends_at_ms = 0

    def heard_holders(self, sale_id: int, holders: dict[int, str]) -> None:
        """Every buyer of the sale, from Redis: the winners table is complete from now on."""
        gate = self.gate(sale_id)
        with gate.lock:
            holders.update(gate.winners)  # Wins heard meanwhile are newer.
            gate.winners = holders
            gate.winners_loaded = True

    def holder(self, sale_id: int, user_id: int) -> str | None:
        gate = self.gate(sale_id)
        with gate.lock:
            return gate.winners.get(user_id)

    def sold_out(self, sale_id: int) -> bool:
        return self.gate(sale_id).sold_out_at_ms is not None

    def winners_known(self, sale_id: int) -> bool:
        return self.live and self.gate(sale_id).winners_loaded

    # --- Decisions ------------------------------------------------------------------------

    def admit(
        self, sale_id: int, *, user_id: int, client_ip: str, winners_known: bool = True, now: float | None = None
    ) -> Verdict:
        """The local checks before the proof of work, in the funnel's order: a winner, the
        window, the sold-out marker, the per-user and per-IP windows. With ``winners_known``
        False (the subscription is not live) the winner is not looked up here: the caller
        asks Redis before it answers anything but GO_ON."""
        now = time.time() if now is None else now
        gate = self.gate(sale_id)
        with gate.lock:
            held = gate.winners.get(user_id) if winners_known else None
            if held is not None:
                return Verdict(Shed.WINNER, order_id=held)
            redis_now_ms = now * 1000 + gate.clock_offset_ms
            if gate.starts_at_ms and redis_now_ms < gate.starts_at_ms - WINDOW_MARGIN_MS:
                return Verdict(Shed.NOT_STARTED, retry_after_ms=int(gate.starts_at_ms - redis_now_ms))
            if gate.ends_at_ms and redis_now_ms >= gate.ends_at_ms + WINDOW_MARGIN_MS:
                return Verdict(Shed.ENDED)
            if gate.sold_out_at_ms is not None:
                return Verdict(Shed.SOLD_OUT)
            over = _over_windows(gate, user_id=user_id, client_ip=client_ip, now=now)
        return over or GO_ON

    def admit_crowd(self, sale_id: int, *, now: float | None = None) -> Verdict:
        """Stock-aware admission, after the proof of work (an attempt without one never
        counts): an interval lets ``ceil(k x R)`` attempts through to the script, R the
        stock left when it began (a unit coming back during it adds k more)."""
        now = time.time() if now is None else now
        gate = self.gate(sale_id)
        with gate.lock:
            if gate.crowd_factor <= 0 or gate.remaining is None or gate.remaining <= 0:
                return GO_ON  # Nothing left by what this process heard: the script says what is.
            interval_s = settings.FLASHSALE_CROWD_INTERVAL_MS / 1000
            interval = int(now / interval_s)
            if interval != gate.crowd_interval:
                gate.crowd_interval, gate.crowd_admitted = interval, 0
                gate.crowd_budget = math.ceil(gate.crowd_factor * max(0, gate.remaining))
            if gate.crowd_admitted >= gate.crowd_budget:
                return Verdict(Shed.CROWD, retry_after_ms=int(((interval + 1) * interval_s - now) * 1000) + 1)
            gate.crowd_admitted += 1
        return GO_ON

    def count_windows(self, sale_id: int, *, user_id: int, client_ip: str, now: float | None = None) -> Verdict:
        """Count a call in the per-user and per-IP windows (a challenge request: the same
        budget as purchases). GO_ON, or the window that is full."""
        gate = self.gate(sale_id)
        with gate.lock:
            over = _over_windows(gate, user_id=user_id, client_ip=client_ip, now=time.time() if now is None else now)
        return over or GO_ON

    def take_token(self, sale_id: int, *, now: float | None = None) -> Verdict | None:
        """A leased bucket token: GO_ON, a local 429 while the bucket is known to be empty,
        or None when a new lease is needed (``lease_batch`` says how many to ask for)."""
        now = time.monotonic() if now is None else now
        gate = self.gate(sale_id)
        with gate.lock:
            if gate.tokens > 0 and now < gate.tokens_until:
                gate.tokens -= 1
                return GO_ON
            if now < gate.empty_until:
                return Verdict(Shed.BUCKET, retry_after_ms=int((gate.empty_until - now) * 1000) + 1)
        return None

    def leased(self, sale_id: int, *, granted: int, retry_after_ms: int, now: float | None = None) -> Verdict:
        """A lease's answer: spend one of the granted tokens now, or remember the bucket is
        empty until a token is due."""
        now = time.monotonic() if now is None else now
        gate = self.gate(sale_id)
        with gate.lock:
            if granted >= 1:
                kept = gate.tokens if now < gate.tokens_until else 0
                gate.tokens = kept + granted - 1
                gate.tokens_until = now + LEASE_SECONDS
                gate.empty_until = 0.0
                return GO_ON
            gate.empty_until = now + retry_after_ms / 1000
            return Verdict(Shed.BUCKET, retry_after_ms=retry_after_ms)


def lease_batch(refill_per_second: int, capacity: int) -> int:
    """Tokens to ask for at once: about a twentieth of a second's refill, so a lease is a call
    per ~50 ms per busy process; one for a slow bucket, whose refusals are then answered
    locally until a token is due."""
    return max(1, min(LEASE_BATCH_MAX, capacity, math.ceil(refill_per_second / 20)))


def _heard_remaining(gate: SaleGate, remaining: int, at_ms: int) -> None:
    if at_ms >= gate.remaining_at_ms:
        if gate.remaining is not None and remaining > gate.remaining and gate.crowd_factor > 0:
            # Units came back: they may be won in this very interval.
            gate.crowd_budget += math.ceil(gate.crowd_factor * (remaining - gate.remaining))
        gate.remaining, gate.remaining_at_ms = remaining, at_ms


def _over_windows(gate: SaleGate, *, user_id: int, client_ip: str, now: float) -> Verdict | None:
    user_limit, ip_limit = settings.ANTIBOT_USER_LIMIT, settings.ANTIBOT_IP_LIMIT
    if user_limit <= 0 and (ip_limit <= 0 or not client_ip):
        return None
    window_s = settings.ANTIBOT_RATE_WINDOW_SECONDS
    number = int(now // window_s)
    if number != gate.window_number:
        gate.window_number = number
        gate.user_calls.clear()
        gate.ip_calls.clear()
    retry_after_ms = int(((number + 1) * window_s - now) * 1000) + 1
    if user_limit > 0:
        calls = gate.user_calls.get(user_id, 0) + 1
        gate.user_calls[user_id] = calls
        if calls > user_limit:
            return Verdict(Shed.USER, retry_after_ms=retry_after_ms)
    if ip_limit > 0 and client_ip:
        calls = gate.ip_calls.get(client_ip, 0) + 1
        gate.ip_calls[client_ip] = calls
        if calls > ip_limit:
            return Verdict(Shed.IP, retry_after_ms=retry_after_ms)
    return None


funnel = Funnel()
"""The process's gates, shared by every request thread."""
forgets_process_state(funnel.forget)
event_listener.listen(keys.EVENTS_CHANNEL, funnel.heard_event)
event_listener.on_lost(funnel.lost)
