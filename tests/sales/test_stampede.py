"""Stampedes through the real HTTP server (granian, two worker processes) with real
concurrency, then the real Celery worker turning the wins into orders and emails."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path

import httpx
import pytest

from orders.models import Order
from sales import inventory
from tests.clients import purchase_resent
from tests.factories import make_sale, make_shoppers
from tests.polling import wait_for
from tests.processes import ChildProcess, SharedWorker

pytestmark = pytest.mark.django_db(transaction=True)

CONCURRENCY = 200


async def _attempts(base_url: str, sale_id: int, tokens: list[str]) -> list[tuple[str, int, dict]]:
    """POST one purchase per entry of ``tokens`` (same token twice = the same user retrying),
    ``CONCURRENCY`` at a time, each sent again on a lost connection (``purchase_resent``).
    Returns (token, HTTP status, body) per attempt."""
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    gate = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:

        async def attempt(token: str) -> tuple[str, int, dict]:
            async with gate:
                response = await purchase_resent(client, sale_id, token)
                return token, response.status_code, response.json()

        return await asyncio.gather(*(attempt(token) for token in tokens))


def _emails(mail_dir: Path) -> list[str]:
    """Every message the file backend wrote. One file can hold several: it is named by the
    second and the backend object's id(), which Python reuses, and it is opened to append."""
    separator = "\n" + "-" * 79 + "\n"
    return [
        message
        for path in sorted(mail_dir.iterdir())
        for message in path.read_text(errors="replace").split(separator)
        if message.strip()
    ]


def test_a_stampede_sells_exactly_the_stock_and_every_win_becomes_one_order_and_one_email(
    purchase_stack: tuple[ChildProcess, SharedWorker], mail_dir: Path
) -> None:
    # Run twice: sale data on one Redis, then on a Redis Cluster (``purchase_stack``).
    web_server, worker = purchase_stack
    # Given ten units and a thousand shoppers who each try twice (2,000 attempts)
    sale = make_sale(stock=10)
    shoppers = make_shoppers(1000)
    tokens = [token for _, token in shoppers]
    first_tries, second_tries = tokens[:], tokens[:]
    random.shuffle(first_tries)
    random.shuffle(second_tries)

    # When they all press Buy through the real server
    results = asyncio.run(_attempts(web_server.url, sale.pk, first_tries + second_tries))

    # Then exactly ten won; every winner's second try heard their order; everybody else heard
    # "sold out", or "too many of you for what is left" (stock-aware admission) while units were
    statuses = Counter((status, body["status"]) for _, status, body in results)
    assert statuses[(201, "SUCCESS")] == 10
    assert statuses[(409, "ALREADY_PURCHASED")] == 10
    assert set(statuses) <= {(201, "SUCCESS"), (409, "ALREADY_PURCHASED"), (409, "SOLD_OUT"), (429, "RATE_LIMITED")}
    assert {body.get("reason") for _, status, body in results if status == 429} <= {"crowd"}
    assert sum(statuses.values()) == 2000
    wins = {body["order_id"]: token for token, status, body in results if status == 201}
    for token, _, body in results:
        if body["status"] == "ALREADY_PURCHASED":
            assert wins[body["order_id"]] == token
    assert len(wins) == 10
    assert len(set(wins.values())) == 10
    counts = inventory.sale_counts(sale.pk)
    assert (counts.remaining, counts.buyers, counts.total) == (0, 10, 10)
    assert counts.stock_consistent

    # And the worker turns each win into exactly one order with the same id, and one email
    wait_for(lambda: Order.objects.filter(sale=sale).count() >= 10, what="10 orders")
    user_of_token = {token: user_id for user_id, token in shoppers}
    orders = {str(order.id): order.user_id for order in Order.objects.filter(sale=sale)}
    assert orders == {order_id: user_of_token[token] for order_id, token in wins.items()}
    assert inventory.sale_buyers(sale.pk) == {user_id: order_id for order_id, user_id in orders.items()}
    wait_for(lambda: len(_emails(mail_dir)) >= 10, what="10 emails")
    worker.settle()  # Every task the drains sent has run: a duplicate email would be here now.
    emails = _emails(mail_dir)
    assert len(emails) == 10
    for order_id in orders:
        assert sum(order_id in email for email in emails) == 1


def test_shoppers_who_keep_retrying_still_get_one_unit_each(
    web_server: ChildProcess, celery_worker: ChildProcess
) -> None:
    # Given ten units and 700 shoppers who each fire three attempts at once (2,100 attempts)
    sale = make_sale(stock=10)
    shoppers = make_shoppers(700)
    tokens = [token for _, token in shoppers for _ in range(3)]
    random.shuffle(tokens)

    results = asyncio.run(_attempts(web_server.url, sale.pk, tokens))

    # Then ten different shoppers won one unit each; the rest were told why not
    wins = [(token, body["order_id"]) for token, status, body in results if status == 201]
    assert len(wins) == 10
    assert len({token for token, _ in wins}) == 10
    others = Counter(body["status"] for _, status, body in results if status != 201)
    assert set(others) <= {"SOLD_OUT", "ALREADY_PURCHASED", "RATE_LIMITED"}
    assert {body.get("reason") for _, status, body in results if status == 429} <= {"crowd"}
    assert sum(others.values()) == 2090
    for token, _, body in results:
        if body["status"] == "ALREADY_PURCHASED":
            assert (token, body["order_id"]) in wins
    counts = inventory.sale_counts(sale.pk)
    assert (counts.remaining, counts.buyers) == (0, 10)
    wait_for(lambda: Order.objects.filter(sale=sale).count() >= 10, what="10 orders")
    assert Order.objects.filter(sale=sale).count() == 10
    assert sorted(str(order_id) for order_id in Order.objects.filter(sale=sale).values_list("id", flat=True)) == sorted(
        order_id for _, order_id in wins
    )


def test_one_shopper_hammering_a_big_stock_wins_one_unit(web_server: ChildProcess) -> None:
    # Invariant I3 under real concurrency: 100 simultaneous attempts by one user.
    sale = make_sale(stock=1000)
    (user_id, token), *_ = make_shoppers(1)

    results = asyncio.run(_attempts(web_server.url, sale.pk, [token] * 100))

    statuses = Counter(body["status"] for _, _, body in results)
    assert statuses == {"SUCCESS": 1, "ALREADY_PURCHASED": 99}
    counts = inventory.sale_counts(sale.pk)
    assert (counts.remaining, counts.buyers) == (999, 1)
    assert list(inventory.sale_buyers(sale.pk)) == [user_id]


def test_one_unit_is_per_sale_so_a_winner_of_one_drop_may_win_the_next_of_the_same_product(
    web_server: ChildProcess,
) -> None:
    # The unit rule of docs/design.md ("One unit per sale"): two sales of one product are two
    # drops, each with its own buyers.
    first = make_sale(stock=5)
    second = make_sale(stock=5, product=first.product)
    (user_id, token), *_ = make_shoppers(1)

    results = asyncio.run(_attempts(web_server.url, first.pk, [token] * 20))
    again = asyncio.run(_attempts(web_server.url, second.pk, [token] * 20))

    assert Counter(body["status"] for _, _, body in results) == {"SUCCESS": 1, "ALREADY_PURCHASED": 19}
    assert Counter(body["status"] for _, _, body in again) == {"SUCCESS": 1, "ALREADY_PURCHASED": 19}
    won = {body["order_id"] for _, _, body in results + again if body["status"] == "SUCCESS"}
    assert len(won) == 2
    assert list(inventory.sale_buyers(first.pk)) == list(inventory.sale_buyers(second.pk)) == [user_id]
    assert inventory.sale_counts(first.pk).remaining == inventory.sale_counts(second.pk).remaining == 4
