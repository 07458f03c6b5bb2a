from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from orders.models import Order
from sales import inventory
from tests.factories import make_sale, make_user

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
