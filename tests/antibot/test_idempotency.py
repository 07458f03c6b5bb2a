"""Idempotency-Key on purchase, through the real server (IETF httpapi draft semantics)."""

from __future__ import annotations

import json

import pytest
from django.conf import settings

from antibot import keys as antibot_keys
from antibot.idempotency import IdempotentRequest, idempotency_begin_call, idempotency_held
from core.redis_store import inventory_redis
from core.steps import run_step
from sales import inventory, keys
from tests.clients import purchase
from tests.factories import make_sale, make_shoppers
from tests.processes import ChildProcess

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_same_key_from_the_same_user_replays_the_first_answer(open_server: ChildProcess) -> None:
    sale = make_sale(stock=5)
    (_, token), *_ = make_shoppers(1)

    first = purchase(open_server, sale.pk, token, key="click-1")
    retry = purchase(open_server, sale.pk, token, key="click-1")

    assert first.status_code == retry.status_code == 201
    assert retry.json() == first.json()
    assert inventory.sale_counts(sale.pk).remaining == 4


def test_a_replayed_refusal_is_the_same_refusal(open_server: ChildProcess) -> None:
    sale = make_sale(stock=1)
    (_, winner), (_, loser) = make_shoppers(2)
    purchase(open_server, sale.pk, winner, key="w")

    first = purchase(open_server, sale.pk, loser, key="l")
    inventory.inventory_redis().incr(keys.stock_key(sale.pk))  # Whatever happens since...
    retry = purchase(open_server, sale.pk, loser, key="l")

    assert first.status_code == retry.status_code == 409
    assert retry.json() == first.json() == {"status": "SOLD_OUT", "detail": "Sold out: every unit has been sold."}


def test_the_same_key_with_another_body_answers_422(open_server: ChildProcess) -> None:
    sale = make_sale(stock=5)
    (_, token), *_ = make_shoppers(1)
    purchase(open_server, sale.pk, token, b"{}", key="k")

    other = purchase(open_server, sale.pk, token, b'{"solution": "42"}', key="k")

    assert other.status_code == 422
    assert other.json()["status"] == "IDEMPOTENCY_KEY_REUSED"
    assert inventory.sale_counts(sale.pk).remaining == 4


def test_a_request_still_in_flight_with_the_key_answers_409_in_flight(open_server: ChildProcess) -> None:
    sale = make_sale(stock=5)
    (user_id, token), *_ = make_shoppers(1)
    path = f"/api/sales/{sale.pk}/purchase/"
    # Another request with this key has claimed it and is still being answered.
    held = IdempotentRequest.from_header("busy", method="POST", path=path, body=b"{}")
    held_key = antibot_keys.idempotency_record_key(keys.keyspace(sale.pk), user_id, held.digest)
    claim = run_step(inventory_redis(), idempotency_begin_call(record_key=held_key, request=held))
    assert idempotency_held(claim, request=held) is None

    answer = purchase(open_server, sale.pk, token, key="busy")

    assert answer.status_code == 409
    assert answer.json()["status"] == "IN_FLIGHT"
    assert inventory.sale_counts(sale.pk).remaining == 5


def test_keys_belong_to_one_user(open_server: ChildProcess) -> None:
    sale = make_sale(stock=5)
    (_, alice), (_, bob) = make_shoppers(2)

    mine = purchase(open_server, sale.pk, alice, key="same-key").json()
    theirs = purchase(open_server, sale.pk, bob, key="same-key").json()

    assert mine["status"] == theirs["status"] == "SUCCESS"
    assert mine["order_id"] != theirs["order_id"]


def test_answers_are_kept_a_day_and_in_flight_claims_seconds(open_server: ChildProcess) -> None:
    sale = make_sale(stock=5)
    (user_id, token), *_ = make_shoppers(1)
    purchase(open_server, sale.pk, token, key="kept")
    client = inventory.inventory_redis()
    stored_key = antibot_keys.idempotency_record_key(
        keys.keyspace(sale.pk), user_id, IdempotentRequest.from_header("kept", method="POST", path="/", body=b"").digest
    )

    ttl = client.ttl(stored_key)
    record = json.loads(client.get(stored_key))  # type: ignore[arg-type]
    assert settings.ANTIBOT_IDEMPOTENCY_TTL_SECONDS - 60 < ttl <= settings.ANTIBOT_IDEMPOTENCY_TTL_SECONDS
    assert record["status"] == "SUCCESS"

    claim = IdempotentRequest.from_header("claimed", method="POST", path="/x/", body=b"{}")
    claim_key = antibot_keys.idempotency_record_key(keys.keyspace(sale.pk), user_id, claim.digest)
    run_step(inventory_redis(), idempotency_begin_call(record_key=claim_key, request=claim))
    claim_ttl = client.ttl(claim_key)
    assert 0 < claim_ttl <= settings.ANTIBOT_IDEMPOTENCY_IN_FLIGHT_SECONDS


def test_a_malformed_key_answers_400(open_server: ChildProcess) -> None:
    sale = make_sale(stock=5)
    (_, token), *_ = make_shoppers(1)
    answer = purchase(open_server, sale.pk, token, key="x" * 300)
    assert answer.status_code == 400
    assert answer.json()["detail"] == "Idempotency-Key must be 1 to 255 printable ASCII characters."
    assert inventory.sale_counts(sale.pk).remaining == 5


def test_a_request_refused_as_malformed_does_not_hold_its_key(open_server: ChildProcess) -> None:
    sale = make_sale(stock=5)
    (_, token), *_ = make_shoppers(1)

    broken = purchase(open_server, sale.pk, token, b"{oops", key="fix-me")
    fixed = purchase(open_server, sale.pk, token, b"{}", key="fix-me")

    assert broken.status_code == 400
    assert fixed.status_code == 201
