from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

from sales.models import FlashSale


class OrderStatus(models.TextChoices):
    PENDING = "PENDING", "Pending payment"
    PAID = "PAID", "Paid"
    EXPIRED = "EXPIRED", "Expired"
    CANCELLED = "CANCELLED", "Cancelled"


class Order(models.Model):
    """One won unit. The id is the one ``purchase.lua`` handed the buyer, so retries of the
    hand-off from Redis land on the same row."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    sale = models.ForeignKey(FlashSale, on_delete=models.PROTECT, related_name="orders")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="orders")
    unit_price = models.DecimalField(max_digits=10, decimal_places=2, validators=[MinValueValidator(Decimal("0"))])
    status = models.CharField(max_length=10, choices=OrderStatus.choices, default=OrderStatus.PENDING)
    # When the unit was won, by the Redis clock; not when the row was written.
    created_at = models.DateTimeField(db_index=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    confirmation_sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["sale", "user"], name="order_one_per_user_per_sale"),
            models.CheckConstraint(condition=Q(unit_price__gte=0), name="order_unit_price_not_negative"),
            models.CheckConstraint(
                condition=~Q(status=OrderStatus.PAID) | Q(paid_at__isnull=False), name="order_paid_has_paid_at"
            ),
        ]

    def __str__(self) -> str:
        return f"Order {self.id} ({self.get_status_display()})"


class WebhookEventType(models.TextChoices):
    ORDER_CREATED = "order.created", "Order created (at the drain)"
    ORDER_PAID = "order.paid", "Order paid"
    ORDER_EXPIRED = "order.expired", "Order expired (payment window passed)"
    ORDER_CANCELLED = "order.cancelled", "Order cancelled"


def new_webhook_id() -> str:
    """A Standard Webhooks message id: no dot (the signed content is ``id.timestamp.body``)."""
    return f"msg_{uuid.uuid4().hex}"


class WebhookEndpoint(models.Model):
    """A receiver of the shop's own systems (payment, fulfilment, CRM): a URL, the events it
    wants and the secret deliveries are signed with. ``previous_secret`` stays valid until
    ``previous_secret_until``, so a rotation has an overlap in which both sign and verify."""

    url = models.URLField(max_length=2000)
    events = ArrayField(models.CharField(max_length=40, choices=WebhookEventType.choices))
    secret = models.CharField(max_length=200)
    previous_secret = models.CharField(max_length=200, blank=True, default="")
    previous_secret_until = models.DateTimeField(null=True, blank=True)
    allow_private = models.BooleanField(
        default=False,
        help_text="May resolve to a loopback, link-local or private address (only where "
        "WEBHOOKS_ALLOW_PRIVATE_OPT_IN permits it).",
    )
    payments = models.BooleanField(
        default=False, help_text="Reports payment outcomes: its secret signs POST /api/orders/<id>/payment/."
    )
    description = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    pause_reason = models.CharField(max_length=300, blank=True, default="")
    consecutive_failures = models.PositiveIntegerField(default=0)
    failing_since = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"Webhook endpoint {self.pk} ({self.url})"


class WebhookEvent(models.Model):
    """One event of an order. ``body`` is the exact JSON text that is signed and sent, the
    same on every attempt; ``sequence`` orders an order's events (1, 2, ...)."""

    id = models.CharField(primary_key=True, max_length=40, default=new_webhook_id, editable=False)
    type = models.CharField(max_length=40, choices=WebhookEventType.choices)
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="webhook_events")
    sequence = models.PositiveIntegerField()
    body = models.TextField()
    occurred_at = models.DateTimeField()

    class Meta:
        ordering = ["occurred_at", "sequence"]
        constraints = [
            # An order passes each state once: a drain replayed after a crash records nothing new.
            models.UniqueConstraint(fields=["order", "type"], name="webhook_event_one_per_order_and_type"),
            models.UniqueConstraint(fields=["order", "sequence"], name="webhook_event_sequence_per_order"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.id} (order {self.order_id})"


class DeliveryStatus(models.TextChoices):
    PENDING = "PENDING", "Pending"
    DELIVERED = "DELIVERED", "Delivered"
    DEAD = "DEAD", "Dead letter"


class WebhookDelivery(models.Model):
    """One event for one endpoint. ``order`` and ``sequence`` repeat the event's so that an
    order's next delivery to an endpoint is one index read."""

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="deliveries")
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="webhook_deliveries")
    sequence = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    # Attempts since the delivery was created or last replayed; the retry schedule counts these.
    attempts = models.PositiveIntegerField(default=0)
    replays = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    delivered_at = models.DateTimeField(null=True, blank=True)
    dead_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "event"], name="webhook_delivery_one_per_endpoint_and_event"),
        ]
        indexes = [
            models.Index(fields=["endpoint", "order", "status", "sequence"], name="webhook_delivery_chain"),
            models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due"),
        ]

    def __str__(self) -> str:
        return f"Delivery {self.pk} of {self.event_id} to endpoint {self.endpoint_id}"


class DeadLetter(WebhookDelivery):
    """The admin's list of deliveries that ran out of retries (status ``DEAD``), with replay."""

    class Meta:
        proxy = True
        verbose_name = "webhook dead letter"
