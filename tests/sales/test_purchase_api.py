"""The purchase API's contract, through Django's handler (in-process, real Redis and
PostgreSQL): every answer of the table, the body shapes, and the zero-SQL hot path."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from accounts.services import user_session_warm
from core.events import subscription
from core.process_state import forget_process_state
from orders.models import Order
from sales import inventory, keys
from sales.tally import tally
from sales.warming import sale_meta_for
from tests.clients import purchase
from tests.factories import auth, make_sale, make_shopper

pytestmark = pytest.mark.django_db


def test_a_win_answers_201_with_the_order_id_and_the_stock_left(client: Client) -> None:
    sale = make_sale(stock=3)
    user, token = make_shopper()

    response = purchase(client, sale.pk, token)

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"status", "detail", "order_id", "remaining_stock", "receipt"}
    assert body["status"] == "SUCCESS"
    assert body["remaining_stock"] == 2
    assert inventory.sale_buyers(sale.pk) == {user.pk: body["order_id"]}
    assert uuid.UUID(body["order_id"]).version == 4


def test_the_purchase_makes_no_sql_query(client: Client, django_assert_num_queries: Callable) -> None:
    sale = make_sale(stock=5)
    _, token = make_shopper()
    purchase(client, sale.pk, make_shopper()[1])  # Warms this process's sale meta.

    with django_assert_num_queries(0):
        response = purchase(client, sale.pk, token)

    assert response.status_code == 201


def test_every_kind_of_answer_makes_no_sql_query(client: Client, django_assert_num_queries: Callable) -> None:
    sale = make_sale(stock=1)
    winner, loser = make_shopper()[1], make_shopper()[1]
    won = purchase(client, sale.pk, winner).json()

    with django_assert_num_queries(0):
        again = purchase(client, sale.pk, winner)
        sold_out = purchase(client, sale.pk, loser)
        marker = purchase(client, sale.pk, loser)

    assert [again.json()["status"], sold_out.json()["status"], marker.json()["status"]] == [
        "ALREADY_PURCHASED",
        "SOLD_OUT",
        "SOLD_OUT",
    ]
    assert again.json()["order_id"] == won["order_id"]


def test_a_session_purchase_makes_no_sql_query_once_the_login_warmed_the_cache(
    django_assert_num_queries: Callable,
) -> None:
    sale = make_sale(stock=5)
    purchase(Client(), sale.pk, make_shopper()[1])
    user, _ = make_shopper()
    browser = Client()
    browser.force_login(user)
    user_session_warm(user=user)

    with django_assert_num_queries(0):
        response = browser.post(f"/api/sales/{sale.pk}/purchase/", "{}", content_type="application/json")

    assert response.status_code == 201


def test_a_session_purchase_needs_the_csrf_token() -> None:
    sale = make_sale(stock=5)
    user, _ = make_shopper()
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)

    refused = browser.post(f"/api/sales/{sale.pk}/purchase/", "{}", content_type="application/json")
    browser.get("/admin/login/")  # Any page with a form sets the csrftoken cookie.
    csrf = browser.cookies["csrftoken"].value
    accepted = browser.post(
        f"/api/sales/{sale.pk}/purchase/", "{}", content_type="application/json", headers={"X-CSRFToken": csrf}
    )

    assert refused.status_code == 403
    assert refused.json()["status"] == "FORBIDDEN"
    assert accepted.status_code == 201


def _unreceipted(body: dict[str, Any]) -> dict[str, Any]:
    """The answer without its receipt, which only an answer of the script carries."""
    receipt = body.pop("receipt", None)
    assert receipt is None or set(receipt) == {"key_id", "sale_id", "seq", "leaf_hash", "time_ms", "signature"}
    return body


def test_a_second_purchase_by_the_same_user_answers_already_purchased_with_the_order(client: Client) -> None:
    sale = make_sale(stock=5)
    _, token = make_shopper()
    first = purchase(client, sale.pk, token).json()

    second = purchase(client, sale.pk, token)

    assert second.status_code == 409
    # (with a receipt when the script gave it, as it does while this process is not listening)
    assert _unreceipted(second.json()) == {
        "status": "ALREADY_PURCHASED",
        "detail": "You already hold this sale's limit of one unit.",
        "order_id": first["order_id"],
    }
    assert inventory.sale_counts(sale.pk).remaining == 4


def test_no_stock_answers_sold_out(client: Client) -> None:
    sale = make_sale(stock=1)
    purchase(client, sale.pk, make_shopper()[1])

    response = purchase(client, sale.pk, make_shopper()[1])

    assert response.status_code == 409
    assert _unreceipted(response.json()) == {"status": "SOLD_OUT", "detail": "Sold out: every unit has been sold."}


def test_before_the_start_answers_not_started(client: Client) -> None:
    sale = make_sale(starts_in=60)
    response = purchase(client, sale.pk, make_shopper()[1])
    assert response.status_code == 409
    assert response.json()["status"] == "NOT_STARTED"
    assert inventory.sale_counts(sale.pk).buyers == 0


def test_after_the_end_answers_ended(client: Client) -> None:
    sale = make_sale(starts_in=-20, duration=10)
    response = purchase(client, sale.pk, make_shopper()[1])
    assert response.status_code == 409
    assert response.json()["status"] == "ENDED"


def test_the_window_is_judged_by_the_redis_clock_and_the_loaded_sale(client: Client) -> None:
    # PostgreSQL says the sale opened a second ago; Redis is told it opens in a minute.
    sale = make_sale(starts_in=-1)
    now_ms = inventory.redis_now_ms()
    meta = sale_meta_for(sale)
    inventory.inventory_redis().hset(keys.meta_key(sale.pk), mapping={"starts_at_ms": now_ms + 60_000})

    early = purchase(client, sale.pk, make_shopper()[1])
    # Raw edits are not announced (an operator's are: warming publishes them), so this
    # process is told to read the sale again.
    inventory.inventory_redis().hset(keys.meta_key(sale.pk), mapping={"starts_at_ms": meta.starts_at_ms})
    forget_process_state()
    open_now = purchase(client, sale.pk, make_shopper()[1])
    inventory.inventory_redis().hset(keys.meta_key(sale.pk), mapping={"ends_at_ms": inventory.redis_now_ms()})
    forget_process_state()
    closed = purchase(client, sale.pk, make_shopper()[1])

    assert [early.json()["status"], open_now.json()["status"], closed.json()["status"]] == [
        "NOT_STARTED",
        "SUCCESS",
        "ENDED",
    ]


def test_an_unknown_sale_answers_404(client: Client) -> None:
    _, token = make_shopper()
    for sale_id in (987654, 99999999999999999999999):
        response = purchase(client, sale_id, token)
        assert response.status_code == 404
        assert response.json() == {"status": "NOT_FOUND", "detail": "There is no such sale."}


def test_a_sale_not_yet_loaded_is_loaded_on_first_purchase(client: Client) -> None:
    sale = make_sale(stock=2, warm=False)
    response = purchase(client, sale.pk, make_shopper()[1])
    assert response.status_code == 201
    assert inventory.sale_counts(sale.pk).remaining == 1


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "Authentication credentials were not provided or are not valid."),
        ({"Authorization": "Token not-a-real-token"}, "The token is not valid."),
        ({"Authorization": "Bearer abc"}, "The token is not valid."),
        ({"Authorization": "Basic abc"}, "Send Authorization: Token <token>."),
        ({"Authorization": "Token"}, "Send Authorization: Token <token>."),
    ],
)
def test_missing_or_bad_credentials_answer_401(client: Client, headers: dict[str, str], detail: str) -> None:
    sale = make_sale()
    response = purchase(client, sale.pk, None, **headers)
    assert response.status_code == 401
    assert response.json() == {"status": "UNAUTHENTICATED", "detail": detail}


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ("{not json", "The body is not valid JSON."),
        ("[1, 2]", "The body must be a JSON object."),
        ('"text"', "The body must be a JSON object."),
        ({"challenge": 5}, "challenge must be a string."),
        ({"solution": ["a"]}, "solution must be a string."),
        ({"solution": "x" * 65}, "solution must be at most 64 characters."),
        ({"quantity": 2}, "Unknown field(s): quantity."),
        (b"\xff\xfe\x00", "The body is not valid JSON."),
        ("x" * (70 * 1024), "The body is larger than 65536 bytes."),
        ("[" * 100_000 + "]" * 100_000, "The body is larger than 65536 bytes."),
        ("[" * 30_000 + "]" * 30_000, "The body is nested too deeply."),
        ('{"challenge": ' + "[" * 30_000 + "]" * 30_000 + "}", "The body is nested too deeply."),
        ('{"solution": "\\udc80"}', "The body holds a lone surrogate (\\ud800-\\udfff): not valid text."),
        ('{"challenge": "\\ud800x"}', "The body holds a lone surrogate (\\ud800-\\udfff): not valid text."),
        (b'{"solution": "\xed\xa0\x80"}', "The body holds a lone surrogate (\\ud800-\\udfff): not valid text."),
        ('{"challenge": 1' + "0" * 5000 + "}", "The body is not valid JSON."),
        ('{"challenge": NaN}', "The body is not valid JSON."),
        ({"challenge": None, "solution": True}, "solution must be a string."),
    ],
)
def test_a_malformed_body_answers_400_and_changes_nothing(client: Client, body: object, detail: str) -> None:
    sale = make_sale(stock=3)
    _, token = make_shopper()

    response = purchase(client, sale.pk, token, body)

    assert response.status_code == 400
    assert response.json() == {"status": "INVALID_REQUEST", "detail": detail}
    counts = inventory.sale_counts(sale.pk)
    assert (counts.remaining, counts.buyers, counts.stream_length) == (3, 0, 0)
    tally.flush()
    assert inventory.sale_stats(sale.pk) == {}


def test_other_methods_answer_405(client: Client) -> None:
    sale = make_sale()
    response = client.get(f"/api/sales/{sale.pk}/purchase/", headers=auth(make_shopper()[1]))
    assert response.status_code == 405
    assert response.json()["status"] == "METHOD_NOT_ALLOWED"
    assert response["Allow"] == "POST"


def test_the_purchase_never_writes_an_order_itself(client: Client) -> None:
    sale = make_sale(stock=2)
    response = purchase(client, sale.pk, make_shopper()[1])
    assert response.status_code == 201
    # The order reaches PostgreSQL through the stream and a worker, never in the request.
    assert Order.objects.count() == 0
    assert inventory.sale_counts(sale.pk).stream_length == 1


def test_every_answer_is_counted_in_the_sales_stats_the_local_ones_too(client: Client) -> None:
    assert subscription.wait_until_live()
    sale = make_sale(stock=1)
    winner = make_shopper()[1]
    purchase(client, sale.pk, winner)
    purchase(client, sale.pk, winner)
    purchase(client, sale.pk, make_shopper()[1])
    purchase(client, sale.pk, make_shopper()[1])

    tally.flush()

    # Only the win reached Redis: it marked the sale sold out in this process and told it
    # the winner, so the three answers after it were given here, and counted all the same.
    assert inventory.sale_stats(sale.pk) == {
        "arrived": 4,
        "script": 1,
        "shed:winner": 1,
        "shed:sold_out": 2,
        "answer:SUCCESS": 1,
        "answer:ALREADY_PURCHASED": 1,
        "answer:SOLD_OUT": 2,
    }
