"""The benchmark's request bodies: challenges the server's own steps issued together, one for
each shopper, in the shoppers' order, each valid for its shopper and sale only."""

from __future__ import annotations

import json
import time

import pytest
from django.test import override_settings

from antibot.challenges import ChallengeRefused, challenge_verify
from antibot.proof_of_work import solve
from bench import data
from tests.factories import make_sale, make_shoppers

pytestmark = pytest.mark.django_db(transaction=True)

DIFFICULTY = 8


@override_settings(ANTIBOT_POW_BASE_RATE=10**9)  # as the benchmark's process: a burst keeps the floor
def test_challenges_issued_together_are_each_shoppers_in_order_and_verify_for_them_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Batches of 64, so that 300 shoppers cross four batch edges.
    monkeypatch.setattr(data, "ISSUED_TOGETHER", 64)
    sale = make_sale(pow_difficulty=DIFFICULTY)
    user_ids = [user_id for user_id, _ in make_shoppers(300)]

    issued = data.challenges_issue(sale_id=sale.pk, user_ids=user_ids)

    assert [challenge.challenge.split(".")[1:3] for challenge in issued] == [[str(sale.pk), str(u)] for u in user_ids]
    assert len({challenge.challenge for challenge in issued}) == len(user_ids)
    assert {challenge.difficulty for challenge in issued} == {DIFFICULTY}
    now_ms = int(time.time() * 1000)
    for index in (0, 1, 63, 64, 65, 299):
        challenge = issued[index].challenge
        solution = solve(challenge, DIFFICULTY)
        assert challenge_verify(
            challenge=challenge, solution=solution, scope_id=sale.pk, user_id=user_ids[index], now_ms=now_ms
        )
        with pytest.raises(ChallengeRefused, match="wrong user"):
            challenge_verify(
                challenge=challenge, solution=solution, scope_id=sale.pk, user_id=user_ids[index - 1], now_ms=now_ms
            )
    assert data.challenges_issue(sale_id=sale.pk, user_ids=[]) == []


@override_settings(ANTIBOT_POW_BASE_RATE=10**9)
def test_presolved_bodies_carry_each_shoppers_challenge_and_its_solution() -> None:
    sale = make_sale(pow_difficulty=DIFFICULTY)
    shoppers = [data.Shopper(user_id=user_id, token=token) for user_id, token in make_shoppers(40)]

    bodies = [json.loads(body) for body in data.presolved_bodies(sale=sale, shoppers=shoppers)]

    now_ms = int(time.time() * 1000)
    for shopper, body in zip(shoppers, bodies, strict=True):
        assert set(body) == {"challenge", "solution"}
        assert challenge_verify(scope_id=sale.pk, user_id=shopper.user_id, now_ms=now_ms, **body)
