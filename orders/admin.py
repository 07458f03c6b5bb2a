from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from core.errors import ApplicationError

from .models import Order, OrderStatus
from .services import order_mark_paid, order_release


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ["id", "sale", "user", "unit_price", "status", "created_at", "paid_at", "confirmation_sent_at"]
    list_filter = ["status", "sale"]
    list_select_related = ["sale__product", "user"]
    search_fields = ["id", "user__username", "user__email"]
    date_hierarchy = "created_at"
    readonly_fields = ["id", "sale", "user", "unit_price", "status", "created_at", "paid_at", "confirmation_sent_at"]
    actions = ["mark_paid", "cancel_and_return_stock"]

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
