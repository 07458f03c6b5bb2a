"""The local sold-out marker: no Redis round trip once a process saw a sale sell out, until
a unit comes back (a cancelled order's stock-return event)."""

from __future__ import annotations

import pytest
from django.test import Client

from antibot.soldout import sold_out_markers
from devstack.localservers import LocalRedis
from flashsale_project.redis_store import inventory_redis
from orders.models import Order, OrderStatus
from orders.services import order_release, orders_expire_unpaid, sale_orders_drain
from sales import inventory
from tests.factories import auth, make_sale, make_shopper
from tests.polling import wait_for

pytestmark = pytest.mark.django_db


def _commands_processed() -> int:
    return int(inventory_redis().info("stats")["total_commands_processed"])


def _purchase(client: Client, sale_id: int, token: str):  # type: ignore[no-untyped-def]
    return client.post(f"/api/sales/{sale_id}/purchase/", "{}", content_type="application/json", headers=auth(token))


def test_a_sold_out_sale_costs_no_redis_call_per_request(client: Client, own_redis: LocalRedis) -> None:
    sale = make_sale(stock=1)
    assert sold_out_markers.wait_until_listening()
    assert _purchase(client, sale.pk, make_shopper()[1]).status_code == 201  # The last unit.
    tokens = [make_shopper()[1] for _ in range(50)]

    before = _commands_processed()
    answers = [_purchase(client, sale.pk, token) for token in tokens]
    after = _commands_processed()

    assert {answer.json()["status"] for answer in answers} == {"SOLD_OUT"}
    assert after - before == 1  # The INFO call that read `before`; nothing from 50 purchases.


def test_a_stock_return_clears_the_marker_and_the_unit_sells_again(client: Client) -> None:
    sale = make_sale(stock=1)
    assert sold_out_markers.wait_until_listening()
    winner, winner_token = make_shopper()
    assert _purchase(client, sale.pk, winner_token).status_code == 201
    assert sold_out_markers.is_sold_out(sale.pk)
    sale_orders_drain(sale_id=sale.pk)
    order = Order.objects.get(sale=sale, user=winner)

    order_release(order=order, status=OrderStatus.CANCELLED)
    wait_for(lambda: not sold_out_markers.is_sold_out(sale.pk), what="the stock-return event", timeout=10)

    late, late_token = make_shopper()
    answer = _purchase(client, sale.pk, late_token)
    assert answer.status_code == 201
    assert inventory.sale_buyers(sale.pk) == {late.pk: answer.json()["order_id"]}
    assert inventory.sale_counts(sale.pk).stock_consistent
    # The buyer whose order was cancelled keeps their one purchase used.
    again = _purchase(client, sale.pk, winner_token)
    assert again.json()["status"] == "SOLD_OUT"


def test_a_cancelled_buyer_cannot_buy_again_while_units_are_left(client: Client) -> None:
    sale = make_sale(stock=3)
    _, token = make_shopper()
    first = _purchase(client, sale.pk, token).json()
    sale_orders_drain(sale_id=sale.pk)
    order_release(order=Order.objects.get(id=first["order_id"]), status=OrderStatus.CANCELLED)

    again = _purchase(client, sale.pk, token)

    assert again.status_code == 409
    assert again.json() == {
        "status": "ALREADY_PURCHASED",
        "detail": "You already hold this sale's limit of one unit.",
        "order_id": first["order_id"],
    }
    assert inventory.sale_counts(sale.pk).remaining == 3


def test_releasing_twice_returns_one_unit(client: Client) -> None:
    sale = make_sale(stock=2)
    buyer, token = make_shopper()
    order_id = _purchase(client, sale.pk, token).json()["order_id"]
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
