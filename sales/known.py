"""What this process believes about each sale right now: one model of a sale per process.

Every part of a process that needs a sale's state reads it here: the purchase path and its
funnel, the TCP door's sale status, the ws process's rooms. A ``KnownSale`` holds:

- the sale's meta as loaded in Redis (the window, the stock plan, the admission plan), read
  again at most every ``FLASHSALE_META_LOCAL_SECONDS`` (one call, which also brings the stock
  and the Redis clock), and at once after an operator changed the sale;
- its ``SaleSnapshot`` (``sales.funnel``): the window, the stock and when it was heard, the
  sold-out marker, whether the winners are complete, the admission plan. The snapshot is
  immutable and replaced whole, so a request reads it with no lock;
- the winners (user -> order id);
- the admission counters the funnel's rules keep: crowd admission's, the leased bucket
  tokens, the per-user and per-IP windows;
- watchers told when the stock or the window changed (the ws process's rooms).

``KnownSales`` is the process's table of them, with the process's one ``RedisClock``. It is
fed by the process's one subscription (``core.events``): purchase and stock-return events,
and the sale updates operators make; when the subscription is lost, what the events kept
current is dropped, and when it comes back the watched sales are read again.

Reading a ``KnownSale`` never starts a thread and never calls Redis; the steps that read Redis
(``load_steps``) are driven by the caller, on a blocking or an asyncio client.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any, Protocol

from django.conf import settings

from core.clock import RedisClock
from core.events import subscription
from core.process_state import forgets_process_state
from core.steps import Steps

from . import funnel, inventory, keys
from .funnel import AdmissionPlan, CrowdCount, LeaseHeld, SaleSnapshot, Shed, Verdict
from .inventory import SaleMeta
from .line import LineState


class SaleWatcher(Protocol):
    """Told, on whichever thread heard it, when a watched sale changed."""

    def stock_changed(self, remaining: int) -> None: ...

    def window_changed(self) -> None: ...

    def meta_stale(self) -> None: ...


def admission_plan(meta: SaleMeta) -> AdmissionPlan:
    """The sale's admission plan: its meta's settings and this process's limits."""
    return AdmissionPlan(
        pow_difficulty=meta.pow_difficulty,
        crowd_factor=meta.crowd_factor,
        crowd_interval_ms=settings.FLASHSALE_CROWD_INTERVAL_MS,
        bucket_capacity=meta.bucket_capacity,
        bucket_refill_per_second=meta.bucket_refill_per_second,
        user_limit=settings.ANTIBOT_USER_LIMIT,
        ip_limit=settings.ANTIBOT_IP_LIMIT,
        rate_window_seconds=settings.ANTIBOT_RATE_WINDOW_SECONDS,
        queued=meta.queued,
        serving_rate=meta.serving_rate,
        shuffle_pre_queue=meta.shuffle_pre_queue,
        turn_seconds=settings.FLASHSALE_QUEUE_TURN_SECONDS,
    )


class KnownSale:
    """One sale as this process knows it. ``snapshot`` and ``meta`` are read without a lock;
    every write and every admission counter is under ``lock``."""

    __slots__ = (
        "_crowd",
        "_ip_calls",
        "_lease",
        "_user_calls",
        "_window_number",
        "lock",
        "meta",
        "meta_until",
        "read_at_ms",
        "sale_id",
        "snapshot",
        "watchers",
        "winners",
    )

    def __init__(self, sale_id: int) -> None:
        self.sale_id = sale_id
        self.lock = threading.Lock()
        self.meta: SaleMeta | None = None
        self.meta_until = 0.0  # monotonic: the meta is read again after this
        self.read_at_ms = -1  # the Redis clock when the meta was last read from Redis
        self.snapshot = SaleSnapshot(sale_id)
        self.winners: dict[int, str] = {}
        self.watchers: list[SaleWatcher] = []
        self._crowd = CrowdCount()
        self._lease = LeaseHeld()
        self._window_number = -1
        self._user_calls: dict[int, int] = {}
        self._ip_calls: dict[str, int] = {}

    @property
    def fresh(self) -> bool:
        """The meta was read recently enough to answer from."""
        return self.meta is not None and time.monotonic() < self.meta_until

    # --- Decisions, applied -------------------------------------------------------------

    def admit(self, *, user_id: int, client_ip: str, live: bool, redis_now_ms: float, now: float) -> Verdict:
        """The local checks before the proof of work: a winner (looked up only when the
        winners can be trusted: ``live`` and complete), the window, the sold-out marker (only
        while ``live``), then the per-user and per-IP windows."""
        snapshot = self.snapshot
        trusted = live and snapshot.winners_complete
        verdict = funnel.judge(snapshot, redis_now_ms=redis_now_ms, held=self.winners.get(user_id) if trusted else None)
        if verdict.shed is not None:
            return verdict
        return self.count_windows(user_id=user_id, client_ip=client_ip, now=now)

    def count_windows(self, *, user_id: int, client_ip: str, now: float) -> Verdict:
        """Count a call in the per-user and per-IP windows (purchases and challenge requests
        share one budget). GO_ON, or the window that is full."""
        plan = self.snapshot.plan
        if plan.user_limit <= 0 and (plan.ip_limit <= 0 or not client_ip):
            return funnel.GO_ON
        window_seconds = plan.rate_window_seconds
        with self.lock:
            number = int(now // window_seconds)
            if number != self._window_number:
                self._window_number = number
                self._user_calls.clear()
                self._ip_calls.clear()
            if plan.user_limit > 0:
                calls = self._user_calls.get(user_id, 0) + 1
                self._user_calls[user_id] = calls
                over = funnel.window_over(
                    calls, limit=plan.user_limit, shed=Shed.USER, now=now, window_seconds=window_seconds
                )
                if over is not None:
                    return over
            if plan.ip_limit > 0 and client_ip:
                calls = self._ip_calls.get(client_ip, 0) + 1
                self._ip_calls[client_ip] = calls
                over = funnel.window_over(
                    calls, limit=plan.ip_limit, shed=Shed.IP, now=now, window_seconds=window_seconds
                )
                if over is not None:
                    return over
        return funnel.GO_ON

    def refused_before_proof(self, *, now: float, monotonic: float, crowd: bool) -> Verdict | None:
        """The 429 an attempt would hear after its proof of work whatever the proof: the
        crowd's interval spent (``crowd``: when crowd admission applies) or the bucket known
        empty. Nothing is counted or spent; None to go on to the proof."""
        with self.lock:
            spent = funnel.crowd_spent(self._crowd, snapshot=self.snapshot, now=now) if crowd else None
            return spent or funnel.lease_empty(self._lease, now=monotonic)

    def admit_crowd(self, *, now: float) -> Verdict:
        with self.lock:
            verdict, self._crowd = funnel.crowd_admit(self._crowd, snapshot=self.snapshot, now=now)
        return verdict

    def take_token(self, *, now: float) -> Verdict | None:
        with self.lock:
            verdict, self._lease = funnel.lease_take(self._lease, now=now)
        return verdict

    def leased(self, *, granted: int, retry_after_ms: int, now: float) -> Verdict:
        with self.lock:
            verdict, self._lease = funnel.lease_granted(
                self._lease, granted=granted, retry_after_ms=retry_after_ms, now=now
            )
        return verdict

    # --- What the process hears ---------------------------------------------------------

    def _replace(self, snapshot: SaleSnapshot) -> None:
        """Under ``lock``: the new snapshot; units that came back widen crowd admission."""
        before = self.snapshot.remaining
        after = snapshot.remaining
        if before is not None and after is not None and after > before:
            self._crowd = funnel.crowd_units_back(
                self._crowd, units=after - before, crowd_factor=snapshot.plan.crowd_factor
            )
        self.snapshot = snapshot

    def heard_meta(self, meta: SaleMeta, *, remaining: int, at_ms: int, line: LineState | None = None) -> None:
        """The meta as Redis holds it (or as PostgreSQL does, for a sale just loaded), the
        stock as of ``at_ms`` (-1: not read) and, for a queue-mode sale, its line."""
        with self.lock:
            previous = self.meta
            self.meta = meta
            self.meta_until = time.monotonic() + settings.FLASHSALE_META_LOCAL_SECONDS
            if at_ms >= 0:
                self.read_at_ms = at_ms
            snapshot = dataclasses.replace(
                self.snapshot,
                starts_at_ms=meta.starts_at_ms,
                ends_at_ms=meta.ends_at_ms,
                total=meta.total,
                plan=admission_plan(meta),
            )
            if remaining >= 0:
                snapshot = funnel.stock_heard(snapshot, remaining=remaining, at_ms=at_ms)
            if line is not None:
                snapshot = funnel.line_heard(snapshot, state=line)
            self._replace(snapshot)
            watchers = tuple(self.watchers)
        moved = previous is None or (previous.starts_at_ms, previous.ends_at_ms, previous.total) != (
            meta.starts_at_ms,
            meta.ends_at_ms,
            meta.total,
        )
        if moved:
            for watcher in watchers:
                watcher.window_changed()
        self._tell_stock()

    def _tell_stock(self) -> None:
        """Tell the watchers the stock as now known (each keeps what it last passed on, and
        drops a count it already has)."""
        remaining = self.snapshot.remaining
        if remaining is None or not self.watchers:
            return
        for watcher in tuple(self.watchers):
            watcher.stock_changed(remaining)

    def heard_event(self, *, buyer: int, order_id: str, remaining: int, at_ms: int) -> None:
        """A win or a unit coming back (``order_id`` on both: the buyer keeps hearing it)."""
        with self.lock:
            if order_id:
                self.winners[buyer] = order_id
            self._replace(funnel.event_heard(self.snapshot, remaining=remaining, at_ms=at_ms))
        self._tell_stock()

    def heard_answer(self, *, status: str, user_id: int, order_id: str, remaining: int, at_ms: int, live: bool) -> None:
        """What the script answered this process: a winner, the stock, a sell-out."""
        with self.lock:
            if status in ("SUCCESS", "ALREADY_PURCHASED") and order_id:
                self.winners[user_id] = order_id
            sold_out = status == "SOLD_OUT" or (status == "SUCCESS" and remaining == 0)
            self._replace(
                funnel.answer_heard(self.snapshot, sold_out=sold_out, remaining=remaining, at_ms=at_ms, live=live)
            )
        self._tell_stock()

    def heard_line(self, state: LineState) -> None:
        """The line as a join or a purchase found it in Redis."""
        with self.lock:
            self.snapshot = funnel.line_heard(self.snapshot, state=state)

    def heard_holders(self, holders: dict[int, str]) -> None:
        """Every buyer of the sale, from Redis: the winners table is complete from now on."""
        with self.lock:
            holders.update(self.winners)  # Wins heard meanwhile are newer.
            self.winners = holders
            self.snapshot = dataclasses.replace(self.snapshot, winners_complete=True)

    def meta_stale(self) -> None:
        """An operator moved the window or the plan: stop judging the window here and read
        the meta again on the next use."""
        with self.lock:
            self.meta_until = 0.0
            self.snapshot = dataclasses.replace(self.snapshot, starts_at_ms=0, ends_at_ms=0)
            watchers = tuple(self.watchers)
        for watcher in watchers:
            watcher.meta_stale()

    def unloaded(self) -> None:
        """Redis no longer holds the sale (a reset): nothing known of it stands."""
        with self.lock:
            self.meta = None
            self.meta_until = 0.0
            self.winners = {}
            self.snapshot = SaleSnapshot(self.sale_id)

    def lost(self) -> None:
        with self.lock:
            self.snapshot = funnel.subscription_lost(self.snapshot)


class KnownSales:
    """The process's sales and its clock, fed by the process's subscription."""

    def __init__(self) -> None:
        self.clock = RedisClock()
        self._sales: dict[int, KnownSale] = {}
        self._lock = threading.Lock()

    def find(self, sale_id: int) -> KnownSale | None:
        return self._sales.get(sale_id)

    def _sale(self, sale_id: int) -> KnownSale:
        found = self._sales.get(sale_id)
        if found is None:
            with self._lock:
                found = self._sales.setdefault(sale_id, KnownSale(sale_id))
        return found

    def sold_out(self, sale_id: int) -> bool:
        """This process has the sale marked sold out (it answers SOLD_OUT itself)."""
        known = self.find(sale_id)
        return known is not None and known.snapshot.sold_out

    def all(self) -> list[KnownSale]:
        with self._lock:
            return list(self._sales.values())

    def load_steps(self, sale_id: int) -> Steps[KnownSale | None]:
        """Read the sale from Redis now (``lua/sale_state.lua``: the meta, the stock and the
        Redis clock in one round trip) into its model. None when Redis does not hold it."""
        asked_at = time.time()
        raw_meta, remaining, redis_now_ms, raw_line = yield inventory.sale_state_call(sale_id)
        self.clock.heard(redis_ms=int(redis_now_ms), asked_at=asked_at, answered_at=time.time())
        if not raw_meta:
            known = self.find(sale_id)
            if known is not None:
                known.unloaded()
            return None
        meta = SaleMeta.from_hash(dict(zip(raw_meta[::2], raw_meta[1::2], strict=True)))
        sale = self._sale(sale_id)
        line = inventory.line_state_from_reply(raw_line) if meta.queued else None
        sale.heard_meta(meta, remaining=int(remaining), at_ms=int(redis_now_ms), line=line)
        return sale

    def heard_meta(self, meta: SaleMeta) -> KnownSale:
        """A sale's meta from elsewhere than Redis (PostgreSQL, for a sale just loaded)."""
        sale = self._sale(meta.sale_id)
        sale.heard_meta(meta, remaining=-1, at_ms=-1)
        return sale

    def clock_steps(self) -> Steps[None]:
        """Three ``TIME`` round trips, each a sample for the clock (which keeps the fastest)."""
        for _ in range(3):
            asked_at = time.time()
            seconds, microseconds = yield inventory.redis_time_call()
            self.clock.heard(
                redis_ms=int(seconds) * 1000 + int(microseconds) / 1000, asked_at=asked_at, answered_at=time.time()
            )

    # --- Watchers -----------------------------------------------------------------------

    def watch(self, sale: KnownSale, watcher: SaleWatcher) -> None:
        with sale.lock:
            sale.watchers.append(watcher)

    def unwatch(self, sale: KnownSale, watcher: SaleWatcher) -> None:
        with sale.lock:
            if watcher in sale.watchers:
                sale.watchers.remove(watcher)

    # --- What the subscription hands in -------------------------------------------------

    def heard_event(self, event: dict[str, Any]) -> None:
        """A purchase or stock-return event: ``{"sale_id","buyer","remaining","timestamp",
        "order_id", "product_id"}``."""
        try:
            sale_id = int(event["sale_id"])
            remaining = int(event["remaining"])
            at_ms = int(event["timestamp"])
            buyer = int(event["buyer"])
        except (KeyError, TypeError, ValueError):
            return
        order_id = event.get("order_id")
        self._sale(sale_id).heard_event(
            buyer=buyer, order_id=order_id if isinstance(order_id, str) else "", remaining=remaining, at_ms=at_ms
        )

    def heard_update(self, event: dict[str, Any]) -> None:
        """An operator moved a sale's window or plan (``warming.sale_warm`` publishes it)."""
        try:
            sale_id = int(event["sale_id"])
        except (KeyError, TypeError, ValueError):
            return
        known = self.find(sale_id)
        if known is not None:
            known.meta_stale()

    def lost(self) -> None:
        for sale in self.all():
            sale.lost()

    def live_steps(self) -> Steps[None] | None:
        """Read back every watched sale: what was published before the subscription went
        live is in Redis."""
        watched = [sale.sale_id for sale in self.all() if sale.watchers]
        if not watched:
            return None
        return self._reload_steps(watched)

    def _reload_steps(self, sale_ids: list[int]) -> Steps[None]:
        for sale_id in sale_ids:
            yield from self.load_steps(sale_id)

    def forget(self) -> None:
        with self._lock:
            self._sales.clear()
        self.clock.forget()


known_sales = KnownSales()
"""The process's model of every sale it has served."""
forgets_process_state(known_sales.forget)
subscription.listen(keys.EVENTS_CHANNEL, known_sales.heard_event)
subscription.listen(keys.SALE_UPDATES_CHANNEL, known_sales.heard_update)
subscription.on_lost(known_sales.lost)
subscription.on_live(known_sales.live_steps)
