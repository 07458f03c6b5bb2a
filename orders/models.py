from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
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
