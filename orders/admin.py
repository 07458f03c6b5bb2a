from django.contrib import admin

from .models import Order


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ["id", "sale", "user", "unit_price", "status", "created_at", "confirmation_sent_at"]
    list_filter = ["status", "sale"]
    list_select_related = ["sale__product", "user"]
    search_fields = ["id", "user__username", "user__email"]
    date_hierarchy = "created_at"
    readonly_fields = ["id", "sale", "user", "unit_price", "created_at", "confirmation_sent_at"]

    def has_add_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False  # Orders come from the sale's stream, never from a form.
