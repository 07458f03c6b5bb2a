from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, StreamingHttpResponse
from django.urls import URLPattern, path

from core.errors import ApplicationError

from .exports import FORMATS, order_rows, orders_csv_lines, orders_for_export, orders_json_chunks
from .models import Order, OrderStatus
from .services import order_mark_paid, order_release


def export_response(orders: QuerySet[Order], *, form: str, name: str) -> StreamingHttpResponse:
    """The orders as a download, streamed as they are read."""
    if form == "csv":
        response = StreamingHttpResponse(orders_csv_lines(order_rows(orders)), content_type="text/csv; charset=utf-8")
    else:
        response = StreamingHttpResponse(orders_json_chunks(order_rows(orders)), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="{name}.{form}"'
    return response


class RehearsalOrdersFilter(admin.SimpleListFilter):
    """Real sales' orders unless asked: a rehearsal's shadow orders are nobody's purchases."""

    title = "sale kind"
    parameter_name = "rehearsal"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("also", "Real sales and rehearsals"), ("only", "Rehearsals only")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Order]) -> QuerySet[Order]:
        if self.value() == "only":
            return queryset.filter(sale__rehearsal_of__isnull=False)
        if self.value() == "also":
            return queryset
        return queryset.filter(sale__rehearsal_of__isnull=True)

    def choices(self, changelist: Any) -> Iterator[Any]:
        for choice in super().choices(changelist):
            if choice["display"] == "All":  # No value: real sales alone.
                choice["display"] = "Real sales"
            yield choice


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ["id", "sale", "user", "unit_price", "status", "created_at", "paid_at", "confirmation_sent_at"]
    list_filter = [RehearsalOrdersFilter, "status", "sale"]
    list_select_related = ["sale__product", "user"]
    search_fields = ["id", "user__username", "user__email"]
    date_hierarchy = "created_at"
    readonly_fields = ["id", "sale", "user", "unit_price", "status", "created_at", "paid_at", "confirmation_sent_at"]
    actions = ["mark_paid", "cancel_and_return_stock", "export_csv", "export_json"]

    def get_urls(self) -> list[URLPattern]:
        export = path("export/", self.admin_site.admin_view(self.export_view), name="orders_order_export")
        return [export, *super().get_urls()]

    def export_view(self, request: HttpRequest) -> StreamingHttpResponse:
        """``export/?sale=<id>&format=csv|json``: every order of a real sale (all real sales'
        without ``sale``)."""
        if not self.has_view_permission(request):
            raise Http404()
        form = request.GET.get("format", "csv")
        sale = request.GET.get("sale", "")
        if form not in FORMATS or (sale and not sale.isdigit()):
            raise Http404("Export as ?format=csv or json, optionally of ?sale=<id>.")
        orders = orders_for_export(sale_ids=[int(sale)] if sale else None)
        return export_response(orders, form=form, name=f"orders-sale-{sale}" if sale else "orders")

    @admin.action(description="Export selected orders as CSV")
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Order]) -> StreamingHttpResponse:
        return export_response(orders_for_export(within=queryset), form="csv", name="orders")

    @admin.action(description="Export selected orders as JSON")
    def export_json(self, request: HttpRequest, queryset: QuerySet[Order]) -> StreamingHttpResponse:
        return export_response(orders_for_export(within=queryset), form="json", name="orders")

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # Orders come from the sale's stream, never from a form.

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # Deleting would break one order per buyer (I2); cancel instead.

    @admin.action(description="Mark paid")
    def mark_paid(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        self._each(request, queryset, lambda order: order_mark_paid(order=order), "marked paid")

    @admin.action(description="Cancel and return the unit to the sale")
    def cancel_and_return_stock(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        self._each(
            request,
            queryset,
            lambda order: order_release(order=order, status=OrderStatus.CANCELLED),
            "cancelled; units returned",
        )

    def _each(self, request: HttpRequest, queryset: QuerySet[Order], change: object, done: str) -> None:
        changed = 0
        for order in queryset:
            try:
                change(order)  # type: ignore[operator]
            except ApplicationError as error:
                self.message_user(request, f"Order {order.id}: {error.detail}", level=messages.WARNING)
            else:
                changed += 1
        if changed:
            self.message_user(request, f"{changed} order(s) {done}.", level=messages.SUCCESS)
