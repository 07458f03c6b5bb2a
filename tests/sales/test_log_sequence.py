"""Sequencing: every attempt that reaches a sale's script, and every join that gives a
number, is appended to the sale's log in the same atomic call, and its answer carries a
signed receipt for that entry (docs/design.md, "The transparency log")."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Iterator
from typing import Any, cast

import httpx
import pytest

from core.redis_store import inventory_redis
from sales import keys
from sales.models import Admission
from sales.receipts import canonical_json, receipt_verify, shopper_hash, signing_keys
from tests.clients import purchase
from tests.factories import auth, make_sale, make_shoppers
from tests.processes import OPEN_ADMISSION, ChildProcess, start_web

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def log_server(django_db_setup: None) -> Iterator[ChildProcess]:
    child = start_web(env=OPEN_ADMISSION)
    yield child
    child.stop()


def _logged(sale_id: int) -> list[dict[str, str]]:
    entries = cast(list[tuple[str, dict[str, str]]], inventory_redis().xrange(keys.log_stream_key(sale_id)))
    return [fields for _, fields in entries]


def _published() -> dict[str, bytes]:
    return {key.key_id: key.public_raw for key in signing_keys()}


def _check(receipt: dict[str, Any], entry: str, *, sale_id: int) -> None:
    assert set(receipt) == {"key_id", "sale_id", "seq", "leaf_hash", "time_ms", "signature"}
    assert receipt["sale_id"] == sale_id
    assert receipt["leaf_hash"] == hashlib.sha256(b"\x00" + entry.encode()).hexdigest()
    assert receipt_verify(receipt, _published())
    decoded = json.loads(entry)
    assert canonical_json(decoded) == entry.encode()  # sorted keys, no spaces: the hashed bytes
    assert decoded["seq"] == receipt["seq"] and decoded["time_ms"] == receipt["time_ms"]


def test_attempts_that_reach_the_script_are_logged_in_order_with_a_receipt_each(log_server: ChildProcess) -> None:
    # Given a sale of 3 units and 40 shoppers trying at once
    sale = make_sale(stock=3)
    shoppers = make_shoppers(40)

    async def crowd() -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=log_server.url, timeout=30) as client:
            answers = await asyncio.gather(
                *(
                    client.post(f"/api/sales/{sale.pk}/purchase/", content=b"{}", headers=auth(token))
                    for _, token in shoppers
                )
            )
        return [answer.json() for answer in answers]

    answers = asyncio.run(crowd())

    # Then every answer the script gave carries a receipt, sequence numbers 0.. without a gap
    logged = _logged(sale.pk)
    receipted = [answer for answer in answers if "receipt" in answer]
    assert [int(entry["seq"]) for entry in logged] == list(range(len(logged)))
    assert sorted(answer["receipt"]["seq"] for answer in receipted) == list(range(len(logged)))
    assert sum(answer["status"] == "SUCCESS" for answer in receipted) == 3
    for answer in receipted:
        _check(answer["receipt"], logged[answer["receipt"]["seq"]]["entry"], sale_id=sale.pk)
    # And an entry names the shopper only by a salted hash, the outcome in the answer's word
    entries = [json.loads(entry["entry"]) for entry in logged]
    assert {entry["kind"] for entry in entries} == {"attempt"}
    assert {entry["outcome"] for entry in entries} <= {"SUCCESS", "SOLD_OUT"}
    hashed = {shopper_hash(sale_id=sale.pk, user_id=user_id) for user_id, _ in shoppers}
    assert {entry["shopper"] for entry in entries} <= hashed
    # And the answers the web processes gave themselves (their sold-out marker) are not logged
    assert len(receipted) == len(logged) <= len(answers)


def test_a_retried_win_hears_the_same_receipt(log_server: ChildProcess) -> None:
    sale = make_sale(stock=5)
    (_, token), *_ = make_shoppers(1)

    first = purchase(log_server, sale.pk, token, key="k").json()
    again = purchase(log_server, sale.pk, token, key="k").json()

    assert first["status"] == again["status"] == "SUCCESS"
    assert again["receipt"] == first["receipt"]
    assert len(_logged(sale.pk)) == 1


def test_a_join_that_gives_a_number_is_logged_with_its_number(log_server: ChildProcess) -> None:
    sale = make_sale(stock=5, admission=Admission.QUEUE, serving_rate=1, starts_in=3600)
    (_, token), *_ = make_shoppers(1)

    def join() -> dict[str, Any]:
        return httpx.post(f"{log_server.url}/api/sales/{sale.pk}/queue/", headers=auth(token), timeout=30).json()

    joined, again = join(), join()

    [logged] = _logged(sale.pk)
    assert json.loads(logged["entry"]) == {
        "kind": "join",
        "number": 1,
        "outcome": "pre_queue",
        "sale": sale.pk,
        "seq": 0,
        "shopper": shopper_hash(sale_id=sale.pk, user_id=int(token.split(".")[2])),
        "time_ms": joined["receipt"]["time_ms"],
    }
    _check(joined["receipt"], logged["entry"], sale_id=sale.pk)
    assert "receipt" not in again  # the same place: nothing new was decided


def test_receipts_verify_only_under_the_published_key(log_server: ChildProcess) -> None:
    sale = make_sale(stock=5)
    (_, token), *_ = make_shoppers(1)
    receipt = purchase(log_server, sale.pk, token).json()["receipt"]

    tampered = {**receipt, "seq": receipt["seq"] + 1}
    foreign = {**receipt, "key_id": "elsewhere"}
    forged = {**receipt, "signature": base64.b64encode(b"\x00" * 64).decode()}

    assert receipt_verify(receipt, _published())
    assert not any(receipt_verify(bad, _published()) for bad in (tampered, foreign, forged))
