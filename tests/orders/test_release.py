"""Releasing a unit (cancelled or expired order): the stock comes back once, the buyer stays
a buyer, the payment window expires unpaid orders."""

from __future__ import annotations

import pytest
from django.test import Client

from orders.drain import sale_orders_drain
from orders.models import Order, OrderStatus
from orders.services import order_release, orders_expire_unpaid
from sales import inventory
from tests.clients import purchase
from tests.factories import auth, make_sale, make_shopper

pytestmark = pytest.mark.django_db


def test_a_cancelled_buyer_cannot_buy_again_while_units_are_left(client: Client) -> None:
    sale = make_sale(stock=3)
    _, token = make_shopper()
    first = purchase(client, sale.pk, token).json()
    sale_orders_drain(sale_id=sale.pk)
    order_release(order=Order.objects.get(id=first["order_id"]), status=OrderStatus.CANCELLED)

    again = purchase(client, sale.pk, token)

    assert again.status_code == 409
    answer = again.json()
    answer.pop("receipt", None)  # the script's answers carry one, the process's own do not
    assert answer == {
        "status": "ALREADY_PURCHASED",
        "detail": "You already hold this sale's limit of one unit.",
        "order_id": first["order_id"],
    }
    assert inventory.sale_counts(sale.pk).remaining == 3


def test_releasing_twice_returns_one_unit(client: Client) -> None:
    sale = make_sale(stock=2)
    buyer, token = make_shopper()
    order_id = purchase(client, sale.pk, token).json()["order_id"]
    assert inventory.unit_release(sale_id=sale.pk, user_id=buyer.pk, order_id=order_id).returned is True
    assert inventory.unit_release(sale_id=sale.pk, user_id=buyer.pk, order_id=order_id).returned is False
    counts = inventory.sale_counts(sale.pk)
    assert (counts.remaining, counts.buyers) == (2, 0)


def test_orders_unpaid_past_the_payment_window_expire_and_give_their_units_back() -> None:
    sale = make_sale(stock=2)
    _, token = make_shopper()
    Client().post(f"/api/sales/{sale.pk}/purchase/", "{}", content_type="application/json", headers=auth(token))
    sale_orders_drain(sale_id=sale.pk)
    Order.objects.filter(sale=sale).update(created_at=Order.objects.get(sale=sale).created_at.replace(year=2020))

    expired = orders_expire_unpaid(window_seconds=900)

    assert expired == 1
    assert Order.objects.get(sale=sale).status == OrderStatus.EXPIRED
    assert inventory.sale_counts(sale.pk).remaining == 2
