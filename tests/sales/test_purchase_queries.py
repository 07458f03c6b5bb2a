"""Everything of the anti-bot layer switched on at once still costs no SQL, and the admin
shows and edits its knobs."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth import get_user_model
from django.test import Client, override_settings

from antibot.proof_of_work import solve
from sales import inventory
from sales.purchase import sale_challenge_issue
from sales.tally import tally
from tests.factories import auth, make_sale, make_shopper

pytestmark = pytest.mark.django_db


@override_settings(ANTIBOT_USER_LIMIT=5, ANTIBOT_IP_LIMIT=50, ANTIBOT_RATE_WINDOW_SECONDS=10)
def test_proof_of_work_limits_bucket_and_idempotency_together_make_no_sql_query(
    client: Client, django_assert_num_queries: Callable
) -> None:
    sale = make_sale(stock=5, pow_difficulty=6, bucket_capacity=10, bucket_refill_per_second=5)
    _, token = make_shopper()
    warm_user, warm_token = make_shopper()
    warm = sale_challenge_issue(sale_id=sale.pk, user_id=warm_user.pk)
    client.post(
        f"/api/sales/{sale.pk}/purchase/",
        {"challenge": warm.challenge, "solution": solve(warm.challenge, warm.difficulty)},
        content_type="application/json",
        headers=auth(warm_token),
    )

    with django_assert_num_queries(0):
        issued = client.post(f"/api/sales/{sale.pk}/challenge/", headers=auth(token)).json()
        answer = client.post(
            f"/api/sales/{sale.pk}/purchase/",
            {"challenge": issued["challenge"], "solution": solve(issued["challenge"], issued["difficulty"])},
            content_type="application/json",
            headers={**auth(token), "Idempotency-Key": "one-click"},
        )

    assert answer.status_code == 201


def test_the_admin_edits_difficulty_bucket_and_crowd_factor_and_the_loaded_sale_follows(client: Client) -> None:
    admin = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw-boss-12345")
    client.force_login(admin)
    sale = make_sale(stock=5)
    form = client.get(f"/admin/sales/flashsale/{sale.pk}/change/").content.decode()
    for field in ("pow_difficulty", "bucket_capacity", "bucket_refill_per_second", "crowd_factor"):
        assert f'name="{field}"' in form

    response = client.post(
        f"/admin/sales/flashsale/{sale.pk}/change/",
        {
            "product": sale.product.pk,
            "price": "1.00",
            "per_user_limit": 1,
            "starts_at_0": sale.starts_at.strftime("%Y-%m-%d"),
            "starts_at_1": sale.starts_at.strftime("%H:%M:%S"),
            "ends_at_0": sale.ends_at.strftime("%Y-%m-%d"),
            "ends_at_1": sale.ends_at.strftime("%H:%M:%S"),
            "pow_difficulty": 14,
            "bucket_capacity": 300,
            "bucket_refill_per_second": 40,
            "crowd_factor": "1.5",
            "admission": "direct",
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    meta = inventory.sale_meta(sale.pk)
    assert meta is not None
    assert (meta.pow_difficulty, meta.bucket_capacity, meta.bucket_refill_per_second) == (14, 300, 40)
    assert meta.crowd_factor == 1.5


def test_the_admin_live_panel_counts_answers_per_reason(client: Client) -> None:
    admin = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw-boss-12345")
    sale = make_sale(stock=1, pow_difficulty=0)
    winner = make_shopper()[1]
    for token in (winner, winner):
        client.post(f"/api/sales/{sale.pk}/purchase/", "{}", content_type="application/json", headers=auth(token))
    client.force_login(admin)
    tally.flush()  # The web processes flush their counts once a second.

    page = client.get(f"/admin/sales/flashsale/{sale.pk}/change/").content.decode()

    assert "<th>Attempts arrived</th><td>2</td>" in page
    assert "<th>Sent to Redis (purchase.lua)</th><td>1</td>" in page
    assert "<th>Answered SUCCESS</th><td>1</td>" in page
    assert "<th>Answered ALREADY_PURCHASED</th><td>1</td>" in page
    assert "<th>Remaining stock</th><td>0</td>" in page
