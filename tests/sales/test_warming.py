"""Loading sales into Redis and the cache ahead of the start (admin action, beat tick)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from core.redis_store import inventory_redis
from sales import inventory, keys
from sales.purchase import purchase_attempt
from sales.services import sale_update
from sales.warming import SaleLocked, sale_warm, sales_warm_upcoming
from tests.factories import make_sale, make_shoppers

pytestmark = pytest.mark.django_db


@pytest.mark.usefixtures("sale_data")  # on one Redis and on a Redis Cluster
def test_warming_again_never_resets_a_live_stock_counter() -> None:
    sale = make_sale(stock=5)
    for user_id, _ in make_shoppers(2):
        purchase_attempt(sale_id=sale.pk, user_id=user_id)

    result = sale_warm(sale=sale)

    assert result.stock_initialized is False
    assert inventory.sale_counts(sale.pk).remaining == 3


def test_beat_warms_sales_starting_within_the_lead_time_only() -> None:
    soon = make_sale(starts_in=10 * 60, warm=False)
    live = make_sale(starts_in=-60, warm=False)
    later = make_sale(starts_in=2 * 3600, warm=False)
    over = make_sale(starts_in=-7200, duration=60, warm=False)

    warmed = {result.sale_id for result in sales_warm_upcoming(lead_seconds=30 * 60)}

    assert warmed == {soon.pk, live.pk}
    assert inventory.sale_counts(later.pk).loaded is False
    assert inventory.sale_counts(over.pk).loaded is False
    assert inventory.sale_meta(soon.pk) is not None


@pytest.mark.usefixtures("sale_data")  # on one Redis and on a Redis Cluster
def test_a_changed_window_is_loaded_and_published() -> None:
    sale = make_sale(starts_in=600)
    listener = inventory_redis().pubsub()
    listener.subscribe(keys.SALE_UPDATES_CHANNEL)
    listener.get_message(timeout=1)  # The subscription confirmation.

    sale.starts_at = sale.starts_at + timedelta(minutes=5)
    sale.ends_at = sale.ends_at + timedelta(minutes=5)
    sale_update(sale=sale)

    message = listener.get_message(timeout=2)
    listener.close()
    assert message is not None
    published = json.loads(message["data"])
    assert published["sale_id"] == sale.pk
    assert published["starts_at_ms"] == int(sale.starts_at.timestamp() * 1000)
    meta = inventory.sale_meta(sale.pk)
    assert meta is not None
    assert meta.starts_at_ms == published["starts_at_ms"]


def test_the_stock_of_a_loaded_sale_cannot_change() -> None:
    sale = make_sale(stock=5)
    sale.total_stock = 50
    with pytest.raises(SaleLocked):
        sale_update(sale=sale)
    sale.refresh_from_db()
    assert sale.total_stock == 5
    assert inventory.sale_counts(sale.pk).total == 5


def test_a_warmed_sale_records_when() -> None:
    sale = make_sale(warm=False)
    before = timezone.now()
    sale_warm(sale=sale)
    sale.refresh_from_db()
    assert sale.warmed_at is not None and sale.warmed_at >= before
