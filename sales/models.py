from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q

from core.shop_time import shop_zone, wall_time_label


class Product(models.Model):
    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    list_price = models.DecimalField(max_digits=10, decimal_places=2, validators=[MinValueValidator(Decimal("0"))])
    # A URL or a path under /static/; the storefront shows a placeholder when empty.
    image_url = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(list_price__gte=0), name="product_list_price_not_negative"),
        ]

    def __str__(self) -> str:
        return self.name


MAX_SALE_ID = 2**63 - 1
"""The largest sale id (PostgreSQL's bigint): a larger one names no sale, whoever asks."""


class SaleStatus(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled"
    LIVE = "live", "Live"
    SOLD_OUT = "sold_out", "Sold out"
    ENDED = "ended", "Ended"


class Admission(models.TextChoices):
    DIRECT = "direct", "Direct: every shopper may try at once"
    QUEUE = "queue", "Queue: shoppers join a line and are let in by number"


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def sale_status(*, now_ms: int, starts_at_ms: int, ends_at_ms: int, remaining_stock: int) -> SaleStatus:
    """The contract's status of a sale: the one rule the API, the admin and the live socket use."""
    if now_ms < starts_at_ms:
        return SaleStatus.SCHEDULED
    if now_ms >= ends_at_ms:
        return SaleStatus.ENDED
    if remaining_stock <= 0:
        return SaleStatus.SOLD_OUT
    return SaleStatus.LIVE


class SaleQuerySet(models.QuerySet["FlashSale"]):
    def real(self) -> SaleQuerySet:
        """Sales shoppers see: no rehearsal's shadow sale."""
        return self.filter(rehearsal_of__isnull=True)


class FlashSale(models.Model):
    """A stock of one product sold at one price inside ``[starts_at, ends_at)``.

    Once warmed (loaded into Redis) the stock lives in Redis until the sale ends; the row
    keeps the plan, not the live count.
    """

    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="sales")
    price = models.DecimalField(max_digits=10, decimal_places=2, validators=[MinValueValidator(Decimal("0"))])
    total_stock = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    starts_at = models.DateTimeField(db_index=True)
    ends_at = models.DateTimeField()
    # One unit per buyer: the invariants count buyers as units and an order is unique per
    # sale and user, so the only limit this version can honour is 1.
    per_user_limit = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(1)],
        help_text="Units one user may buy. This version sells one unit per buyer.",
    )
    pow_difficulty = models.PositiveSmallIntegerField(
        default=0,
        validators=[MaxValueValidator(32)],
        help_text="Leading zero bits a proof of work needs; 0 turns proof of work off.",
    )
    bucket_capacity = models.PositiveIntegerField(
        default=1000,
        validators=[MinValueValidator(1)],
        help_text="Purchase attempts the sale admits in one burst.",
    )
    bucket_refill_per_second = models.PositiveIntegerField(
        default=500,
        validators=[MinValueValidator(1)],
        help_text="Purchase attempts admitted per second once the burst is spent.",
    )
    crowd_factor = models.DecimalField(
        max_digits=4,
        decimal_places=1,
        default=Decimal("2.0"),
        validators=[MinValueValidator(Decimal("0"))],
        help_text=(
            "Stock-aware admission: each web process lets at most this many attempts per unit left "
            "through to Redis per second; the rest hear 429 (reason: crowd). 0 turns it off."
        ),
    )
    admission = models.CharField(
        max_length=10,
        choices=Admission.choices,
        default=Admission.DIRECT,
        help_text="Direct: anyone may try to buy from the start. Queue: shoppers join a waiting room and are "
        "let in by number at the serving rate.",
    )
    pre_queue_opens_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Queue mode: when shoppers may start joining the line (empty: at the start).",
    )
    shuffle_pre_queue = models.BooleanField(
        default=False,
        help_text="Queue mode: put those who joined before the start in a random order (a lottery among early "
        "arrivals, with a seed committed before the line opens); later arrivals queue after them in order.",
    )
    serving_rate = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Queue mode: shoppers let in per second. Empty: auto, from the units left (crowd factor x "
        "units left per second).",
    )
    rehearsal_of = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        editable=False,
        related_name="shadows",
        help_text="A rehearsal's shadow sale: the sale it rehearses. Shadow sales, and their orders, are left out "
        "of the storefront, order lists, exports and emails.",
    )
    warmed_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = SaleQuerySet.as_manager()

    class Meta:
        ordering = ["starts_at", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(total_stock__gt=0), name="flashsale_stock_positive"),
            models.CheckConstraint(condition=Q(ends_at__gt=F("starts_at")), name="flashsale_ends_after_start"),
            models.CheckConstraint(condition=Q(price__gte=0), name="flashsale_price_not_negative"),
            models.CheckConstraint(condition=Q(per_user_limit=1), name="flashsale_one_unit_per_buyer"),
            models.CheckConstraint(condition=Q(pow_difficulty__lte=32), name="flashsale_pow_difficulty_max_32"),
            models.CheckConstraint(condition=Q(bucket_capacity__gt=0), name="flashsale_bucket_capacity_positive"),
            models.CheckConstraint(condition=Q(crowd_factor__gte=0), name="flashsale_crowd_factor_not_negative"),
            models.CheckConstraint(
                condition=Q(bucket_refill_per_second__gt=0), name="flashsale_bucket_refill_positive"
            ),
            models.CheckConstraint(
                condition=Q(pre_queue_opens_at__isnull=True) | Q(pre_queue_opens_at__lte=F("starts_at")),
                name="flashsale_pre_queue_opens_by_the_start",
            ),
        ]

    def __str__(self) -> str:
        starts = wall_time_label(self.starts_at, shop_zone())
        shadow = f", rehearsal of sale {self.rehearsal_of_id}" if self.rehearsal_of_id else ""
        return f"{self.product.name} at {self.price} ({self.total_stock} units, {starts}{shadow})"

    @property
    def is_shadow(self) -> bool:
        return self.rehearsal_of_id is not None

    def status_at(self, now: datetime, *, remaining_stock: int) -> SaleStatus:
        return sale_status(
            now_ms=epoch_ms(now),
            starts_at_ms=epoch_ms(self.starts_at),
            ends_at_ms=epoch_ms(self.ends_at),
            remaining_stock=remaining_stock,
        )


class RehearsalStatus(models.TextChoices):
    RUNNING = "running", "Running"
    PASSED = "passed", "Passed"
    FAILED = "failed", "Failed"
    ABORTED = "aborted", "Aborted"


class SaleRehearsal(models.Model):
    """One rehearsal of a sale: a synthetic crowd against a shadow sale with the sale's own
    admission settings and a stock of its own; its report is kept here once the shadow sale,
    its shoppers and its orders are gone."""

    sale = models.ForeignKey(FlashSale, on_delete=models.CASCADE, related_name="rehearsals")
    shadow_sale_id = models.PositiveBigIntegerField(null=True, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    status = models.CharField(max_length=10, choices=RehearsalStatus.choices, default=RehearsalStatus.RUNNING)
    shoppers = models.PositiveIntegerField()
    attempts = models.PositiveSmallIntegerField()
    stock = models.PositiveIntegerField()
    transport = models.CharField(max_length=10, default="http")
    targets = models.JSONField(default=dict, blank=True)
    stage = models.JSONField(
        default=dict, blank=True, help_text="What the rehearsal set up: its shoppers (a name prefix and an id range)."
    )
    report = models.JSONField(default=dict, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"Rehearsal {self.pk} of sale {self.sale_id} ({self.get_status_display()})"
