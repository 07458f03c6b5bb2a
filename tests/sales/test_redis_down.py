"""Redis unreachable: the purchase answers 503 at once with Retry-After, and nothing of the
attempt is left behind once Redis is back (from its append-only file)."""

from __future__ import annotations

import pytest
from django.test import Client

from core.process_state import forget_process_state
from devstack.localservers import LocalRedis
from sales import inventory
from tests.clients import purchase
from tests.factories import make_sale, make_shopper

pytestmark = pytest.mark.django_db


def test_redis_down_answers_503_with_retry_after_and_buys_nothing(client: Client, own_redis: LocalRedis) -> None:
    sale = make_sale(stock=3)
    _, first = make_shopper()
    _, second = make_shopper()
    assert purchase(client, sale.pk, first).status_code == 201  # This process knows the sale now.

    own_redis.stop()
    while_down = purchase(client, sale.pk, second)
    forget_process_state()
    cold_while_down = purchase(client, sale.pk, second)

    for response in (while_down, cold_while_down):
        assert response.status_code == 503
        assert response.json()["status"] == "UNAVAILABLE"
        assert response["Retry-After"] == "1"
    own_redis.start()
    counts = inventory.sale_counts(sale.pk)
    assert (counts.remaining, counts.buyers, counts.stream_length) == (2, 1, 1)
    assert purchase(client, sale.pk, second).status_code == 201
    assert inventory.sale_counts(sale.pk).remaining == 1
