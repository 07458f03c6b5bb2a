"""Rehearsing a sale: the stack's side (the stage). The crowd is ``operations.crowd``; what
drives both, from the admin or ``manage.py flashsale rehearse``, is ``operations.rehearsing``.

A rehearsal of sale S:

1. ``rehearsal_begin``: refused while S is live or within ``QUIET_BEFORE_SECONDS`` of its
   start, and while another rehearsal of S holds the lock (``keys.rehearsal_lock_key``, Redis
   ``SET NX``). It makes a shadow sale: a ``FlashSale`` with S's product, price and
   admission settings (window length, proof of work, bucket, crowd factor, mode and line)
   and a stock of its own, ``rehearsal_of`` S, starting far enough ahead for the crowd to
   prepare; and the shoppers for it (``accounts.services.shoppers_create``), with tokens.
   Nothing of S is touched: its stock, buyers and orders live under its own keys and rows.
2. ``rehearsal_open``: the shadow sale's start moved to a few seconds from now.
3. ``rehearsal_finish``: with what the crowd heard, waits for the workers to store every won
   order, checks I1-I4 on the shadow sale, writes the report on the rehearsal's row (kept
   with S) and cleans up: the shopper's tokens revoked, the shadow's orders, shoppers, row
   and Redis keys deleted, the lock released. ``rehearsal_abort`` cleans up without a report.

Shadow orders are kept out of order lists, exports and emails (``orders``), and shadow sales
out of the storefront (``sales.selectors``).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from accounts.revocation import user_tokens_revoke
from accounts.services import shoppers_create
from accounts.tokens import access_token_issue
from core.errors import ApplicationError, NotFound
from core.redis_store import inventory_redis
from orders.drain import sale_backlog
from orders.models import Order
from orders.reconciliation import sale_reconcile
from orders.services import sale_orders_delete
from salelog.services import sale_log_delete
from sales import inventory, keys
from sales.latency import quantile_ms
from sales.models import Admission, FlashSale, RehearsalStatus, SaleRehearsal
from sales.services import sale_shadow_create, sale_shadow_delete, sale_shadow_move
from sales.warming import sale_warm

from .verdicts import Measured, Targets, verdicts

logger = logging.getLogger(__name__)

QUIET_BEFORE_SECONDS = 3600
"""No rehearsal from this long before a sale's start until its end."""
PREPARE_SECONDS = 30 * 60
"""The shadow sale's start while its crowd gets ready (moved nearer by ``rehearsal_open``)."""
OPEN_LEAD_SECONDS = 3.0
"""How soon after ``rehearsal_open`` the shadow sale starts: every process hears the move first."""
LOCK_SECONDS = 30 * 60
"""A rehearsal that never finished frees its sale after this long."""
MAX_SHOPPERS = 20_000
MAX_ATTEMPTS = 20
DRAIN_WAIT_SECONDS = 60.0
COUNTS_WAIT_SECONDS = 5.0
SHOPPER_EMAIL_DOMAIN = "rehearsal.invalid"
TRANSPORTS = ("http", "tcp")


class RehearsalRefused(ApplicationError):
    code = "REHEARSAL_REFUSED"
    default_detail = "This sale cannot be rehearsed now."


class RehearsalRunning(ApplicationError):
    code = "REHEARSAL_RUNNING"
    default_detail = "A rehearsal of this sale is running; one at a time."


class RehearsalNotFound(NotFound):
    default_detail = "There is no such rehearsal, or it is over."


@dataclass(frozen=True)
class Stage:
    """What a crowd needs to rehearse: the shadow sale and the shoppers made for it."""

    rehearsal_id: int
    sale_id: int
    shadow_sale_id: int
    shoppers: list[tuple[int, str]]
    attempts: int
    stock: int
    pow_difficulty: int
    queued: bool
    transport: str

    def as_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["shoppers"] = [{"id": user_id, "token": token} for user_id, token in self.shoppers]
        return body


@dataclass(frozen=True)
class Opened:
    starts_at_ms: int
    ends_at_ms: int
    server_now_ms: int

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def rehearsal_refusal(sale: FlashSale, *, now: datetime) -> str | None:
    """Why ``sale`` cannot be rehearsed at ``now`` (None: it can)."""
    if sale.is_shadow:
        return "A shadow sale is not rehearsed; rehearse the sale it shadows."
    if sale.starts_at - timedelta(seconds=QUIET_BEFORE_SECONDS) <= now < sale.ends_at:
        if now >= sale.starts_at:
            return f"Sale {sale.pk} is live; a rehearsal waits until it ends."
        return f"Sale {sale.pk} starts within the hour; no rehearsal in the hour before a sale."
    return None


def _lock_take(sale_id: int, rehearsal_id: int) -> bool:
    return bool(inventory_redis().set(keys.rehearsal_lock_key(sale_id), rehearsal_id, nx=True, ex=LOCK_SECONDS))


def _lock_release(sale_id: int, rehearsal_id: int) -> None:
    """Release the sale's lock if this rehearsal still holds it."""
    key = keys.rehearsal_lock_key(sale_id)
    with inventory_redis().pipeline() as pipe:
        pipe.watch(key)
        if pipe.get(key) == str(rehearsal_id):
            pipe.multi()
            pipe.delete(key)
            pipe.execute()


def rehearsal_lock_holder(sale_id: int) -> int | None:
    held = inventory_redis().get(keys.rehearsal_lock_key(sale_id))
    return int(held) if held else None


def rehearsal_begin(
    *,
    sale: FlashSale,
    shoppers: int,
    attempts: int,
    stock: int | None = None,
    targets: Targets | None = None,
    transport: str = "http",
    requested_by_id: int | None = None,
) -> Stage:
    """Set a rehearsal of ``sale`` up (module docstring, step 1). Raises ``RehearsalRefused``
    (the sale is live or starts within the hour, bounds) and ``RehearsalRunning``."""
    if not 1 <= shoppers <= MAX_SHOPPERS:
        raise RehearsalRefused(f"A rehearsal has 1 to {MAX_SHOPPERS:,} shoppers.")
    if not 1 <= attempts <= MAX_ATTEMPTS:
        raise RehearsalRefused(f"Each shopper makes 1 to {MAX_ATTEMPTS} attempts.")
    if stock is not None and stock < 1:
        raise RehearsalRefused("The shadow sale needs at least one unit.")
    if transport not in TRANSPORTS:
        raise RehearsalRefused(f"A rehearsal's crowd comes over {' or '.join(TRANSPORTS)}.")
    why = rehearsal_refusal(sale, now=timezone.now())
    if why:
        raise RehearsalRefused(why)
    rehearsal = SaleRehearsal.objects.create(
        sale=sale,
        requested_by_id=requested_by_id,
        shoppers=shoppers,
        attempts=attempts,
        stock=stock or sale.total_stock,
        transport=transport,
        targets=(targets or Targets()).as_json(),
    )
    if not _lock_take(sale.pk, rehearsal.pk):
        rehearsal.delete()
        raise RehearsalRunning(f"Rehearsal {rehearsal_lock_holder(sale.pk)} of sale {sale.pk} is running.")
    try:
        _abandoned_cleanup(sale)
        shadow = sale_shadow_create(
            sale=sale, stock=rehearsal.stock, starts_at=timezone.now() + timedelta(seconds=PREPARE_SECONDS)
        )
        sale_warm(sale=shadow)
        prefix = f"rehearsal-{rehearsal.pk}-{secrets.token_hex(3)}"
        issued = shoppers_create(count=shoppers, prefix=prefix, email_domain=SHOPPER_EMAIL_DOMAIN)
        ids = [one.user_id for one in issued]
        rehearsal.shadow_sale_id = shadow.pk
        rehearsal.stage = {"prefix": prefix, "first_user_id": min(ids), "last_user_id": max(ids)}
        rehearsal.save(update_fields=["shadow_sale_id", "stage"])
    except BaseException:
        _rehearsal_end(rehearsal, status=RehearsalStatus.ABORTED, report={"problems": ["could not be set up"]})
        raise
    logger.info("rehearsal %s of sale %s: shadow sale %s, %s shoppers", rehearsal.pk, sale.pk, shadow.pk, shoppers)
    return _stage(rehearsal, shadow, [(one.user_id, one.token) for one in issued])


def _stage(rehearsal: SaleRehearsal, shadow: FlashSale, shoppers: list[tuple[int, str]]) -> Stage:
    return Stage(
        rehearsal_id=rehearsal.pk,
        sale_id=rehearsal.sale_id,
        shadow_sale_id=shadow.pk,
        shoppers=shoppers,
        attempts=rehearsal.attempts,
        stock=rehearsal.stock,
        pow_difficulty=shadow.pow_difficulty,
        queued=shadow.admission == Admission.QUEUE,
        transport=rehearsal.transport,
    )


def _shoppers_of(rehearsal: SaleRehearsal) -> Any:
    """The rehearsal's own shoppers: its name prefix and id range, both."""
    stage = rehearsal.stage
    if not stage.get("prefix"):
        return get_user_model().objects.none()
    return get_user_model().objects.filter(
        username__startswith=f"{stage['prefix']}-",
        email__endswith=f"@{SHOPPER_EMAIL_DOMAIN}",
        pk__gte=stage["first_user_id"],
        pk__lte=stage["last_user_id"],
    )


def rehearsal_stage_again(*, rehearsal: SaleRehearsal) -> Stage:
    """The stage of a running rehearsal, with fresh tokens for its shoppers (its crowd runs
    in another process than the one that set it up: a Celery worker)."""
    shadow = _running_shadow(rehearsal)
    user_ids = list(_shoppers_of(rehearsal).order_by("pk").values_list("pk", flat=True))
    return _stage(rehearsal, shadow, [(user_id, access_token_issue(user_id=user_id).token) for user_id in user_ids])


def rehearsal_running(rehearsal_id: int) -> SaleRehearsal:
    rehearsal = SaleRehearsal.objects.select_related("sale").filter(pk=rehearsal_id).first()
    if rehearsal is None or rehearsal.status != RehearsalStatus.RUNNING:
        raise RehearsalNotFound()
    return rehearsal


def _running_shadow(rehearsal: SaleRehearsal) -> FlashSale:
    if rehearsal.status != RehearsalStatus.RUNNING or rehearsal.shadow_sale_id is None:
        raise RehearsalNotFound()
    shadow = FlashSale.objects.select_related("product").filter(pk=rehearsal.shadow_sale_id).first()
    if shadow is None:
        raise RehearsalNotFound()
    return shadow


def rehearsal_open(*, rehearsal: SaleRehearsal) -> Opened:
    """Start the shadow sale ``OPEN_LEAD_SECONDS`` from now (module docstring, step 2)."""
    shadow = _running_shadow(rehearsal)
    shadow = sale_shadow_move(shadow=shadow, starts_at=timezone.now() + timedelta(seconds=OPEN_LEAD_SECONDS))
    meta = inventory.sale_meta(shadow.pk)
    assert meta is not None
    return Opened(starts_at_ms=meta.starts_at_ms, ends_at_ms=meta.ends_at_ms, server_now_ms=inventory.redis_now_ms())


def _stream_entries(sale_id: int) -> list[dict[str, str]]:
    client = inventory_redis()
    entries: list[dict[str, str]] = []
    start = "-"
    while True:
        batch = cast(
            list[tuple[str, dict[str, str]]],
            client.xrange(keys.orders_stream_key(sale_id), min=start, max="+", count=5000),
        )
        if not batch:
            return entries
        entries.extend(fields for _, fields in batch)
        millis, _, sequence = batch[-1][0].partition("-")
        start = f"{millis}-{int(sequence) + 1}"


def _counts_flushed(sale_id: int, *, answered: int) -> dict[str, int]:
    """The shadow's funnel once every process flushed what the crowd made it count (they
    flush once a second), or as it stands after ``COUNTS_WAIT_SECONDS``."""
    deadline = time.monotonic() + COUNTS_WAIT_SECONDS
    while True:
        stats = inventory.sale_stats(sale_id)
        if sum(count for name, count in stats.items() if name.startswith("answer:")) >= answered:
            return stats
        if time.monotonic() > deadline:
            return stats
        time.sleep(0.1)


def _drained(sale_id: int, buyers: int) -> bool:
    return sale_backlog(sale_id) == 0 and Order.objects.filter(sale_id=sale_id).count() >= buyers


def rehearsal_finish(*, rehearsal: SaleRehearsal, crowd: dict[str, Any]) -> SaleRehearsal:
    """Judge the rehearsal from the shadow sale and what the crowd heard, keep the report
    and clean up (module docstring, step 3). ``crowd`` is ``CrowdFigures.as_json()``."""
    shadow = _running_shadow(rehearsal)
    meta = inventory.sale_meta(shadow.pk)
    assert meta is not None
    answers = Counter({str(name): int(count) for name, count in (crowd.get("answers") or {}).items()})
    stats = _counts_flushed(shadow.pk, answered=sum(count for name, count in answers.items() if name != "ERROR"))

    counts = inventory.sale_counts(shadow.pk)
    drain_started = time.monotonic()
    while not _drained(shadow.pk, counts.buyers) and time.monotonic() - drain_started < DRAIN_WAIT_SECONDS:
        time.sleep(0.1)
    drained_by_workers = _drained(shadow.pk, counts.buyers)
    drained_at_ms = inventory.redis_now_ms()
    problems: list[str] = []
    if not drained_by_workers:
        problems.append(f"the workers had not stored every won order {DRAIN_WAIT_SECONDS:.0f} s after the crowd")
        sale_reconcile(sale_id=shadow.pk, repair=False, drain=True)  # To judge I2 and clean up.

    entries = _stream_entries(shadow.pk)
    times = [int(entry.get("ts", 0)) for entry in entries]
    users = Counter(entry.get("user_id", "") for entry in entries)
    reconciled = sale_reconcile(sale_id=shadow.pk, repair=False, full=True, drain=False)
    wins_heard = answers.get("SUCCESS", 0)
    invariants = {
        "I1": counts.stock_consistent and reconciled.i1_holds,
        "I2": reconciled.i2_holds is True and reconciled.orders == reconciled.buyers,
        "I3": all(count == 1 for count in users.values()) and wins_heard <= reconciled.buyers,
        "I4": all(meta.starts_at_ms <= ts < meta.ends_at_ms for ts in times),
    }
    problems += reconciled.unexplained
    if not invariants["I1"]:
        problems.append(f"I1: remaining {counts.remaining} + buyers {counts.buyers} != total {counts.total}")
    if not invariants["I3"]:
        problems.append(f"I3: {sum(1 for c in users.values() if c > 1)} shoppers twice in the stream, "
                        f"{wins_heard} wins heard for {reconciled.buyers} buyers")  # fmt: skip
    if not invariants["I4"]:
        problems.append("I4: a unit was sold outside the window")

    sold_out = counts.remaining == 0
    sell_out_seconds = round((max(times) - meta.starts_at_ms) / 1000, 3) if sold_out and times else None
    drain_seconds = round(max(0, drained_at_ms - max(times)) / 1000, 3) if times and drained_by_workers else None
    if not times and drained_by_workers:
        drain_seconds = 0.0
    latency = crowd.get("latency_ms") or {}
    errors = sum(int(count) for count in (crowd.get("errors") or {}).values())
    targets = Targets.from_json(rehearsal.targets)
    judged = verdicts(targets, Measured(p99_ms=latency.get("p99"), sell_out_seconds=sell_out_seconds, errors=errors))
    server_latency = {
        name: int(count)
        for name, count in cast(dict[str, str], inventory_redis().hgetall(keys.latency_key(shadow.pk))).items()
    }
    passed = all(invariants.values()) and all(verdict.met for verdict in judged) and drained_by_workers
    report = {
        "rehearsal_id": rehearsal.pk,
        "sale_id": rehearsal.sale_id,
        "shadow_sale_id": shadow.pk,
        "passed": passed,
        "invariants": invariants,
        "problems": problems,
        "answers": dict(answers),
        "rate_limited": crowd.get("rate_limited") or {},
        "pow_refused": crowd.get("pow_refused") or {},
        "p50_ms": latency.get("p50"),
        "p99_ms": latency.get("p99"),
        "max_ms": latency.get("max"),
        "server_p50_ms": _rounded(quantile_ms(server_latency, 0.5)),
        "server_p99_ms": _rounded(quantile_ms(server_latency, 0.99)),
        "funnel": {
            "arrived": stats.get("arrived", 0),
            "shed": _prefixed(stats, "shed:"),
            "to_redis": stats.get("script", 0),
            "answered": _prefixed(stats, "answer:"),
        },
        "stock": counts.total,
        "sold": counts.buyers,
        "sold_out": sold_out,
        "sell_out_seconds": sell_out_seconds,
        "drain_seconds": drain_seconds,
        "orders_stored": reconciled.orders,
        "errors": errors,
        "error_kinds": crowd.get("errors") or {},
        "error_samples": (crowd.get("error_samples") or [])[:10],
        "targets": targets.as_json(),
        "verdicts": [verdict.as_json() for verdict in judged],
        "shoppers": rehearsal.shoppers,
        "attempts": rehearsal.attempts,
        "transport": rehearsal.transport,
        "admission": {
            "mode": shadow.admission,
            "window_seconds": (shadow.ends_at - shadow.starts_at).total_seconds(),
            "pow_difficulty": shadow.pow_difficulty,
            "bucket_capacity": shadow.bucket_capacity,
            "bucket_refill_per_second": shadow.bucket_refill_per_second,
            "crowd_factor": float(shadow.crowd_factor),
            "serving_rate": shadow.serving_rate,
        },
        "crowd": {
            "seconds": crowd.get("seconds"),
            "challenges": crowd.get("challenges"),
            "proofs_solved": crowd.get("proofs_solved"),
            "joins": crowd.get("joins") or {},
            "first_win_ms": crowd.get("first_win_ms"),
            "last_win_ms": crowd.get("last_win_ms"),
            "sold_out_seen_at_ms": crowd.get("sold_out_seen_at_ms"),
        },
    }
    status = RehearsalStatus.PASSED if passed else RehearsalStatus.FAILED
    return _rehearsal_end(rehearsal, status=status, report=report)


def _prefixed(stats: dict[str, int], prefix: str) -> dict[str, int]:
    return {name.removeprefix(prefix): count for name, count in sorted(stats.items()) if name.startswith(prefix)}


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def rehearsal_abort(*, rehearsal: SaleRehearsal, reason: str) -> SaleRehearsal:
    """Stop a running rehearsal without a verdict, and clean up."""
    if rehearsal.status != RehearsalStatus.RUNNING:
        raise RehearsalNotFound()
    return _rehearsal_end(rehearsal, status=RehearsalStatus.ABORTED, report={"passed": False, "problems": [reason]})


def _rehearsal_end(rehearsal: SaleRehearsal, *, status: str, report: dict[str, Any]) -> SaleRehearsal:
    """Keep the report, then clean up; the lock goes last, so no other rehearsal of the sale
    starts while this one's shadow still exists."""
    finished = timezone.now()
    report = {**report, "started_at": rehearsal.started_at.isoformat(), "finished_at": finished.isoformat()}
    SaleRehearsal.objects.filter(pk=rehearsal.pk).update(status=status, report=report, finished_at=finished)
    rehearsal.status, rehearsal.report, rehearsal.finished_at = status, report, finished
    try:
        _cleanup(rehearsal)
    finally:
        _lock_release(rehearsal.sale_id, rehearsal.pk)
    return rehearsal


def _cleanup(rehearsal: SaleRehearsal) -> None:
    """Everything the rehearsal made, gone: the shoppers' tokens refused everywhere first
    (a token is checked without the database), then the orders, the shoppers, the shadow
    sale's row and its Redis keys. Idempotent."""
    shoppers = _shoppers_of(rehearsal)
    for user_id in shoppers.values_list("pk", flat=True):
        user_tokens_revoke(user_id=user_id)
    shadow = (
        FlashSale.objects.filter(pk=rehearsal.shadow_sale_id, rehearsal_of_id=rehearsal.sale_id).first()
        if rehearsal.shadow_sale_id is not None
        else None
    )
    with transaction.atomic():
        if shadow is not None:
            sale_orders_delete(sale=shadow)
            # The log builder leaves shadow sales alone; rows of one are a builder's pass that
            # overlapped the rehearsal's start, and must go before the sale can.
            sale_log_delete(sale_id=shadow.pk)
        shoppers.delete()
    if shadow is not None:
        sale_shadow_delete(shadow=shadow)


ABANDONED = {"passed": False, "problems": ["abandoned: its process stopped before the end; cleaned up after it"]}


def _abandoned_cleanup(sale: FlashSale) -> None:
    """Shadows of ``sale`` left by rehearsals that stopped without cleaning up (their
    process died): called holding the sale's lock, so none of them is running."""
    for left in SaleRehearsal.objects.filter(sale=sale, status=RehearsalStatus.RUNNING, shadow_sale_id__isnull=False):
        logger.warning("rehearsal %s of sale %s was abandoned; cleaning up after it", left.pk, sale.pk)
        _rehearsal_end(left, status=RehearsalStatus.ABORTED, report=ABANDONED)


def rehearsals_sweep() -> int:
    """Abort running rehearsals that no longer hold their sale's lock (it expired: their
    process is gone). Returns how many (beat's tick)."""
    swept = 0
    # A rehearsal only just created may not hold its lock yet (rehearsal_begin takes it next).
    settled = timezone.now() - timedelta(minutes=2)
    for rehearsal in SaleRehearsal.objects.filter(status=RehearsalStatus.RUNNING, started_at__lt=settled):
        if rehearsal_lock_holder(rehearsal.sale_id) != rehearsal.pk and _lock_take(rehearsal.sale_id, rehearsal.pk):
            _rehearsal_end(rehearsal, status=RehearsalStatus.ABORTED, report=ABANDONED)
            swept += 1
    return swept
