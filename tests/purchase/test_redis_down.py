"""Redis unreachable: the purchase answers 503 at once with Retry-After, and nothing of the
attempt is left behind once Redis is back (from its append-only file)."""

from __future__ import annotations

import pytest
from django.test import Client

from devstack.localservers import LocalRedis
from sales import inventory
from sales.services import _meta_seen
from tests.factories import auth, make_sale, make_shopper

pytestmark = pytest.mark.django_db


def _purchase(client: Client, sale_id: int, token: str):  # type: ignore[no-untyped-def]
    return client.post(f"/api/sales/{sale_id}/purchase/", "{}", content_type="application/json", headers=auth(token))


def test_redis_down_answers_503_with_retry_after_and_buys_nothing(client: Client, own_redis: LocalRedis) -> None:
    sale = make_sale(stock=3)
    _, first = make_shopper()
    _, second = make_shopper()
    assert _purchase(client, sale.pk, first).status_code == 201  # This process knows the sale now.

    own_redis.stop()
    while_down = _purchase(client, sale.pk, second)
    _meta_seen.clear()
    cold_while_down = _purchase(client, sale.pk, second)

    for response in (while_down, cold_while_down):
        assert response.status_code == 503
        assert response.json()["status"] == "UNAVAILABLE"
        assert response["Retry-After"] == "1"
    own_redis.start()
    counts = inventory.sale_counts(sale.pk)
    assert (counts.remaining, counts.buyers, counts.stream_length) == (2, 1, 1)
    assert _purchase(client, sale.pk, second).status_code == 201
    assert inventory.sale_counts(sale.pk).remaining == 1
