"""The local sold-out marker: no Redis round trip once a process saw a sale sell out, until
a unit comes back (a cancelled order's stock-return event)."""

from __future__ import annotations

import pytest
from django.test import Client

from core.redis_store import inventory_redis
from flashsale_project.localservers import LocalRedis
from orders.drain import sale_orders_drain
from orders.models import Order, OrderStatus
from orders.services import order_release
from sales import inventory
from sales.soldout import sold_out_markers
from tests.clients import purchase
from tests.factories import make_sale, make_shopper
from tests.polling import wait_for

pytestmark = pytest.mark.django_db


def _commands_processed() -> int:
    return int(inventory_redis().info("stats")["total_commands_processed"])


def test_a_sold_out_sale_costs_no_redis_call_per_request(client: Client, own_redis: LocalRedis) -> None:
    sale = make_sale(stock=1)
    assert sold_out_markers.wait_until_listening()
    assert purchase(client, sale.pk, make_shopper()[1]).status_code == 201  # The last unit.
    tokens = [make_shopper()[1] for _ in range(50)]

    before = _commands_processed()
    answers = [purchase(client, sale.pk, token) for token in tokens]
    after = _commands_processed()

    assert {answer.json()["status"] for answer in answers} == {"SOLD_OUT"}
    assert after - before == 1  # The INFO call that read `before`; nothing from 50 purchases.


def test_a_stock_return_clears_the_marker_and_the_unit_sells_again(client: Client) -> None:
    sale = make_sale(stock=1)
    assert sold_out_markers.wait_until_listening()
    winner, winner_token = make_shopper()
    assert purchase(client, sale.pk, winner_token).status_code == 201
    assert sold_out_markers.is_sold_out(sale.pk)
    sale_orders_drain(sale_id=sale.pk)
    order = Order.objects.get(sale=sale, user=winner)

    order_release(order=order, status=OrderStatus.CANCELLED)
    wait_for(lambda: not sold_out_markers.is_sold_out(sale.pk), what="the stock-return event", timeout=10)

    late, late_token = make_shopper()
    answer = purchase(client, sale.pk, late_token)
    assert answer.status_code == 201
    assert inventory.sale_buyers(sale.pk) == {late.pk: answer.json()["order_id"]}
    assert inventory.sale_counts(sale.pk).stock_consistent
    # The buyer whose order was cancelled keeps their one purchase used.
    again = purchase(client, sale.pk, winner_token)
    assert again.json()["status"] == "SOLD_OUT"
