"""The orders API: a shopper sees their own orders only."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client

from orders.drain import sale_orders_drain
from sales.purchase import purchase_attempt
from tests.factories import auth, make_sale, make_shopper

pytestmark = pytest.mark.django_db


def test_orders_show_the_callers_own_orders_only(client: Client) -> None:
    sale = make_sale(stock=5)
    mine, my_token = make_shopper()
    theirs, _ = make_shopper()
    my_order = purchase_attempt(sale_id=sale.pk, user_id=mine.pk).order_id
    their_order = purchase_attempt(sale_id=sale.pk, user_id=theirs.pk).order_id
    sale_orders_drain(sale_id=sale.pk)

    listed = client.get("/api/orders/", headers=auth(my_token)).json()
    own = client.get(f"/api/orders/{my_order}/", headers=auth(my_token))
    foreign = client.get(f"/api/orders/{their_order}/", headers=auth(my_token))
    garbage = client.get("/api/orders/not-a-uuid/", headers=auth(my_token))
    anonymous = client.get("/api/orders/")

    assert [order["id"] for order in listed] == [my_order]
    assert set(listed[0]) == {"id", "sale_id", "product", "unit_price", "status", "created_at", "paid_at", "pay_by"}
    assert own.status_code == 200
    assert own.json()["status"] == "PENDING"
    assert foreign.status_code == 404
    assert foreign.json() == {"status": "NOT_FOUND", "detail": "You have no order with this id."}
    assert garbage.status_code == 404
    assert anonymous.status_code == 401
    assert anonymous.json()["status"] == "UNAUTHENTICATED"
    assert uuid.UUID(their_order)
