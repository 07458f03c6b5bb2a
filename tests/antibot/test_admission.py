"""Admission through the real server: the sale's token bucket refilled by the Redis clock,
per-user and per-IP windows, and a correct Retry-After on every 429."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx
import pytest
from django.test import RequestFactory, override_settings

from antibot.proof_of_work import solve
from core.client_address import client_ip
from core.redis_store import inventory_redis
from sales import inventory, keys
from sales.funnel import lease_batch
from tests.clients import challenge, purchase
from tests.factories import auth, make_sale, make_shoppers
from tests.processes import ChildProcess

from .conftest import GUARDED_WINDOW_SECONDS

pytestmark = pytest.mark.django_db(transaction=True)
T = TypeVar("T")


def test_the_bucket_admits_its_capacity_then_its_refill_rate_across_processes(open_server: ChildProcess) -> None:
    # Two web processes lease the one bucket's tokens from Redis and hand them out locally.
    # The crowd presses for 2.5 s, and on until it has seen a refusal and a refilled token go
    # through: how many attempts a loaded machine makes in a second is not the bucket's rule.
    sale = make_sale(stock=10_000, bucket_capacity=5, bucket_refill_per_second=1)
    tokens = iter([token for _, token in make_shoppers(4_000)])
    taking = threading.Lock()
    answers: list[int] = []

    def pressed_enough() -> bool:
        pressed = time.monotonic() - started
        return pressed > 60 or (pressed > 2.5 and 429 in answers and answers.count(201) > 5)

    def press_buy() -> None:
        while not pressed_enough():
            with taking:
                token = next(tokens, None)
            if token is None:
                return
            answers.append(purchase(open_server, sale.pk, token).status_code)

    started = time.monotonic()
    with ThreadPoolExecutor(4) as crowd:
        for _ in range(4):
            crowd.submit(press_buy)
    elapsed = time.monotonic() - started

    admitted = answers.count(201)
    # The burst, then what refilled while the crowd pressed, plus one lease each process may
    # have held when the run began (a token each: lease_batch(1, 5) == 1).
    assert set(answers) == {201, 429}
    assert 5 < admitted <= 5 + 1 * elapsed + 2 * lease_batch(1, 5)
    assert inventory.sale_counts(sale.pk).buyers == admitted


def test_a_bucket_429_says_when_a_token_will_be_there(open_server: ChildProcess) -> None:
    # Ten shoppers press Buy together on a one-token bucket: all but its winner find it empty
    # (one more for each second the machine took over them).
    sale = make_sale(stock=100, bucket_capacity=1, bucket_refill_per_second=1)
    tokens = [token for _, token in make_shoppers(10)]

    started = time.monotonic()
    with ThreadPoolExecutor(len(tokens)) as crowd:
        answers = list(crowd.map(lambda token: purchase(open_server, sale.pk, token), tokens))
    elapsed = time.monotonic() - started

    assert {answer.status_code for answer in answers} == {201, 429}
    admitted = [answer for answer in answers if answer.status_code == 201]
    assert len(admitted) <= 1 + elapsed  # The token there at the start and one a second since.
    for refused in (answer for answer in answers if answer.status_code == 429):
        assert refused.headers["Retry-After"] == "1"  # One token at one a second.
        assert refused.json() == {
            "status": "RATE_LIMITED",
            "detail": "Too many attempts on this sale right now; try again in 1 s.",
            "reason": "bucket",
        }
    assert inventory.sale_counts(sale.pk).buyers == len(admitted)


def test_an_empty_bucket_answers_429_before_the_proof_of_work_is_checked(open_server: ChildProcess) -> None:
    # Given a sale asking for proof of work whose bucket holds no token for a long while (its
    # tokens set 1,000 below empty in Redis), and one kept-alive connection, so that every
    # request reaches the one web process that learns it
    sale = make_sale(stock=100, pow_difficulty=4, bucket_capacity=1, bucket_refill_per_second=1)
    redis_client = inventory_redis()
    redis_client.hset(keys.bucket_key(sale.pk), mapping={"tokens": -1000, "at_ms": int(time.time() * 1000)})
    (_, prover), (_, forger) = make_shoppers(2)
    issued = challenge(open_server, sale.pk, prover).json()
    solved = {"challenge": issued["challenge"], "solution": solve(issued["challenge"], issued["difficulty"])}
    forged = {"challenge": "v1.1.2.3.4.5.6", "solution": "0"}
    with httpx.Client(base_url=open_server.url, timeout=30) as one_connection:

        def attempt(token: str, body: dict[str, str]) -> httpx.Response:
            return one_connection.post(f"/api/sales/{sale.pk}/purchase/", json=body, headers=auth(token))

        # When a solved attempt finds the bucket empty, and then a forged one follows
        learned = attempt(prover, solved)
        refused = attempt(forger, forged)

    # Then the forged one hears the bucket's 429, as the solved one did: the proof would not
    # change that answer, so it was not checked
    assert learned.status_code == 429 and learned.json()["reason"] == "bucket"
    assert refused.status_code == 429, refused.json()
    assert refused.json()["reason"] == "bucket"
    assert 990 <= int(refused.headers["Retry-After"]) <= 1001
    # And nothing was won
    assert inventory.sale_counts(sale.pk).buyers == 0


def test_a_bucket_with_tokens_still_checks_the_proof_and_a_forged_one_spends_no_token(
    open_server: ChildProcess,
) -> None:
    # Given a sale asking for proof of work whose bucket holds its one token
    sale = make_sale(stock=100, pow_difficulty=4, bucket_capacity=1, bucket_refill_per_second=1)
    (_, prover), (_, forger) = make_shoppers(2)
    issued = challenge(open_server, sale.pk, prover).json()
    solved = {"challenge": issued["challenge"], "solution": solve(issued["challenge"], issued["difficulty"])}
    with httpx.Client(base_url=open_server.url, timeout=30) as one_connection:

        def attempt(token: str, body: dict[str, str]) -> httpx.Response:
            return one_connection.post(f"/api/sales/{sale.pk}/purchase/", json=body, headers=auth(token))

        # When forged attempts come first, then the solved one
        forged = [attempt(forger, {"challenge": "v1.1.2.3.4.5.6", "solution": "0"}) for _ in range(5)]
        won = attempt(prover, solved)

    # Then each forged one is refused for its proof, and the token was left for the prover
    assert {answer.status_code for answer in forged} == {403}
    assert {answer.json()["status"] for answer in forged} == {"POW_INVALID"}
    assert won.status_code == 201, won.json()


def _in_one_window(calls: Callable[[], T]) -> tuple[T, float]:
    """What ``calls()`` answered, all of its calls counted in one of the server's windows, and
    the seconds that window had left when they began. The windows are fixed spans of the
    clock (docs/funnel.md): a run that straddled the end of one proves nothing, and is made
    again (``calls`` makes its own sale each time)."""
    for _ in range(5):
        began = time.time()
        answered = calls()
        if int(began // GUARDED_WINDOW_SECONDS) == int(time.time() // GUARDED_WINDOW_SECONDS):
            return answered, GUARDED_WINDOW_SECONDS - began % GUARDED_WINDOW_SECONDS
    raise AssertionError("five runs in a row straddled the end of a window")


def test_the_per_user_window_counts_challenges_and_purchases_alike(guarded_server: ChildProcess) -> None:
    # A sale asking for proof of work: purchases without one are refused after the windows
    # counted them, so the user never wins (a winner would hear ALREADY_PURCHASED instead).
    def calls() -> list[Any]:
        sale = make_sale(stock=100, pow_difficulty=4)
        (_, token), *_ = make_shoppers(1)
        return [
            httpx.post(f"{guarded_server.url}/api/sales/{sale.pk}/challenge/", headers=auth(token), timeout=10),
            *(purchase(guarded_server, sale.pk, token, **{"X-Real-IP": f"198.51.100.{n}"}) for n in (1, 2, 3)),
        ]

    (challenge, first, second, third), left = _in_one_window(calls)

    assert challenge.status_code == 200
    assert (first.json()["status"], second.json()["status"]) == ("POW_INVALID", "POW_INVALID")
    assert third.status_code == 429
    assert third.json()["status"] == "RATE_LIMITED"
    assert third.json()["reason"] == "user"
    assert 1 <= int(third.headers["Retry-After"]) <= left + 1  # What is left of the window.


def test_the_per_ip_window_uses_the_trusted_proxy_header(guarded_server: ChildProcess) -> None:
    def calls() -> list[Any]:
        sale = make_sale(stock=100)
        tokens = [token for _, token in make_shoppers(7)]
        crowd = [purchase(guarded_server, sale.pk, token, **{"X-Real-IP": "203.0.113.7"}) for token in tokens[:6]]
        return [*crowd, purchase(guarded_server, sale.pk, tokens[6], **{"X-Real-IP": "203.0.113.8"})]

    (*crowd, elsewhere), left = _in_one_window(calls)

    assert [answer.status_code for answer in crowd] == [201] * 5 + [429]
    assert crowd[-1].json()["reason"] == "ip"
    assert 1 <= int(crowd[-1].headers["Retry-After"]) <= left + 1
    assert elsewhere.status_code == 201


def test_a_challenge_request_over_the_window_is_refused_too(guarded_server: ChildProcess) -> None:
    def calls() -> list[httpx.Response]:
        sale = make_sale(stock=100, pow_difficulty=4)
        (_, token), *_ = make_shoppers(1)
        return [
            httpx.post(
                f"{guarded_server.url}/api/sales/{sale.pk}/challenge/",
                headers={**auth(token), "X-Real-IP": f"192.0.2.{n}"},
                timeout=10,
            )
            for n in range(4)
        ]

    answers, _ = _in_one_window(calls)
    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
    assert answers[-1].json()["status"] == "RATE_LIMITED"
    assert "Retry-After" in answers[-1].headers


@pytest.mark.parametrize(
    ("header", "proxies", "meta", "expected"),
    [
        ("", 1, {"HTTP_X_FORWARDED_FOR": "1.2.3.4"}, "10.0.0.9"),  # No trusted header: the peer.
        ("X-Real-IP", 1, {"HTTP_X_REAL_IP": "1.2.3.4"}, "1.2.3.4"),
        ("X-Real-IP", 1, {"HTTP_X_REAL_IP": "not an ip"}, "10.0.0.9"),
        ("X-Forwarded-For", 1, {"HTTP_X_FORWARDED_FOR": "6.6.6.6, 1.2.3.4"}, "1.2.3.4"),  # Left is spoofable.
        ("X-Forwarded-For", 2, {"HTTP_X_FORWARDED_FOR": "6.6.6.6, 1.2.3.4, 10.0.0.1"}, "1.2.3.4"),
        ("X-Forwarded-For", 3, {"HTTP_X_FORWARDED_FOR": "1.2.3.4"}, "10.0.0.9"),  # Fewer hops than proxies.
        ("X-Forwarded-For", 1, {}, "10.0.0.9"),
    ],
)
def test_the_client_ip_is_never_taken_blindly_from_forwarded_headers(
    header: str, proxies: int, meta: dict[str, str], expected: str
) -> None:
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.9", **meta)  # type: ignore[arg-type]
    with override_settings(
        ANTIBOT_CLIENT_IP_HEADER=header, ANTIBOT_TRUSTED_PROXY_COUNT=proxies, TRUSTED_PROXY_NETWORKS=["10.0.0.0/24"]
    ):
        assert client_ip(request) == expected
