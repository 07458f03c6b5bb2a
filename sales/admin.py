from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from core.errors import ApplicationError
from core.redis_store import RedisUnavailable
from core.shop_time import shop_zone

from . import inventory
from .forms import FlashSaleForm
from .inventory import LineCounts
from .models import FlashSale, Product
from .selectors import sale_line_counts
from .services import sale_update
from .warming import sale_warm


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "list_price", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}


WINDOW = "Window"
"""The window's fieldset; its title gets the shop's zone (``get_fieldsets``)."""


@admin.register(FlashSale)
class FlashSaleAdmin(admin.ModelAdmin):
    form = FlashSaleForm
    list_display = ["__str__", "price", "total_stock", "remaining", "starts_at", "ends_at", "state", "warmed_at"]
    list_filter = ["product"]
    list_select_related = ["product"]
    date_hierarchy = "starts_at"
    actions = ["warm", "rehearse"]
    readonly_fields = ["warmed_at", "live_status", "operator_links"]
    fieldsets = [
        (None, {"fields": ["product", "price", "total_stock", "per_user_limit"]}),
        (WINDOW, {"fields": ["starts_at", "ends_at"]}),
        (
            "Admission and anti-bot",
            {
                "fields": ["pow_difficulty", "bucket_capacity", "bucket_refill_per_second", "crowd_factor"],
                "description": "Proof-of-work floor in leading zero bits (0: off); token bucket burst "
                "and refill per second; stock-aware admission (attempts per unit left per second and "
                "web process; 0: off). Changes reach a loaded sale within seconds.",
            },
        ),
        (
            "Waiting room",
            {
                "fields": ["admission", "pre_queue_opens_at", "shuffle_pre_queue", "serving_rate"],
                "description": "Queue: shoppers join a line and are let in by number at the serving rate "
                "(empty: auto, from the units left); a pre-queue may open before the start and be shuffled "
                "at the start. Changes reach a loaded sale within seconds.",
            },
        ),
        ("Live", {"fields": ["warmed_at", "live_status", "operator_links"]}),
    ]

    def get_fieldsets(self, request: HttpRequest, obj: FlashSale | None = None) -> Any:
        # The window's title names the zone it is typed in, read per request (not at import).
        named = f"Window ({shop_zone().key})"
        fieldsets = super().get_fieldsets(request, obj)
        return [(named if title == WINDOW else title, options) for title, options in fieldsets]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        with timezone.override(shop_zone()):  # The list's times in the shop's zone, as the form's.
            return _rendered(super().changelist_view(request, extra_context))

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        with timezone.override(shop_zone()):
            return _rendered(super().changeform_view(request, object_id, form_url, extra_context))

    def get_readonly_fields(self, request: HttpRequest, obj: FlashSale | None = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and obj.warmed_at is not None:
            fields.append("total_stock")  # The live counter in Redis is the stock now.
        return fields

    def _remaining(self, sale: FlashSale) -> int | None:
        try:
            return inventory.remaining_stock_many([sale.pk])[sale.pk]
        except RedisUnavailable:
            return None

    @admin.display(description="Remaining")
    def remaining(self, sale: FlashSale) -> str:
        left = self._remaining(sale)
        return "not loaded" if left is None else str(left)

    @admin.display(description="State")
    def state(self, sale: FlashSale) -> str:
        left = self._remaining(sale)
        return sale.status_at(timezone.now(), remaining_stock=sale.total_stock if left is None else left).label

    @admin.display(description="Console, orders, rehearsals")
    def operator_links(self, sale: FlashSale) -> str:
        if sale.pk is None:
            return "Saved sales have a live console, their orders' export and rehearsals here."
        export = reverse("admin:orders_order_export")
        links = format_html(
            '<a href="{}" data-console-link>Open the live console</a> (figures each second, kept after the sale) · '
            'orders: <a href="{}?sale={}&amp;format=csv">CSV</a>, <a href="{}?sale={}&amp;format=json">JSON</a> · '
            '<a href="{}" data-rehearse-link>Rehearse</a>',
            reverse("admin-sale-console", args=[sale.pk]),
            export,
            sale.pk,
            export,
            sale.pk,
            reverse("admin-sale-rehearse", args=[sale.pk]),
        )
        rehearsals = [
            format_html(
                '<li data-rehearsal="{}"><a href="{}">Rehearsal {}</a>: {} ({} shoppers x {}, {}){}</li>',
                rehearsal.pk,
                reverse("admin:sales_salerehearsal_change", args=[rehearsal.pk]),
                rehearsal.pk,
                rehearsal.get_status_display(),
                rehearsal.shoppers,
                rehearsal.attempts,
                f"{rehearsal.started_at:%Y-%m-%d %H:%M}",
                format_html(' · <a href="{}">JSON</a>', reverse("api-rehearsal", args=[rehearsal.pk])),
            )
            for rehearsal in sale.rehearsals.all()[:5]
        ]
        if not rehearsals:
            return links
        return format_html(
            '{}<ul class="rehearsals">{}</ul>', links, format_html_join("", "{}", ((r,) for r in rehearsals))
        )

    @admin.action(description="Rehearse: a shadow sale with the same admission settings and a synthetic crowd")
    def rehearse(self, request: HttpRequest, queryset: QuerySet[FlashSale]) -> HttpResponse | None:
        sales = list(queryset[:2])
        if len(sales) != 1:
            self.message_user(request, "Rehearse one sale at a time.", level=messages.WARNING)
            return None
        return HttpResponseRedirect(reverse("admin-sale-rehearse", args=[sales[0].pk]))

    @admin.display(description="Live status (from Redis)")
    def live_status(self, sale: FlashSale) -> str:
        if sale.pk is None:
            return "Saved sales show their live state here."
        try:
            counts = inventory.sale_counts(sale.pk)
            stats = inventory.sale_stats(sale.pk)
            line = sale_line_counts(sale.pk)
        except RedisUnavailable:
            return "Redis is unreachable."
        if not counts.loaded:
            return "Not loaded into Redis yet (beat loads sales 30 minutes ahead; or use the Warm action)."
        verdict = "holds" if counts.stock_consistent else "BROKEN"
        rows = [
            ("Remaining stock", counts.remaining),
            ("Buyers", counts.buyers),
            ("Orders in the stream", counts.stream_length),
            ("I1: remaining + buyers = total", f"{counts.remaining} + {counts.buyers} = {counts.total}: {verdict}"),
        ]
        if line is not None:
            rows += _line_rows(line, stats)
        rows += _funnel_rows(stats)
        return format_html(
            '<table class="live-status">{}</table>',
            format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows),
        )

    def save_model(self, request: HttpRequest, obj: FlashSale, form: Any, change: bool) -> None:
        if change:
            try:
                sale_update(sale=obj)
            except ApplicationError as error:
                self.message_user(request, error.detail, level=messages.ERROR)
        else:
            super().save_model(request, obj, form, change)

    @admin.action(description="Warm: load into Redis and the cache now")
    def warm(self, request: HttpRequest, queryset: QuerySet[FlashSale]) -> None:
        for sale in queryset.select_related("product"):
            try:
                result = sale_warm(sale=sale)
            except ApplicationError as error:
                self.message_user(request, error.detail, level=messages.ERROR)
                continue
            state = "stock initialized" if result.stock_initialized else "live stock kept"
            self.message_user(request, f"Sale {sale.pk} warmed ({state}).", level=messages.SUCCESS)


def _rendered(response: HttpResponse) -> HttpResponse:
    """A template response rendered now, while the zone the caller made current holds (it
    would otherwise render after the view returned)."""
    render = getattr(response, "render", None)
    if render is not None:
        render()
    return response


def _line_rows(line: LineCounts, stats: dict[str, int]) -> list[tuple[str, object]]:
    """A queue-mode sale's line now by the Redis clock (docs/observability.md, "The waiting
    room"), and its joins as the web processes counted them (up to a second behind)."""
    moving = f"{line.rate:g} places/s" if line.window_open else "still: the window is closed"
    rows: list[tuple[str, object]] = [
        ("Line: numbers given", line.joined),
        ("Line: waiting (still to be let in)", line.waiting),
        ("Line: serving counter", f"{line.served:.1f} ({moving}; measured {line.measured_rate:g}/s)"),
        ("Line: admitted", line.admitted),
        ("Line: admitted, not bought, turn not passed", line.admitted_unused),
        ("Line: abandoned (turn passed, no purchase)", line.abandoned),
        ("Joins: new places", stats.get("queue:joined", 0)),
        ("Joins: a place heard again", stats.get("queue:rejoined", 0)),
    ]
    rows += [
        (f"Joins answered in the process: {name.removeprefix('queue:shed:').replace('_', ' ')}", count)
        for name, count in sorted(stats.items())
        if name.startswith("queue:shed:")
    ]
    return rows


def _funnel_rows(stats: dict[str, int]) -> list[tuple[str, object]]:
    """The funnel as counted by the web processes (``sales.tally``; up to a second behind):
    arrived, answered in the process by reason, sent to Redis, and every answer by status."""
    if not stats:
        return [("Purchase attempts", "none yet")]
    rows: list[tuple[str, object]] = [("Attempts arrived", stats.get("arrived", 0))]
    rows += [
        (f"Answered in the process: {name.removeprefix('shed:').replace('_', ' ')}", count)
        for name, count in sorted(stats.items())
        if name.startswith("shed:")
    ]
    rows.append(("Sent to Redis (purchase.lua)", stats.get("script", 0)))
    rows += [
        (f"Answered {name.removeprefix('answer:')}", count)
        for name, count in sorted(stats.items())
        if name.startswith("answer:")
    ]
    return rows
