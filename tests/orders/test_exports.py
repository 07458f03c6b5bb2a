"""After the sale: its orders as CSV and JSON, from the admin and from ``manage.py flashsale
export``; a rehearsal's shadow orders are in none of them."""

from __future__ import annotations

import csv
import io
import json
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings

from orders.drain import sale_orders_drain
from orders.exports import EXPORT_FIELDS
from orders.models import Order, OrderStatus, WebhookEndpoint, WebhookEvent
from orders.services import order_confirmations_send, order_mark_paid
from sales.selectors import sale_newest_for_product
from sales.services import sale_shadow_create
from sales.warming import sale_warm
from tests.factories import make_sale, make_user, make_wins

pytestmark = pytest.mark.django_db


def _sale_with_orders(count: int, *, paid: int = 0) -> tuple[int, list[Order]]:
    sale = make_sale(stock=count + 2)
    users = [make_user() for _ in range(count)]
    make_wins(sale.pk, [user.pk for user in users])
    sale_orders_drain(sale_id=sale.pk)
    orders = list(Order.objects.filter(sale=sale).order_by("created_at", "id"))
    for order in orders[:paid]:
        order_mark_paid(order=order)
    return sale.pk, list(Order.objects.filter(sale=sale).select_related("user").order_by("created_at", "id"))


def _expected(order: Order) -> dict[str, str]:
    return {
        "order_id": str(order.id),
        "sale_id": str(order.sale_id),
        "product": order.sale.product.slug,
        "user_id": str(order.user_id),
        "username": order.user.username,
        "email": order.user.email,
        "unit_price": "1.00",
        "status": order.status,
        "created_at": order.created_at.isoformat(),
        "paid_at": order.paid_at.isoformat() if order.paid_at else "",
        "confirmation_sent_at": order.confirmation_sent_at.isoformat() if order.confirmation_sent_at else "",
    }


def test_the_command_exports_every_order_of_the_sale_as_csv_and_as_json(tmp_path: Path) -> None:
    # Given a sale with three orders, one paid, and another sale's order
    sale_id, orders = _sale_with_orders(3, paid=1)
    _sale_with_orders(1)

    # When the operator exports it to a file as CSV, and to stdout as JSON
    said = StringIO()
    call_command("flashsale", "export", str(sale_id), "--output", str(tmp_path / "orders.csv"), stdout=said)
    as_json = StringIO()
    call_command("flashsale", "export", str(sale_id), "--format", "json", stdout=as_json)

    # Then both hold exactly its orders, oldest first, every field
    with (tmp_path / "orders.csv").open(newline="", encoding="utf-8") as exported:
        rows = list(csv.DictReader(exported))
    assert f"Sale {sale_id}: 3 order(s) written to {tmp_path / 'orders.csv'} (csv)." in said.getvalue()
    assert list(rows[0]) == list(EXPORT_FIELDS)
    assert rows == [_expected(order) for order in orders]
    assert rows[0]["status"] == OrderStatus.PAID
    documents = json.loads(as_json.getvalue())
    assert [{name: "" if value is None else str(value) for name, value in row.items()} for row in documents] == rows
    assert documents[0]["sale_id"] == sale_id and documents[1]["paid_at"] is None


def test_the_command_says_what_it_cannot_export() -> None:
    real = make_sale()
    shadow = sale_shadow_create(sale=real, stock=3, starts_at=timezone.now())
    for args, message in (
        (["999999"], "No sale '999999'"),
        ([str(shadow.pk)], "is a rehearsal's shadow sale"),
        ([str(real.pk), "--json"], "give --output FILE"),
        ([str(real.pk), "--format", "xml"], "invalid choice: 'xml'"),
    ):
        with pytest.raises(CommandError, match=message):
            call_command("flashsale", "export", *args, stdout=StringIO())


@pytest.fixture
def staff_client(client: Client) -> Client:
    client.force_login(get_user_model().objects.create_superuser("exporter", "exporter@example.com", "pw-exp-12345"))
    return client


def _downloaded(response: object) -> str:
    return b"".join(response.streaming_content).decode()  # type: ignore[attr-defined]


def test_the_admin_exports_a_sales_orders_and_the_selected_ones(staff_client: Client) -> None:
    sale_id, orders = _sale_with_orders(3)

    whole = staff_client.get(f"/admin/orders/order/export/?sale={sale_id}&format=csv")
    as_json = staff_client.get(f"/admin/orders/order/export/?sale={sale_id}&format=json")
    picked = staff_client.post(
        "/admin/orders/order/",
        {"action": "export_json", "_selected_action": [str(orders[0].id), str(orders[2].id)]},
    )
    picked_csv = staff_client.post(
        "/admin/orders/order/", {"action": "export_csv", "_selected_action": [str(orders[1].id)]}
    )

    assert whole["Content-Type"] == "text/csv; charset=utf-8"
    assert whole["Content-Disposition"] == f'attachment; filename="orders-sale-{sale_id}.csv"'
    assert list(csv.DictReader(io.StringIO(_downloaded(whole)))) == [_expected(order) for order in orders]
    assert [row["order_id"] for row in json.loads(_downloaded(as_json))] == [str(order.id) for order in orders]
    assert [row["order_id"] for row in json.loads(_downloaded(picked))] == [str(orders[0].id), str(orders[2].id)]
    assert [row["order_id"] for row in csv.DictReader(io.StringIO(_downloaded(picked_csv)))] == [str(orders[1].id)]
    assert staff_client.get("/admin/orders/order/export/?format=xml").status_code == 404


def test_a_shopper_cannot_export(client: Client) -> None:
    sale_id, _ = _sale_with_orders(1)
    client.force_login(make_user())

    response = client.get(f"/admin/orders/order/export/?sale={sale_id}")

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_a_shadow_sale_and_its_orders_stay_out_of_lists_exports_emails_and_webhooks(
    staff_client: Client, mailoutbox: list[EmailMessage], settings: Settings
) -> None:
    client = Client()
    # Given a real sale and a rehearsal's shadow of it starting later, one shopper winning both
    real = make_sale(stock=5)
    shadow = sale_shadow_create(sale=real, stock=5, starts_at=timezone.now())
    assert shadow.starts_at > real.starts_at
    sale_warm(sale=shadow)
    settings.WEBHOOKS_QUEUE = "nobody-consumes-this"  # Recorded, not sent: this test reads the rows.
    WebhookEndpoint.objects.create(url="https://shop.example/hooks", events=["order.created"], secret="s" * 32)
    shopper = make_user(username="twice")
    real_order = make_wins(real.pk, [shopper.pk])[shopper.pk]
    shadow_order = make_wins(shadow.pk, [shopper.pk])[shopper.pk]
    for sale in (real, shadow):
        sale_orders_drain(sale_id=sale.pk)
    sent = order_confirmations_send(order_ids=[real_order, shadow_order])

    # Then the storefront lists the real sale alone, and the product's newest sale is the real one
    listed = [sale["id"] for sale in client.get("/api/sales/").json()]
    assert real.pk in listed and shadow.pk not in listed
    newest = sale_newest_for_product(real.product.slug)
    assert newest is not None and newest.pk == real.pk
    # And the shopper's orders, the admin's default list and the export hold the real order alone
    client.force_login(shopper)
    assert [order["id"] for order in client.get("/api/orders/").json()] == [real_order]
    assert shadow_order not in client.get("/orders/").content.decode()
    default_list = staff_client.get("/admin/orders/order/").content.decode()
    assert real_order in default_list and shadow_order not in default_list
    assert shadow_order in staff_client.get("/admin/orders/order/?rehearsal=also").content.decode()
    only = staff_client.get("/admin/orders/order/?rehearsal=only").content.decode()
    assert shadow_order in only and real_order not in only
    exported = _downloaded(staff_client.get("/admin/orders/order/export/?format=csv"))
    assert real_order in exported and shadow_order not in exported
    # And only the real order was emailed; the shadow order is marked handled, so never re-sent
    assert sent == 1
    assert len(mailoutbox) == 1 and real_order in str(mailoutbox[0].body)
    assert Order.objects.get(id=shadow_order).confirmation_sent_at is not None
    # And the shop's webhook endpoint hears of the real order alone
    assert [str(order_id) for order_id in WebhookEvent.objects.values_list("order_id", flat=True)] == [real_order]
