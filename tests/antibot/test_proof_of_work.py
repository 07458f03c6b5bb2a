"""Bots pay for every try: proof of work checked by the real server, each failure named."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest
from django.test import override_settings

from antibot.challenges import adaptive_difficulty
from antibot.proof_of_work import leading_zero_bits, solution_is_valid, solve
from sales import inventory
from sales.purchase import sale_challenge_issue
from tests.clients import challenge, purchase
from tests.factories import make_sale, make_shopper
from tests.processes import ChildProcess

pytestmark = pytest.mark.django_db(transaction=True)

DIFFICULTY = 8


def _wrong_solution(challenge: str, difficulty: int) -> str:
    for counter in range(10_000):
        candidate = f"nope{counter}"
        if not solution_is_valid(challenge, candidate, difficulty):
            return candidate
    raise AssertionError("every candidate solved it")


def test_a_challenge_is_signed_bound_and_carries_the_sales_difficulty(open_server: ChildProcess) -> None:
    sale = make_sale(pow_difficulty=DIFFICULTY)
    _, token = make_shopper()

    issued = challenge(open_server, sale.pk, token).json()

    assert set(issued) == {"challenge", "difficulty", "expires_at"}
    assert issued["difficulty"] == DIFFICULTY
    assert issued["challenge"].startswith(f"v1.{sale.pk}.")
    assert issued["expires_at"].endswith("Z")


def test_a_scripted_bot_without_proof_of_work_gets_403_for_every_try(open_server: ChildProcess) -> None:
    sale = make_sale(stock=5, pow_difficulty=DIFFICULTY)
    _, token = make_shopper()

    answers = [purchase(open_server, sale.pk, token) for _ in range(20)]

    assert Counter(answer.status_code for answer in answers) == {403: 20}
    assert {answer.json()["status"] for answer in answers} == {"POW_INVALID"}
    assert answers[0].json()["detail"].startswith("missing: this sale needs a proof of work")
    assert inventory.sale_counts(sale.pk).remaining == 5


def test_a_solved_challenge_buys_once_and_a_replay_hears_the_order_it_bought(open_server: ChildProcess) -> None:
    sale = make_sale(stock=5, pow_difficulty=DIFFICULTY)
    _, token = make_shopper()
    issued = challenge(open_server, sale.pk, token).json()
    body = {"challenge": issued["challenge"], "solution": solve(issued["challenge"], issued["difficulty"])}

    first = purchase(open_server, sale.pk, token, body)
    replay = purchase(open_server, sale.pk, token, body)

    assert first.status_code == 201
    # A challenge is spent only by a win, and a winner hears their order before anything
    # else: the replay cannot buy again (the script's single-use check stands behind it,
    # tested in tests/bench/test_redis_ceiling_call.py).
    assert replay.status_code == 409
    assert replay.json()["status"] == "ALREADY_PURCHASED"
    assert replay.json()["order_id"] == first.json()["order_id"]
    assert inventory.sale_counts(sale.pk).remaining == 4


def test_another_users_challenge_is_refused(open_server: ChildProcess) -> None:
    sale = make_sale(stock=5, pow_difficulty=DIFFICULTY)
    _, alice = make_shopper()
    _, bob = make_shopper()
    issued = challenge(open_server, sale.pk, alice).json()
    body = {"challenge": issued["challenge"], "solution": solve(issued["challenge"], issued["difficulty"])}

    stolen = purchase(open_server, sale.pk, bob, body)

    assert stolen.status_code == 403
    assert stolen.json()["detail"] == "wrong user: the challenge was issued to another user."
    assert purchase(open_server, sale.pk, alice, body).status_code == 201


def test_a_challenge_for_another_sale_is_refused(open_server: ChildProcess) -> None:
    here = make_sale(pow_difficulty=DIFFICULTY)
    there = make_sale(pow_difficulty=DIFFICULTY)
    _, token = make_shopper()
    issued = challenge(open_server, there.pk, token).json()
    body = {"challenge": issued["challenge"], "solution": solve(issued["challenge"], issued["difficulty"])}

    answer = purchase(open_server, here.pk, token, body)

    assert answer.status_code == 403
    assert answer.json()["detail"] == "wrong sale: the challenge was issued for another sale."


def test_an_expired_challenge_is_refused(open_server: ChildProcess) -> None:
    sale = make_sale(pow_difficulty=DIFFICULTY)
    user, token = make_shopper()
    # Signed with the server's key like any other, with no lifetime left.
    with override_settings(ANTIBOT_CHALLENGE_TTL_SECONDS=0, ANTIBOT_USER_LIMIT=0):
        issued = sale_challenge_issue(sale_id=sale.pk, user_id=user.pk)
    body = {"challenge": issued.challenge, "solution": solve(issued.challenge, issued.difficulty)}

    answer = purchase(open_server, sale.pk, token, body)

    assert answer.status_code == 403
    assert answer.json()["detail"] == "expired: ask for a new challenge."


@pytest.mark.parametrize(
    ("tamper", "detail"),
    [
        (lambda c: c + "x", "forged: the challenge's signature does not match."),
        (lambda c: c.replace(".8.", ".1.", 1), "forged: the challenge's signature does not match."),
        (lambda c: "v1.not.a.challenge", "forged: this is not a challenge this server issued."),
        (lambda c: "", "missing: this sale needs a proof of work"),
        # Non-ASCII in the signature: hmac.compare_digest refuses such text (it was a 500).
        (lambda c: c[:-1] + "é", "forged: this is not a challenge this server issued."),
        (lambda c: c[:-1] + "\u0663", "forged: this is not a challenge this server issued."),
    ],
)
def test_a_forged_challenge_is_refused(open_server: ChildProcess, tamper, detail: str) -> None:  # type: ignore[no-untyped-def]
    sale = make_sale(pow_difficulty=DIFFICULTY)
    _, token = make_shopper()
    issued = challenge(open_server, sale.pk, token).json()
    forged = tamper(issued["challenge"])

    answer = purchase(open_server, sale.pk, token, {"challenge": forged, "solution": "1"})

    assert answer.status_code == 403
    assert answer.json()["detail"].startswith(detail)


def test_a_wrong_solution_is_refused_and_names_the_difficulty(open_server: ChildProcess) -> None:
    sale = make_sale(stock=3, pow_difficulty=DIFFICULTY)
    _, token = make_shopper()
    issued = challenge(open_server, sale.pk, token).json()

    answer = purchase(
        open_server,
        sale.pk,
        token,
        {"challenge": issued["challenge"], "solution": _wrong_solution(issued["challenge"], DIFFICULTY)},
    )

    assert answer.status_code == 403
    assert answer.json()["detail"] == f"wrong solution: the hash has fewer than {DIFFICULTY} leading zero bits."
    assert inventory.sale_counts(sale.pk).remaining == 3


@pytest.mark.parametrize("solution", ["é" * 64, "\U0001f600", "\x00"])
def test_a_solution_in_any_text_is_judged_not_crashed_on(open_server: ChildProcess, solution: str) -> None:
    sale = make_sale(stock=3, pow_difficulty=24)  # nothing short of a solver passes
    _, token = make_shopper()
    issued = challenge(open_server, sale.pk, token).json()

    answer = purchase(open_server, sale.pk, token, {"challenge": issued["challenge"], "solution": solution})

    assert answer.status_code == 403
    assert answer.json()["detail"].startswith("wrong solution: ")
    assert inventory.sale_counts(sale.pk).remaining == 3


def test_a_sale_without_proof_of_work_needs_no_challenge(open_server: ChildProcess) -> None:
    sale = make_sale(pow_difficulty=0)
    assert purchase(open_server, sale.pk, make_shopper()[1]).status_code == 201


def test_the_solver_and_the_rule_agree_with_sha256() -> None:
    challenge = "v1.1.2.3.12.nonce.sig"
    solution = solve(challenge, 12)
    digest = hashlib.sha256((challenge + solution).encode("utf-8")).digest()
    assert leading_zero_bits(digest) >= 12
    assert solution_is_valid(challenge, solution, 12)
    assert not solution_is_valid(challenge, "x" * 65, 0)  # Longer than the contract allows.
    assert leading_zero_bits(bytes([0, 0, 0b0001_0000]) + bytes(29)) == 19


@override_settings(ANTIBOT_POW_BASE_RATE=100, ANTIBOT_POW_MAX_DIFFICULTY=20)
def test_the_adaptive_difficulty_adds_a_bit_per_doubling_of_the_challenge_rate() -> None:
    assert [adaptive_difficulty(floor=10, rate=rate) for rate in (1, 100, 101, 200, 201, 400, 800, 10**6)] == [
        10, 10, 11, 11, 12, 12, 13, 20,
    ]  # fmt: skip
    assert adaptive_difficulty(floor=0, rate=10**6) == 0  # Off stays off.


# A low base: the rate is counted per second, and a loaded machine may issue only a few.
@override_settings(ANTIBOT_POW_BASE_RATE=2, ANTIBOT_USER_LIMIT=0, ANTIBOT_IP_LIMIT=0)
def test_issued_difficulty_rises_with_the_sales_challenge_rate() -> None:
    sale = make_sale(pow_difficulty=DIFFICULTY)
    user, _ = make_shopper()

    difficulties = [sale_challenge_issue(sale_id=sale.pk, user_id=user.pk).difficulty for _ in range(60)]

    assert difficulties[0] == DIFFICULTY
    assert difficulties[-1] >= DIFFICULTY + 2  # At least 5 in a second against a base of 2.
    assert max(difficulties) <= 22
