"""The admin's sale form: the window shown and typed in the shop's time zone
(``SHOP_TIME_ZONE``), stored as aware UTC."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from django import forms
from django.contrib.admin.widgets import AdminSplitDateTime
from django.core.exceptions import ValidationError

from core.shop_time import WallTimeInvalid, shop_zone, utc_to_wall_time, wall_time_to_utc

from .models import FlashSale


class WallTimeField(forms.SplitDateTimeField):
    """A date and a time of day on the clock of ``zone``, whatever zone the request runs
    in; its value is the aware UTC instant. A wall time the zone skips or repeats is refused
    (``core.shop_time``)."""

    widget = AdminSplitDateTime

    def __init__(self, *, zone: ZoneInfo | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.zone = zone or ZoneInfo("UTC")

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, datetime) and value.tzinfo is not None:
            return utc_to_wall_time(value, self.zone)
        return value

    def compress(self, data_list: tuple[date, time] | None) -> datetime | None:
        if not data_list:
            return None
        day, clock = data_list
        if day in self.empty_values:
            raise ValidationError(self.error_messages["invalid_date"], code="invalid_date")
        if clock in self.empty_values:
            raise ValidationError(self.error_messages["invalid_time"], code="invalid_time")
        try:
            return wall_time_to_utc(datetime.combine(day, clock), self.zone)
        except WallTimeInvalid as error:
            raise ValidationError(str(error), code="wall_time_invalid") from None

    def has_changed(self, initial: Any, data: Any) -> bool:
        return super().has_changed(self.prepare_value(initial), data)


WALL_TIME_FIELDS = ("starts_at", "ends_at", "pre_queue_opens_at")


class FlashSaleForm(forms.ModelForm):
    """Every field of the sale; the window's in the shop's zone, named in each help text."""

    class Meta:
        model = FlashSale
        fields = [
            "product",
            "price",
            "total_stock",
            "per_user_limit",
            "starts_at",
            "ends_at",
            "pow_difficulty",
            "bucket_capacity",
            "bucket_refill_per_second",
            "crowd_factor",
            "admission",
            "pre_queue_opens_at",
            "shuffle_pre_queue",
            "serving_rate",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        zone = shop_zone()
        for name in WALL_TIME_FIELDS:
            existing = self.fields[name]
            help_text = f"{existing.help_text} " if existing.help_text else ""
            self.fields[name] = WallTimeField(
                zone=zone,
                required=existing.required,
                label=existing.label,
                help_text=f"{help_text}Shop time ({zone.key}).",
            )
