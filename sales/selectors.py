"""Reads of the sales app. Sale rows are cached (the storefront polls them); the live stock
always comes from Redis."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db.models import QuerySet
from django.utils import timezone

from core.errors import NotFound
from core.process_state import forgets_process_state
from core.steps import DatabaseWork, Steps

from . import inventory
from .known import known_sales
from .models import MAX_SALE_ID, Admission, FlashSale, SaleStatus, sale_status

SALE_CACHE_SECONDS = 30


def sale_cache_key(sale_id: int) -> str:
    return f"sales:row:{int(sale_id)}"


@dataclass(frozen=True)
class SaleView:
    """A sale as the API and the storefront show it."""

    sale: FlashSale
    remaining_stock: int
    status: SaleStatus
    shuffle_commitment: str = ""
    """A shuffled pre-queue's: the SHA-256 of the seed, published before the line opens."""
    shuffle_seed: str = ""
    """... and the seed, revealed at the start (empty before)."""


def _view(sale: FlashSale, remaining: int | None, now: datetime) -> SaleView:
    # A sale not loaded into Redis yet has sold nothing.
    left = sale.total_stock if remaining is None else remaining
    commitment = seed = ""
    if sale.admission == Admission.QUEUE and sale.shuffle_pre_queue and sale.warmed_at is not None:
        meta = inventory.sale_meta(sale.pk)
        commitment = meta.shuffle_commitment if meta is not None else ""
        if now >= sale.starts_at:
            seed = inventory.line_state(sale.pk).get("seed", "")
    return SaleView(
        sale=sale,
        remaining_stock=left,
        status=sale.status_at(now, remaining_stock=left),
        shuffle_commitment=commitment,
        shuffle_seed=seed,
    )


def sales_visible(*, now: datetime | None = None) -> QuerySet[FlashSale]:
    """Sales a shopper may see: upcoming, live, and those ended within the watch period."""
    now = now or timezone.now()
    since = now - timedelta(seconds=settings.FLASHSALE_WATCH_AFTER_END_SECONDS)
    return FlashSale.objects.real().select_related("product").filter(ends_at__gt=since).order_by("starts_at", "id")


def sale_list(*, now: datetime | None = None) -> list[SaleView]:
    now = now or timezone.now()
    sales = list(sales_visible(now=now))
    remaining = inventory.remaining_stock_many([sale.pk for sale in sales])
    return [_view(sale, remaining[sale.pk], now) for sale in sales]


def sale_get(sale_id: int) -> FlashSale | None:
    """The sale with its product, from the cache when possible."""
    if not 0 < sale_id <= MAX_SALE_ID:
        return None
    key = sale_cache_key(sale_id)
    sale = cache.get(key)
    if sale is None:
        sale = FlashSale.objects.select_related("product").filter(pk=sale_id).first()
        if sale is None:
            return None
        cache.set(key, sale, SALE_CACHE_SECONDS)
    return sale


def sale_detail(sale_id: int, *, now: datetime | None = None) -> SaleView | None:
    sale = sale_get(sale_id)
    if sale is None:
        return None
    now = now or timezone.now()
    return _view(sale, inventory.remaining_stock_many([sale.pk])[sale.pk], now)


def sale_line_counts(sale_id: int) -> inventory.LineCounts | None:
    """A queue-mode sale's line as its operator sees it (None: the sale admits directly or
    is not loaded), by the turn and crowd interval this process serves with."""
    return inventory.line_counts(
        sale_id=sale_id,
        turn_seconds=settings.FLASHSALE_QUEUE_TURN_SECONDS,
        crowd_interval_ms=settings.FLASHSALE_CROWD_INTERVAL_MS,
    )


def sales_watched(*, now: datetime | None = None) -> list[int]:
    """Sales loaded into Redis that beat keeps draining and reconciling: running, or ended
    within the watch period."""
    since = (now or timezone.now()) - timedelta(seconds=settings.FLASHSALE_WATCH_AFTER_END_SECONDS)
    return list(FlashSale.objects.filter(warmed_at__isnull=False, ends_at__gt=since).values_list("pk", flat=True))


def sale_newest_for_product(slug: str) -> FlashSale | None:
    """The product's newest sale (latest start, then highest id), with its product; never a
    rehearsal's shadow sale."""
    sales = FlashSale.objects.real().select_related("product").filter(product__slug=slug)
    return sales.order_by("-starts_at", "-pk").first()


def sale_by_reference(reference: str) -> FlashSale | None:
    """A sale named by its id (digits) or by a product slug (that product's newest sale)."""
    if reference.isdigit() and reference.isascii():
        return sale_get(int(reference))
    return sale_newest_for_product(reference)


class ProductSales:
    """Product slug -> id of its newest sale, for every product at once, in this process.

    Read whole (one query) at most once a ``refresh_seconds``. A slug it does not know is
    looked up alone (one indexed query), at most ``misses_per_second`` distinct lookups a
    second: a flood of made-up slugs costs PostgreSQL that many small queries a second per
    process, never one per request. Whoever asks while a read that answers them is under way
    waits for it (a stampede on a new product costs one query, not a NOT_FOUND each).
    """

    def __init__(self, *, refresh_seconds: float = 5.0, misses_per_second: int = 20) -> None:
        self.refresh_seconds = refresh_seconds
        self.misses_per_second = misses_per_second
        self._newest: dict[str, int] = {}
        self._read_at = float("-inf")
        self._reading: threading.Event | None = None  # a whole read under way
        self._looking: dict[str, threading.Event] = {}  # single lookups under way
        self._miss_second = -1
        self._misses = 0
        self._lock = threading.Lock()

    def sale_id_steps(self, slug: str) -> Steps[int | None]:
        """The newest sale of ``slug``, or None; a ``DatabaseWork`` step when it must ask
        (or wait for the read under way)."""
        now = time.monotonic()
        with self._lock:
            known = self._newest.get(slug)
            under_way = self._looking.get(slug) or self._reading
            if now - self._read_at >= self.refresh_seconds and self._reading is None:
                self._read_at = now
                self._reading = done = threading.Event()
                whole = True
            elif known is not None:
                return known
            elif under_way is not None:
                whole = None
            elif self._miss_allowed(now):
                self._looking[slug] = done = threading.Event()
                whole = False
            else:
                return None
        if whole is None:
            assert under_way is not None
            yield DatabaseWork(lambda: under_way.wait(WAIT_FOR_READ_SECONDS))
            with self._lock:
                return self._newest.get(slug)
        try:
            if whole:
                newest = yield DatabaseWork(_newest_sale_ids)
                with self._lock:
                    self._newest = newest
                return newest.get(slug)
            found = yield DatabaseWork(lambda: _newest_sale_id(slug))
            if found is not None:
                with self._lock:
                    self._newest[slug] = found
            return found
        finally:
            with self._lock:
                if whole:
                    self._reading = None
                else:
                    self._looking.pop(slug, None)
            done.set()

    def _miss_allowed(self, now: float) -> bool:
        second = int(now)
        if second != self._miss_second:
            self._miss_second, self._misses = second, 0
        self._misses += 1
        return self._misses <= self.misses_per_second

    def forget(self) -> None:
        with self._lock:
            self._newest, self._read_at = {}, float("-inf")


WAIT_FOR_READ_SECONDS = 2.0


def _newest_sale_id(slug: str) -> int | None:
    sale = (
        FlashSale.objects.real().filter(product__slug=slug).order_by("-starts_at", "-pk").values_list("pk", flat=True)
    )
    return sale.first()


def _newest_sale_ids() -> dict[str, int]:
    rows = (
        FlashSale.objects.real()
        .order_by("product__slug", "-starts_at", "-pk")
        .distinct("product__slug")
        .values_list("product__slug", "pk")
    )
    return dict(rows)


product_sales = ProductSales()
forgets_process_state(product_sales.forget)

_SLUG = re.compile(r"[-a-zA-Z0-9_]{1,50}")


class UnknownSale(NotFound):
    default_detail = "There is no such sale or product."


def sale_id_for_reference_steps(reference: str | int) -> Steps[int]:
    """The sale a client names: a sale id (a number, or digits) or a product slug (its newest
    sale), without SQL per request (``ProductSales``). Whether the sale id exists is the
    caller's next question. Raises ``UnknownSale``."""
    if isinstance(reference, int) and not isinstance(reference, bool):
        if not 0 < reference <= MAX_SALE_ID:
            raise UnknownSale()
        return reference
    if not isinstance(reference, str) or not _SLUG.fullmatch(reference):
        raise UnknownSale("product_id must be a sale id or a product slug.")
    if reference.isdigit():
        return (yield from sale_id_for_reference_steps(int(reference)))
    sale_id = yield from product_sales.sale_id_steps(reference)
    if sale_id is None:
        raise UnknownSale(f"No product {reference!r} with a sale.")
    return sale_id


@dataclass(frozen=True, slots=True)
class SaleState:
    """A sale as Redis holds it at one instant (the Redis clock's ``now_ms``)."""

    sale_id: int
    product_id: int
    price: str
    total_stock: int
    remaining_stock: int
    starts_at_ms: int
    ends_at_ms: int
    now_ms: int
    status: SaleStatus


def sale_state_steps(sale_id: int) -> Steps[SaleState]:
    """The sale's window, stock and status by the Redis clock: read from Redis now (one round
    trip, no SQL) into this process's model of it. Raises ``UnknownSale`` for a sale not
    loaded into Redis (beat loads sales well before they start)."""
    if not 0 < sale_id <= MAX_SALE_ID:
        raise UnknownSale()
    known = yield from known_sales.load_steps(sale_id)
    if known is None or known.meta is None:
        raise UnknownSale()
    meta, now_ms = known.meta, known.read_at_ms
    left = max(0, known.snapshot.remaining or 0)
    return SaleState(
        sale_id=meta.sale_id,
        product_id=meta.product_id,
        price=meta.price,
        total_stock=meta.total,
        remaining_stock=left,
        starts_at_ms=meta.starts_at_ms,
        ends_at_ms=meta.ends_at_ms,
        now_ms=now_ms,
        status=sale_status(
            now_ms=now_ms, starts_at_ms=meta.starts_at_ms, ends_at_ms=meta.ends_at_ms, remaining_stock=left
        ),
    )
