from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import URLPattern, path

from core.errors import ApplicationError

from .destinations import destination_resolve
from .exports import FORMATS, order_rows, orders_csv_lines, orders_for_export, orders_json_chunks
from .models import DeadLetter, DeliveryStatus, Order, OrderStatus, WebhookDelivery, WebhookEndpoint, WebhookEventType
from .services import order_mark_paid, order_release
from .webhooks import (
    deliveries_replay,
    endpoint_pause,
    endpoint_resume,
    endpoint_rotate,
    events_check,
    private_addresses_allowed,
    secret_check,
    secret_generate,
)


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


class WebhookEndpointForm(forms.ModelForm):
    """Registration through the same checks as ``manage.py flashsale webhooks add``: the
    secret's form, the events, the URL resolved now (server-side request forgery guard)."""

    url = forms.URLField(max_length=2000, assume_scheme="https")
    events = forms.MultipleChoiceField(choices=WebhookEventType.choices, widget=forms.CheckboxSelectMultiple)
    secret = forms.CharField(
        required=False,
        max_length=200,
        help_text="whsec_ followed by 24 to 64 bytes in base64; leave empty to have one made (shown once).",
        widget=forms.PasswordInput(render_value=False),
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["url", "events", "secret", "allow_private", "payments", "description"]

    def clean_events(self) -> list[str]:
        try:
            return events_check(self.cleaned_data["events"])
        except ApplicationError as error:
            raise forms.ValidationError(error.detail) from None

    def clean_secret(self) -> str:
        secret: str = self.cleaned_data.get("secret", "")
        if not secret:
            return self.instance.secret if self.instance.pk else secret_generate()
        try:
            return secret_check(secret)
        except ApplicationError as error:
            raise forms.ValidationError(error.detail) from None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        url = cleaned.get("url")
        if url:
            probe = WebhookEndpoint(allow_private=bool(cleaned.get("allow_private")))
            if probe.allow_private and not (settings.WEBHOOKS_ALLOW_PRIVATE_OPT_IN or settings.WEBHOOKS_ALLOW_PRIVATE):
                self.add_error("allow_private", "The settings do not permit it (WEBHOOKS_ALLOW_PRIVATE_OPT_IN).")
            else:
                try:
                    destination_resolve(url, allow_private=private_addresses_allowed(probe))
                except ApplicationError as error:
                    self.add_error("url", error.detail)
        return cleaned


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = WebhookEndpointForm
    list_display = ["id", "url", "events", "payments", "state", "pending", "dead", "last_success_at"]
    readonly_fields = [
        "state",
        "previous_secret_until",
        "consecutive_failures",
        "failing_since",
        "last_success_at",
        "created_at",
    ]
    actions = ["resume", "pause", "rotate_secret"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[WebhookEndpoint]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                pending_count=Count("deliveries", filter=Q(deliveries__status=DeliveryStatus.PENDING)),
                dead_count=Count("deliveries", filter=Q(deliveries__status=DeliveryStatus.DEAD)),
            )
        )

    @admin.display(description="State")
    def state(self, endpoint: WebhookEndpoint) -> str:
        if endpoint.paused_at is not None:
            return f"PAUSED since {endpoint.paused_at:%Y-%m-%d %H:%M:%S} UTC: {endpoint.pause_reason}"
        if endpoint.failing_since is not None:
            return (
                f"failing: {endpoint.consecutive_failures} attempt(s) in a row since "
                f"{endpoint.failing_since:%Y-%m-%d %H:%M:%S} UTC"
            )
        return "delivering"

    @admin.display(description="Pending")
    def pending(self, endpoint: WebhookEndpoint) -> int:
        return int(getattr(endpoint, "pending_count", 0))

    @admin.display(description="Dead letters")
    def dead(self, endpoint: WebhookEndpoint) -> int:
        return int(getattr(endpoint, "dead_count", 0))

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        for endpoint in WebhookEndpoint.objects.filter(paused_at__isnull=False):
            self.message_user(
                request,
                f"Endpoint {endpoint.pk} ({endpoint.url}) is paused: {endpoint.pause_reason}. "
                "Its deliveries wait; select it and choose Resume.",
                level=messages.WARNING,
            )
        return super().changelist_view(request, extra_context)

    def save_model(self, request: HttpRequest, obj: WebhookEndpoint, form: forms.ModelForm, change: bool) -> None:
        made = not change and not request.POST.get("secret")
        super().save_model(request, obj, form, change)
        if made:
            self.message_user(request, f"Endpoint {obj.pk}'s secret (shown once): {obj.secret}", level=messages.INFO)

    @admin.action(description="Resume delivering (what waited goes first)")
    def resume(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        for endpoint in queryset:
            chains = endpoint_resume(endpoint=endpoint)
            self.message_user(request, f"Endpoint {endpoint.pk} resumed; {chains} order(s) of deliveries sent.")

    @admin.action(description="Pause delivering")
    def pause(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        for endpoint in queryset:
            endpoint_pause(endpoint=endpoint, reason=f"paused by {request.user} in the admin")
        self.message_user(request, f"{queryset.count()} endpoint(s) paused; their deliveries wait.")

    @admin.action(description="Rotate the secret (the old one stays valid for the overlap)")
    def rotate_secret(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        for endpoint in queryset:
            endpoint_rotate(endpoint=endpoint)
            self.message_user(
                request,
                f"Endpoint {endpoint.pk}: new secret (shown once) {endpoint.secret}; the old one is valid until "
                f"{endpoint.previous_secret_until:%Y-%m-%d %H:%M:%S} UTC.",
            )


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["id", "event_id", "event_type", "endpoint", "order_id", "sequence", "status", "attempts",
                    "next_attempt_at", "last_status_code", "delivered_at"]  # fmt: skip
    list_filter = ["status", "endpoint", "event__type"]
    list_select_related = ["event", "endpoint"]
    search_fields = ["event__id", "order__id"]
    readonly_fields = [field.name for field in WebhookDelivery._meta.fields] + ["body"]

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="Event")
    def event_type(self, delivery: WebhookDelivery) -> str:
        return delivery.event.type

    @admin.display(description="Body")
    def body(self, delivery: WebhookDelivery) -> str:
        return delivery.event.body


@admin.register(DeadLetter)
class DeadLetterAdmin(WebhookDeliveryAdmin):
    """Deliveries that ran out of retries. Replay sends them again with their original
    ``webhook-id`` and body, from the start of the retry schedule."""

    list_display = ["id", "event_id", "event_type", "endpoint", "order_id", "attempts", "dead_at", "last_status_code",
                    "last_error"]  # fmt: skip
    list_filter = ["endpoint", "event__type"]
    actions = ["replay"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[WebhookDelivery]:
        return super().get_queryset(request).filter(status=DeliveryStatus.DEAD)

    @admin.action(description="Replay (same webhook-id and body)")
    def replay(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        replayed = deliveries_replay(delivery_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"{replayed} dead letter(s) sent again.", level=messages.SUCCESS)
