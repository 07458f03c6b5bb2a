"""The benchmark's baselines: the control view and the naive shop, which must keep its
promise (never oversell) however hard it is hit, or the comparison would be unfair to it."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import httpx
import pytest
from django.test import Client

from naive_shop.models import NaiveOrder, NaiveStock
from naive_shop.selectors import naive_stock_check
from naive_shop.services import naive_stock_create
from tests.factories import auth, make_shoppers
from tests.processes import ChildProcess


def _buy(client: Client, stock_id: int, token: str | None):  # type: ignore[no-untyped-def]
    headers = auth(token) if token else {}
    return client.post(f"/bench/naive/{stock_id}/purchase/", "", content_type="application/json", headers=headers)


@pytest.mark.django_db
def test_the_baseline_endpoints_are_not_mounted_unless_the_setting_is_on(client: Client) -> None:
    stock = naive_stock_create(name="phone", total=3)
    [(_, token)] = make_shoppers(1)

    assert client.post("/bench/control/").status_code == 404
    assert _buy(client, stock.pk, token).status_code == 404
    assert NaiveStock.objects.get(pk=stock.pk).remaining == 3


@pytest.mark.django_db
def test_the_control_answers_a_bare_json_body(client: Client, bench_endpoints: None) -> None:
    response = client.post("/bench/control/")

    assert response.status_code == 200
    assert response.json() == {"status": "OK"}


@pytest.mark.django_db
def test_a_naive_purchase_locks_decrements_and_inserts_the_order(client: Client, bench_endpoints: None) -> None:
    # Given two units and three shoppers
    stock = naive_stock_create(name="phone", total=2)
    (first, first_token), (_, second_token), (_, third_token) = make_shoppers(3)

    # When they buy in turn, the first one twice
    won = _buy(client, stock.pk, first_token)
    again = _buy(client, stock.pk, first_token)
    second = _buy(client, stock.pk, second_token)
    late = _buy(client, stock.pk, third_token)

    # Then the first two win, the retry and the third are refused, and the row agrees
    assert won.status_code == 201
    assert won.json()["status"] == "SUCCESS"
    assert won.json()["remaining_stock"] == 1
    assert NaiveOrder.objects.get(pk=uuid.UUID(won.json()["order_id"])).user_id == first
    assert (again.status_code, again.json()) == (
        409,
        {"status": "ALREADY_PURCHASED", "order_id": won.json()["order_id"]},
    )
    assert second.status_code == 201
    assert second.json()["remaining_stock"] == 0
    assert (late.status_code, late.json()) == (409, {"status": "SOLD_OUT", "remaining_stock": 0})
    check = naive_stock_check(stock_id=stock.pk)
    assert (check.total, check.remaining, check.orders, check.oversold, check.consistent) == (2, 0, 2, 0, True)


@pytest.mark.django_db
def test_a_naive_purchase_needs_a_user_a_known_stock_and_a_post(client: Client, bench_endpoints: None) -> None:
    stock = naive_stock_create(name="phone", total=2)
    [(_, token)] = make_shoppers(1)

    assert _buy(client, stock.pk, None).status_code == 401
    assert _buy(client, stock.pk, "not-a-token").status_code == 401
    assert _buy(client, stock.pk + 1000, token).json()["status"] == "NOT_FOUND"
    assert client.get(f"/bench/naive/{stock.pk}/purchase/", headers=auth(token)).status_code == 405
    assert NaiveStock.objects.get(pk=stock.pk).remaining == 2


async def _stampede(base_url: str, stock_id: int, tokens: list[str]) -> list[tuple[str, int, dict]]:
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:

        async def attempt(token: str) -> tuple[str, int, dict]:
            response = await client.post(
                f"/bench/naive/{stock_id}/purchase/", headers={"Authorization": f"Token {token}"}
            )
            return token, response.status_code, response.json()

        return await asyncio.gather(*(attempt(token) for token in tokens))


@pytest.mark.django_db(transaction=True)
def test_the_naive_shop_never_oversells_under_a_real_concurrent_stampede(bench_web: ChildProcess) -> None:
    # Given 7 units and 150 shoppers who each try twice at once, through the real server
    stock = naive_stock_create(name="phone", total=7)
    shoppers = make_shoppers(150)
    tokens = [token for _, token in shoppers] * 2

    # When all 300 attempts arrive together
    answers = asyncio.run(_stampede(bench_web.url, stock.pk, tokens))

    # Then exactly 7 win, each a different shopper, and every other answer is a 409
    statuses = Counter(status for _, status, _ in answers)
    assert statuses == {201: 7, 409: 293}
    winners = [token for token, status, _ in answers if status == 201]
    assert len(set(winners)) == 7
    refused = Counter(body["status"] for _, status, body in answers if status == 409)
    assert set(refused) <= {"SOLD_OUT", "ALREADY_PURCHASED"}
    check = naive_stock_check(stock_id=stock.pk)
    assert (check.remaining, check.orders, check.oversold, check.users_with_more_than_one) == (0, 7, 0, 0)
