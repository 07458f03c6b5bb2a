"""Idempotency-Key on purchase, through the real server: a final answer is kept and given
again, a temporary refusal never is, and what is kept lives no longer than the sale
(docs/design.md, "Idempotency-Key")."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings

from antibot import keys as antibot_keys
from antibot.idempotency import IdempotentRequest
from antibot.proof_of_work import solve
from core.redis_store import inventory_redis
from core.steps import run_step
from sales import inventory, keys
from tests.clients import challenge, purchase
from tests.factories import make_sale, make_shoppers
from tests.polling import wait_for
from tests.processes import ChildProcess

from .conftest import window_fresh

pytestmark = pytest.mark.django_db(transaction=True)


def _records(sale_id: int, user_id: int) -> dict[str, str]:
    return inventory_redis().hgetall(antibot_keys.idempotency_records_key(keys.keyspace(sale_id), user_id))  # type: ignore[return-value]


def test_the_same_key_from_the_same_user_replays_the_first_answer(open_server: ChildProcess) -> None:
    sale = make_sale(stock=5)
    (_, token), *_ = make_shoppers(1)

    first = purchase(open_server, sale.pk, token, key="click-1")
    retry = purchase(open_server, sale.pk, token, key="click-1")

    assert first.status_code == retry.status_code == 201
    assert retry.json() == first.json()
    assert inventory.sale_counts(sale.pk).remaining == 4


def test_a_key_sent_twice_at_once_wins_one_unit_and_both_hear_it(open_server: ChildProcess) -> None:
    # Given one click sent twice at the same moment (a double tap, a retry racing its original)
    sale = make_sale(stock=5)
    (_, token), *_ = make_shoppers(1)

    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(lambda _: purchase(open_server, sale.pk, token, key="twice"), range(2)))

    # Then the script judged them one after the other: one unit, the same answer for both
    assert [answer.status_code for answer in answers] == [201, 201]
    assert answers[0].json() == answers[1].json()
    assert inventory.sale_counts(sale.pk).remaining == 4


def test_a_final_answer_of_the_script_is_given_again_after_a_unit_comes_back(open_server: ChildProcess) -> None:
    # Given a sale whose stock Redis holds at 0 without the web processes having heard it
    sale = make_sale(stock=5)
    (user_id, token), *_ = make_shoppers(1)
    client = inventory_redis()
    client.set(keys.stock_key(sale.pk), 0)
    first = purchase(open_server, sale.pk, token, key="late")

    # When units come back (an expired order's, published as release.lua does)
    client.set(keys.stock_key(sale.pk), 5)
    returned = {"product_id": sale.product_id, "sale_id": sale.pk, "buyer": 0, "remaining": 5}
    client.publish(keys.EVENTS_CHANNEL, json.dumps({**returned, "timestamp": inventory.redis_now_ms()}))
    retry = purchase(open_server, sale.pk, token, key="late")
    fresh: list[int] = []

    def won() -> bool:
        fresh.append(purchase(open_server, sale.pk, token, key=f"later-{len(fresh)}").status_code)
        return fresh[-1] == 201

    wait_for(won, what="the returned units to be heard", timeout=15, interval=0.1)

    # Then the script's SOLD_OUT was final: the same key hears it again, a new key is judged afresh
    assert first.json() == retry.json()  # the receipt included: the same log entry
    assert {name: first.json()[name] for name in ("status", "detail")} == {
        "status": "SOLD_OUT",
        "detail": "Sold out: every unit has been sold.",
    }
    assert fresh[-1] == 201
    assert len(_records(sale.pk, user_id)) >= 2


def test_the_same_key_with_another_body_answers_422(open_server: ChildProcess) -> None:
    sale = make_sale(stock=5)
    (_, token), *_ = make_shoppers(1)
    purchase(open_server, sale.pk, token, b"{}", key="k")

    other = purchase(open_server, sale.pk, token, b'{"solution": "42"}', key="k")

    assert other.status_code == 422
    assert other.json()["status"] == "IDEMPOTENCY_KEY_REUSED"
    assert inventory.sale_counts(sale.pk).remaining == 4


def test_keys_belong_to_one_user(open_server: ChildProcess) -> None:
    sale = make_sale(stock=5)
    (_, alice), (_, bob) = make_shoppers(2)

    mine = purchase(open_server, sale.pk, alice, key="same-key").json()
    theirs = purchase(open_server, sale.pk, bob, key="same-key").json()

    assert mine["status"] == theirs["status"] == "SUCCESS"
    assert mine["order_id"] != theirs["order_id"]


def test_a_not_started_answer_is_not_kept_and_the_retry_with_its_key_wins(open_server: ChildProcess) -> None:
    # Given a sale opening shortly and a shopper who clicked early
    sale = make_sale(stock=5, starts_in=3)
    (user_id, token), *_ = make_shoppers(1)
    early = purchase(open_server, sale.pk, token, key="early")
    assert early.json()["status"] == "NOT_STARTED"
    assert _records(sale.pk, user_id) == {}

    # When they retry with the same key, as a client following the rules does, after the start
    answers: list[str] = []

    def retried() -> bool:
        answers.append(purchase(open_server, sale.pk, token, key="early").json()["status"])
        return answers[-1] != "NOT_STARTED"

    wait_for(retried, what="the sale to open", timeout=30, interval=0.25)

    # Then they win: the early refusal was never kept under the key
    assert answers[-1] == "SUCCESS"


def test_a_rate_limited_answer_is_not_kept_and_the_retry_after_its_wait_wins(guarded_server: ChildProcess) -> None:
    # Given a shopper with a solved proof of work whose window (3 calls per 10 s here) is full
    sale = make_sale(stock=5, pow_difficulty=8)
    (user_id, token), *_ = make_shoppers(1)
    address = {"X-Real-IP": "10.77.0.9"}
    window_fresh()
    issued = challenge(guarded_server, sale.pk, token, **address).json()
    proof = {"challenge": issued["challenge"], "solution": solve(issued["challenge"], issued["difficulty"])}
    for n in range(2):
        assert purchase(guarded_server, sale.pk, token, key=f"spent-{n}", **address).json()["status"] == "POW_INVALID"
    limited = purchase(guarded_server, sale.pk, token, proof, key="patient", **address)
    assert limited.status_code == 429
    wait = int(limited.headers["Retry-After"])

    # When they send the same request with the same key once the wait is over
    time.sleep(wait)  # The wait the server asked for is the point of this test.
    retried = purchase(guarded_server, sale.pk, token, proof, key="patient", **address)

    # Then it is judged afresh and wins: the 429 was never kept under the key
    assert retried.status_code == 201
    patient = IdempotentRequest.from_header("patient", method="POST", path="/", body=b"").digest
    assert _records(sale.pk, user_id)[patient].split("|")[1] == "SUCCESS"


def test_records_live_until_a_margin_past_the_sales_end(open_server: ChildProcess) -> None:
    sale = make_sale(stock=5, duration=3600)
    (user_id, token), *_ = make_shoppers(1)
    purchase(open_server, sale.pk, token, key="kept")
    client = inventory_redis()
    records_key = antibot_keys.idempotency_records_key(keys.keyspace(sale.pk), user_id)
    digest = IdempotentRequest.from_header("kept", method="POST", path="/", body=b"").digest

    ends_in = (sale.ends_at.timestamp() - time.time()) + settings.ANTIBOT_IDEMPOTENCY_AFTER_END_SECONDS
    ttl = client.ttl(records_key)
    stored = client.hget(records_key, digest)

    assert ends_in - 60 < ttl <= ends_in + 1
    assert ttl < settings.ANTIBOT_IDEMPOTENCY_TTL_SECONDS
    assert isinstance(stored, str) and stored.split("|")[1] == "SUCCESS"


def test_one_shopper_keeps_at_most_the_configured_records_per_sale() -> None:
    # Given a shopper whose keyed attempts all reach the script and are answered finally
    # (the script itself: a web process would answer them locally once it heard SOLD_OUT)
    sale = make_sale(stock=5)
    (user_id, _), *_ = make_shoppers(1)
    client = inventory_redis()
    client.set(keys.stock_key(sale.pk), 0)
    policy = inventory.IdempotencyPolicy(per_shopper=4, after_end_ms=600_000, longest_ms=86_400_000)

    for n in range(9):
        call = inventory.purchase_call(
            sale_id=sale.pk,
            user_id=user_id,
            order_id=str(uuid.uuid4()),
            idempotency_digest=f"{n:032x}",
            idempotency_fingerprint="f" * 64,
            idempotency=policy,
        )
        assert inventory.ScriptAnswer.from_reply(run_step(client, call)).status is inventory.ScriptStatus.SOLD_OUT

    # Then only the first four are kept
    assert sorted(_records(sale.pk, user_id)) == [f"{n:032x}" for n in range(4)]


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
