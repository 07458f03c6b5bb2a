"""Times on the storefront's pages, written in the shop's zone (``SHOP_TIME_ZONE``); the
page's ``local-time.js`` adds the shopper's own zone in the browser."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.template.defaultfilters import date as date_format
from django.utils import timezone

from core.shop_time import shop_zone

register = template.Library()


@register.filter
def shop_time(moment: datetime | None, form: str = "M j, H:i") -> str:
    """``moment`` on the shop's clock in Django's ``date`` format ``form``, the zone named."""
    if moment is None:
        return ""
    zone = shop_zone()
    return f"{date_format(timezone.localtime(moment, zone), form)} {zone.key}"


@register.simple_tag
def shop_zone_name() -> str:
    return shop_zone().key
