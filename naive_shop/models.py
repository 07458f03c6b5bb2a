"""The naive shop's tables: a stock row locked by every purchase, and its orders.

They exist only as the benchmark's baseline (``make bench``, scenario 5). The app is always
installed so its migration history is stable; its URLs are mounted only when
``FLASHSALE_BENCH_ENDPOINTS`` is on.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class NaiveStock(models.Model):
    """Units of one item, counted down in PostgreSQL under a row lock."""

    name = models.CharField(max_length=100)
    total = models.PositiveIntegerField()
    remaining = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(remaining__lte=models.F("total")), name="naive_stock_within_total"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.remaining}/{self.total})"


class NaiveOrder(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    stock = models.ForeignKey(NaiveStock, on_delete=models.CASCADE, related_name="orders")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="naive_orders")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["stock", "user"], name="naive_order_one_per_user"),
        ]

    def __str__(self) -> str:
        return f"Naive order {self.id}"
