from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from pytest_django.fixtures import Settings

from orders.models import Order
from sales import inventory
from sales.models import FlashSale
from tests.factories import make_product, make_sale, make_user

pytestmark = pytest.mark.django_db

ADMIN_PAGES = [
    "/admin/",
    "/admin/sales/product/",
    "/admin/sales/product/add/",
    "/admin/sales/flashsale/",
    "/admin/sales/flashsale/add/",
    "/admin/orders/order/",
]


@pytest.fixture
def staff_client(client: Client) -> Client:
    admin = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw-boss-12345")
    client.force_login(admin)
    return client


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_admin_pages_load_for_staff(staff_client: Client, path: str) -> None:
    make_sale()
    response = staff_client.get(path)
    assert response.status_code == 200


def test_a_sale_change_page_shows_its_live_state_from_redis(staff_client: Client) -> None:
    sale = make_sale(stock=7)
    response = staff_client.get(f"/admin/sales/flashsale/{sale.pk}/change/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "Remaining stock" in body
    assert "7 + 0 = 7: holds" in body


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_admin_pages_refuse_a_shopper(client: Client, path: str) -> None:
    client.force_login(make_user())
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_admin_pages_refuse_anonymous_visitors(client: Client) -> None:
    response = client.get("/admin/orders/order/")
    assert response.status_code == 302
    assert Order.objects.count() == 0


def test_the_warm_action_loads_a_sale_into_redis(staff_client: Client) -> None:
    sale = make_sale(stock=4, warm=False)
    assert inventory.sale_counts(sale.pk).loaded is False

    response = staff_client.post(
        "/admin/sales/flashsale/", {"action": "warm", "_selected_action": [sale.pk]}, follow=True
    )

    assert response.status_code == 200
    counts = inventory.sale_counts(sale.pk)
    assert (counts.loaded, counts.remaining, counts.total) == (True, 4, 4)
    sale.refresh_from_db()
    assert sale.warmed_at is not None


def _sale_form(product_id: int, **fields: str) -> dict[str, str]:
    form = {
        "product": str(product_id),
        "price": "1.00",
        "total_stock": "10",
        "per_user_limit": "1",
        "starts_at_0": "2026-11-11",
        "starts_at_1": "00:00:00",
        "ends_at_0": "2026-11-11",
        "ends_at_1": "00:15:00",
        "pow_difficulty": "0",
        "bucket_capacity": "1000",
        "bucket_refill_per_second": "500",
        "crowd_factor": "2.0",
        "admission": "direct",
        "pre_queue_opens_at_0": "",
        "pre_queue_opens_at_1": "",
        "serving_rate": "",
    }
    form.update(fields)
    return form


def test_the_window_is_typed_and_shown_on_the_shops_clock(staff_client: Client, settings: Settings) -> None:
    # Given a shop in Shanghai
    settings.SHOP_TIME_ZONE = "Asia/Shanghai"
    product = make_product()
    form_page = staff_client.get("/admin/sales/flashsale/add/").content.decode()
    assert "Window (Asia/Shanghai)" in form_page
    assert "Shop time (Asia/Shanghai)." in form_page

    # When the operator schedules a sale at midnight on 11.11 there
    response = staff_client.post("/admin/sales/flashsale/add/", _sale_form(product.pk))

    # Then it starts at that instant, stored in UTC
    assert response.status_code == 302, response.content.decode()[:2000]
    sale = FlashSale.objects.get(product=product)
    assert sale.starts_at == datetime(2026, 11, 10, 16, 0, tzinfo=UTC)
    assert sale.ends_at == datetime(2026, 11, 10, 16, 15, tzinfo=UTC)
    assert str(sale) == f"{product.name} at 1.00 (10 units, 2026-11-11 00:00 Asia/Shanghai)"
    # And its page shows it back on the shop's clock
    change = staff_client.get(f"/admin/sales/flashsale/{sale.pk}/change/").content.decode()
    assert 'name="starts_at_0" value="2026-11-11"' in change
    assert 'name="starts_at_1" value="00:00:00"' in change
    assert 'name="ends_at_1" value="00:15:00"' in change

    # And a shop in New York sees the same instant as the afternoon before
    settings.SHOP_TIME_ZONE = "America/New_York"
    change = staff_client.get(f"/admin/sales/flashsale/{sale.pk}/change/").content.decode()
    assert "Window (America/New_York)" in change
    assert 'name="starts_at_0" value="2026-11-10"' in change
    assert 'name="starts_at_1" value="11:00:00"' in change
    listing = staff_client.get("/admin/sales/flashsale/").content.decode()
    assert "Nov. 10, 2026, 11 a.m." in listing


def test_a_wall_time_the_shops_clocks_skip_is_refused_on_the_form(staff_client: Client, settings: Settings) -> None:
    settings.SHOP_TIME_ZONE = "America/New_York"
    product = make_product()

    response = staff_client.post(
        "/admin/sales/flashsale/add/",
        _sale_form(product.pk, starts_at_0="2026-03-08", starts_at_1="02:30:00", ends_at_0="2026-03-08"),
    )

    assert response.status_code == 200
    assert "2026-03-08 02:30 in America/New_York does not exist there" in response.content.decode()
    assert FlashSale.objects.filter(product=product).count() == 0
