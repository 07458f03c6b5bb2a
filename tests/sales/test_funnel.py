"""The admission funnel: the answers a web process gives with no network call, and the
winner who hears their order from every layer (sales/funnel.py, docs/funnel.md)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.test import Client, override_settings

from core.events import subscription
from core.redis_store import inventory_redis
from devstack.localservers import LocalRedis
from orders.drain import sale_orders_drain
from orders.models import Order, OrderStatus
from orders.services import order_release
from sales import inventory
from sales.known import known_sales
from sales.tally import tally
from tests.clients import purchase
from tests.factories import make_sale, make_shopper, make_shoppers
from tests.polling import wait_for
from tests.processes import ChildProcess

pytestmark = pytest.mark.django_db
# Tests that count Redis commands keep the sale's meta for their whole run.
KEEP_META = override_settings(FLASHSALE_META_LOCAL_SECONDS=600)


# What the process runs on its own time, not a request's: the answer counts' flush (once a
# second, sales/tally.py), the subscription's keep-alive, and this test's own INFO.
BACKGROUND = {"hincrby", "ping", "info"}


def _commands_processed() -> int:
    """Commands Redis has run for requests so far (every command but the background ones)."""
    stats = inventory_redis().info("commandstats")
    return sum(int(entry["calls"]) for name, entry in stats.items() if name.removeprefix("cmdstat_") not in BACKGROUND)


@KEEP_META
def test_a_sold_out_sale_costs_no_redis_call_per_request(client: Client, own_redis: LocalRedis) -> None:
    sale = make_sale(stock=1)
    assert subscription.wait_until_live()
    winner = make_shopper()[1]
    won = purchase(client, sale.pk, winner).json()  # The last unit.
    tokens = [make_shopper()[1] for _ in range(50)]

    before = _commands_processed()
    answers = [purchase(client, sale.pk, token) for token in tokens]
    again = purchase(client, sale.pk, winner)
    after = _commands_processed()

    assert {answer.json()["status"] for answer in answers} == {"SOLD_OUT"}
    assert again.json() == {
        "status": "ALREADY_PURCHASED",
        "detail": "You already hold this sale's limit of one unit.",
        "order_id": won["order_id"],
    }
    assert after == before  # Nothing from 51 purchases.


def test_a_stock_return_clears_the_marker_and_the_unit_sells_again(client: Client) -> None:
    sale = make_sale(stock=1)
    assert subscription.wait_until_live()
    winner, winner_token = make_shopper()
    first = purchase(client, sale.pk, winner_token).json()
    assert known_sales.sold_out(sale.pk)
    sale_orders_drain(sale_id=sale.pk)

    order_release(order=Order.objects.get(sale=sale, user=winner), status=OrderStatus.CANCELLED)
    wait_for(lambda: not known_sales.sold_out(sale.pk), what="the stock-return event", timeout=10)

    late, late_token = make_shopper()
    answer = purchase(client, sale.pk, late_token)
    assert answer.status_code == 201
    assert inventory.sale_buyers(sale.pk) == {late.pk: answer.json()["order_id"]}
    assert inventory.sale_counts(sale.pk).stock_consistent
    # The buyer whose order was cancelled keeps their one purchase used, and hears its id.
    again = purchase(client, sale.pk, winner_token).json()
    assert (again["status"], again["order_id"]) == ("ALREADY_PURCHASED", first["order_id"])


@KEEP_META
def test_before_the_start_the_crowd_hears_not_started_from_the_process(client: Client, own_redis: LocalRedis) -> None:
    sale = make_sale(starts_in=60)
    assert subscription.wait_until_live()
    purchase(client, sale.pk, make_shopper()[1])  # This process reads the sale once.
    tokens = [make_shopper()[1] for _ in range(20)]

    before = _commands_processed()
    answers = [purchase(client, sale.pk, token) for token in tokens]
    after = _commands_processed()

    assert {(answer.status_code, answer.json()["status"]) for answer in answers} == {(409, "NOT_STARTED")}
    assert after == before


@KEEP_META
@override_settings(FLASHSALE_CROWD_INTERVAL_MS=600_000)  # One interval for the whole test.
def test_more_attempts_than_k_times_the_stock_left_hear_429_crowd(client: Client, own_redis: LocalRedis) -> None:
    # Four units, k = 0.5: the interval lets through ceil(0.5 x 4) = 2 attempts.
    sale = make_sale(stock=4, crowd_factor=0.5)
    assert subscription.wait_until_live()
    tokens = [make_shopper()[1] for _ in range(3)]

    first = purchase(client, sale.pk, tokens[0])
    second = purchase(client, sale.pk, tokens[1])
    before = _commands_processed()
    third = purchase(client, sale.pk, tokens[2])  # the interval's two are spent: shed
    after = _commands_processed()

    assert (first.status_code, second.status_code) == (201, 201)
    assert third.status_code == 429
    assert third.json()["status"] == "RATE_LIMITED"
    assert third.json()["reason"] == "crowd"
    assert int(third.headers["Retry-After"]) >= 1
    assert after == before  # No Redis call for the shed attempt.
    assert inventory.sale_counts(sale.pk).remaining == 2  # The units stay for the next interval.


@KEEP_META
@override_settings(FLASHSALE_CROWD_INTERVAL_MS=600_000)
def test_an_interval_lets_through_k_times_the_stock_it_began_with(client: Client) -> None:
    # Three units, k = 2: six attempts may go on; four shoppers in a row all reach the script.
    sale = make_sale(stock=3, crowd_factor=2)
    assert subscription.wait_until_live()
    answers = [purchase(client, sale.pk, make_shopper()[1]).json()["status"] for _ in range(4)]
    assert answers == ["SUCCESS", "SUCCESS", "SUCCESS", "SOLD_OUT"]


def test_a_crowd_factor_of_zero_turns_stock_aware_admission_off(client: Client) -> None:
    sale = make_sale(stock=1, crowd_factor=0)
    assert subscription.wait_until_live()
    answers = [purchase(client, sale.pk, make_shopper()[1]).json()["status"] for _ in range(3)]
    assert answers == ["SUCCESS", "SOLD_OUT", "SOLD_OUT"]


def test_every_layer_counts_its_answers_in_the_funnel(client: Client) -> None:
    sale = make_sale(stock=1)
    assert subscription.wait_until_live()
    winner = make_shopper()[1]
    purchase(client, sale.pk, winner)
    purchase(client, sale.pk, make_shopper()[1])
    purchase(client, sale.pk, winner)

    tally.flush()

    stats = inventory.sale_stats(sale.pk)
    assert stats["arrived"] == 3
    assert stats["script"] == 1
    assert stats["shed:sold_out"] + stats["shed:winner"] == 2
    assert stats["answer:SUCCESS"] == 1


def test_a_winner_hears_their_order_from_every_process_after_the_sale_sold_out(
    django_db_blocker: object, web_server: ChildProcess
) -> None:
    # Two units, two web processes (granian workers), real HTTP.
    sale = make_sale(stock=2)
    (winner_id, winner), (_, other), *losers = make_shoppers(12)
    won = purchase(web_server, sale.pk, winner)
    assert purchase(web_server, sale.pk, other).status_code == 201  # The last unit: sold out.
    late = [purchase(web_server, sale.pk, token) for _, token in losers]  # Markers set everywhere.

    with ThreadPoolExecutor(8) as pool:
        retries = list(pool.map(lambda _: purchase(web_server, sale.pk, winner), range(40)))

    assert won.status_code == 201
    assert {answer.json()["status"] for answer in late} == {"SOLD_OUT"}
    assert {(answer.status_code, answer.json()["status"], answer.json()["order_id"]) for answer in retries} == {
        (409, "ALREADY_PURCHASED", won.json()["order_id"])
    }
    assert inventory.sale_buyers(sale.pk)[winner_id] == won.json()["order_id"]
