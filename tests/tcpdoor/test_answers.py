"""Every answer of the TCP door, from the real server (``manage.py tcpserver``, started as
``make run`` starts it), for the seed's message and the ones added beside it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from antibot.proof_of_work import solve
from orders.models import Order
from sales import inventory
from sales.models import Admission
from tests.clients import Wire, frame, tcp_ask
from tests.factories import make_product, make_sale, make_shopper, make_shoppers, make_user
from tests.polling import wait_for
from tests.processes import OPEN_ADMISSION, ChildProcess, start_tcp

pytestmark = pytest.mark.django_db(transaction=True)

ATTEMPT, CHALLENGE, STATUS, PING, JOIN, PLACE, ERROR = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x7F
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trusted_tcp(django_db_setup: None) -> object:
    """A door run with --trust-user-id (on loopback, where it may)."""
    child = start_tcp(env=OPEN_ADMISSION, trust_user_id=True)
    yield child
    child.stop()


def test_a_win_answers_the_order_and_the_stock_and_becomes_the_same_order_row(
    tcp_server: ChildProcess, celery_worker: ChildProcess
) -> None:
    sale = make_sale(stock=5)
    user, token = make_shopper()

    answer = tcp_ask(tcp_server, ATTEMPT, {"product_id": sale.product.slug, "token": token})

    assert answer["status"] == "SUCCESS"
    assert answer["remaining_stock"] == 4
    assert set(answer) == {"status", "detail", "order_id", "remaining_stock", "receipt"}
    assert inventory.sale_buyers(sale.pk) == {user.pk: answer["order_id"]}
    wait_for(lambda: Order.objects.filter(pk=answer["order_id"]).exists(), what="the order row")
    assert Order.objects.get(pk=answer["order_id"]).user_id == user.pk


def test_a_sale_id_names_the_sale_and_a_winner_hears_their_order_again(tcp_server: ChildProcess) -> None:
    sale = make_sale(stock=5)
    _, token = make_shopper()

    with Wire(tcp_server.port) as wire:
        won = wire.ask(ATTEMPT, {"product_id": sale.pk, "token": token})
        again = wire.ask(ATTEMPT, {"product_id": str(sale.pk), "token": token})

    assert won["status"] == "SUCCESS"
    assert again["status"] == "ALREADY_PURCHASED"
    assert again["order_id"] == won["order_id"]


def test_a_product_slug_names_its_newest_sale(tcp_server: ChildProcess) -> None:
    product = make_product()
    make_sale(product=product, starts_in=-7200, duration=3600, stock=3)
    newest = make_sale(product=product, stock=3)
    _, token = make_shopper()

    answer = tcp_ask(tcp_server, ATTEMPT, {"product_id": product.slug, "token": token})

    assert answer["status"] == "SUCCESS"
    assert list(inventory.sale_buyers(newest.pk).values()) == [answer["order_id"]]


def test_sold_out_not_started_and_ended(tcp_server: ChildProcess) -> None:
    sold = make_sale(stock=1)
    _, first = make_shopper()
    _, second = make_shopper()
    later = make_sale(starts_in=3600)
    over = make_sale(starts_in=-7200, duration=3600)

    with Wire(tcp_server.port) as wire:
        assert wire.ask(ATTEMPT, {"product_id": sold.pk, "token": first})["status"] == "SUCCESS"
        assert wire.ask(ATTEMPT, {"product_id": sold.pk, "token": second}) == {
            "status": "SOLD_OUT",
            "detail": "Sold out: every unit has been sold.",
        }
        assert wire.ask(ATTEMPT, {"product_id": later.pk, "token": second})["status"] == "NOT_STARTED"
        assert wire.ask(ATTEMPT, {"product_id": over.pk, "token": second})["status"] == "ENDED"


def test_rate_limited_says_why_and_how_long_to_wait_in_milliseconds(tcp_server: ChildProcess) -> None:
    # A bucket of one token refilled each second, and twenty shoppers' attempts in one write:
    # the door takes them together, so all but the token's winner find the bucket empty
    # (one more for each second the machine took over them).
    sale = make_sale(stock=100, bucket_capacity=1, bucket_refill_per_second=1, crowd_factor=0)
    tokens = [token for _, token in make_shoppers(20)]

    started = time.monotonic()
    with Wire(tcp_server.port) as wire:
        wire.send(b"".join(frame(ATTEMPT, json.dumps({"product_id": sale.pk, "token": t}).encode()) for t in tokens))
        answers = [wire.read()[1] for _ in tokens]
    elapsed = time.monotonic() - started

    assert {answer["status"] for answer in answers} == {"SUCCESS", "RATE_LIMITED"}
    refused = [answer for answer in answers if answer["status"] == "RATE_LIMITED"]
    # The token there at the start and one per second since: no more got in
    assert len(answers) - len(refused) <= 1 + elapsed, answers
    for limited in refused:
        assert limited["reason"] == "bucket"
        assert 0 < limited["retry_after_ms"] <= 1000


def test_proof_of_work_through_the_challenge_message(tcp_server: ChildProcess) -> None:
    sale = make_sale(stock=5, pow_difficulty=4)
    _, token = make_shopper()

    with Wire(tcp_server.port) as wire:
        missing = wire.ask(ATTEMPT, {"product_id": sale.pk, "token": token})
        issued = wire.ask(CHALLENGE, {"product_id": sale.product.slug, "token": token})
        wrong = wire.ask(ATTEMPT, {"product_id": sale.pk, "token": token, "challenge": issued["challenge"],
                                   "solution": "not-it-" + uuid.uuid4().hex})  # fmt: skip
        solution = solve(issued["challenge"], issued["difficulty"])
        won = wire.ask(ATTEMPT, {"product_id": sale.pk, "token": token, "challenge": issued["challenge"],
                                 "solution": solution})  # fmt: skip

    assert missing["status"] == "POW_INVALID" and missing["detail"].startswith("missing")
    assert issued["status"] == "OK"
    assert issued["sale_id"] == sale.pk
    assert issued["difficulty"] >= 4
    # A made-up solution may solve 4 bits by luck (1 in 16); the real one must.
    assert wrong["status"] in {"POW_INVALID", "SUCCESS"}
    assert won["status"] in {"SUCCESS", "ALREADY_PURCHASED"}


def test_who_is_asking_unknown_sales_and_wrong_fields(tcp_server: ChildProcess) -> None:
    sale = make_sale(stock=5)
    user, token = make_shopper()

    with Wire(tcp_server.port) as wire:
        no_token = wire.ask(ATTEMPT, {"product_id": sale.pk})
        forged = wire.ask(ATTEMPT, {"product_id": sale.pk, "token": token[:-2] + "xx"})
        bare_user = wire.ask(ATTEMPT, {"product_id": sale.pk, "user_id": user.pk})
        no_product = wire.ask(ATTEMPT, {"product_id": "no-such-phone", "token": token})
        no_sale = wire.ask(ATTEMPT, {"product_id": 10**12, "token": token})
        unknown_field = wire.ask(ATTEMPT, {"product_id": sale.pk, "token": token, "coupon": "FREE"})
        wrong_type = wire.ask(ATTEMPT, {"product_id": sale.pk, "token": token, "solution": 42})
        missing_product = wire.ask(ATTEMPT, {"token": token})
        bad_key = wire.ask(ATTEMPT, {"product_id": sale.pk, "token": token, "idempotency_key": ""})

    assert [no_token["status"], forged["status"], bare_user["status"]] == ["UNAUTHENTICATED"] * 3
    assert "user_id" in bare_user["detail"]
    assert [no_product["status"], no_sale["status"]] == ["NOT_FOUND", "NOT_FOUND"]
    assert [unknown_field["status"], wrong_type["status"], missing_product["status"], bad_key["status"]] == [
        "INVALID_REQUEST"
    ] * 4
    assert inventory.sale_buyers(sale.pk) == {}


def test_an_idempotency_key_replays_the_first_answer(tcp_server: ChildProcess) -> None:
    sale = make_sale(stock=5, pow_difficulty=0)
    _, token = make_shopper()
    key = uuid.uuid4().hex

    with Wire(tcp_server.port) as wire:
        first = wire.ask(ATTEMPT, {"product_id": sale.pk, "token": token, "idempotency_key": key})
        replay = wire.ask(ATTEMPT, {"product_id": sale.pk, "token": token, "idempotency_key": key})
        other = wire.ask(ATTEMPT, {"product_id": sale.pk, "token": token, "idempotency_key": key, "solution": "x"})

    assert first["status"] == "SUCCESS"
    assert replay["status"] == "SUCCESS" and replay["order_id"] == first["order_id"]
    assert other["status"] == "IDEMPOTENCY_KEY_REUSED"


def test_the_same_key_pipelined_twice_wins_once_and_both_hear_the_win(tcp_server: ChildProcess) -> None:
    sale = make_sale(stock=5, pow_difficulty=0)
    _, token = make_shopper()
    attempt = json.dumps({"product_id": sale.pk, "token": token, "idempotency_key": "k-1"}).encode()

    with Wire(tcp_server.port) as wire:
        wire.send(frame(ATTEMPT, attempt) * 2)  # one write: the second arrives while the first runs
        first, second = wire.read()[1], wire.read()[1]
        replay = wire.ask(ATTEMPT, attempt)

    # The script judges them one after the other: the second hears the first's answer
    assert first["status"] == "SUCCESS"
    assert second == first
    assert replay["status"] == "SUCCESS" and replay["order_id"] == first["order_id"]
    assert inventory.sale_counts(sale.pk).remaining == 4


def test_sale_status_and_ping(tcp_server: ChildProcess) -> None:
    sale = make_sale(stock=7)

    status = tcp_ask(tcp_server, STATUS, {"product_id": sale.product.slug})
    pong = tcp_ask(tcp_server, PING, {})
    unknown = tcp_ask(tcp_server, STATUS, {"product_id": "no-such-phone"})

    assert status["status"] == "OK"
    assert status["sale_id"] == sale.pk
    assert (status["total_stock"], status["remaining_stock"], status["sale_status"]) == (7, 7, "live")
    assert status["starts_at"].startswith(sale.starts_at.isoformat()[:19])
    assert pong == {"status": "OK"}
    assert unknown["status"] == "NOT_FOUND"


def test_the_trusted_mode_takes_the_seeds_exact_payload(trusted_tcp: ChildProcess) -> None:
    sale = make_sale(stock=3)
    user = make_user(username="user_123")

    answer = tcp_ask(trusted_tcp, ATTEMPT, {"product_id": sale.product.slug, "user_id": "user_123"})
    by_id = tcp_ask(trusted_tcp, ATTEMPT, {"product_id": sale.product.slug, "user_id": user.pk})
    stranger = tcp_ask(trusted_tcp, ATTEMPT, {"product_id": sale.product.slug, "user_id": "user_999999"})

    assert answer["status"] == "SUCCESS"
    assert inventory.sale_buyers(sale.pk) == {user.pk: answer["order_id"]}
    assert by_id["status"] == "ALREADY_PURCHASED" and by_id["order_id"] == answer["order_id"]
    assert stranger["status"] == "UNAUTHENTICATED"


def test_the_trusted_mode_is_refused_off_loopback() -> None:
    refused = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "tcpserver", "--trust-user-id", "--host", "0.0.0.0", "--port", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert refused.returncode == 1
    assert "--trust-user-id" in refused.stderr and "0.0.0.0" in refused.stderr


def test_a_shopper_joins_the_line_reads_their_place_and_buys_with_the_pass(tcp_server: ChildProcess) -> None:
    # Given a queue-mode sale letting in many shoppers a second
    sale = make_sale(stock=5, pow_difficulty=0, admission=Admission.QUEUE, serving_rate=1000)
    _, token = make_shopper()

    with Wire(tcp_server.port) as wire:
        joined = wire.ask(JOIN, {"product_id": sale.pk, "token": token})
        again = wire.ask(JOIN, {"product_id": sale.pk, "token": token})
        placed = wire.ask(PLACE, {"product_id": sale.pk, "token": token, "pass": joined["pass"]})
        without = wire.ask(ATTEMPT, {"product_id": sale.pk, "token": token})
        bought = wire.ask(ATTEMPT, {"product_id": sale.pk, "token": token, "pass": joined["pass"]})
        forged = wire.ask(PLACE, {"product_id": sale.pk, "token": token, "pass": "q1.1.2.3.x"})
        hostile = wire.ask(JOIN, {"product_id": sale.pk, "token": token, "pass": 7})

    # Then the door answers as the REST API does, in its own frames
    assert (joined["status"], joined["number"], joined["place_status"]) == ("OK", 1, "admitted")
    assert again["number"] == placed["number"] == 1 and placed["pass"] == joined["pass"]
    assert without["status"] == "QUEUE_PASS_INVALID" and without["detail"].startswith("missing")
    assert bought["status"] == "SUCCESS"
    assert forged["status"] == "QUEUE_PASS_INVALID"
    assert hostile["status"] == "INVALID_REQUEST"
