"""The Redis ceiling (scenario 6) must run the purchase script exactly as the winning path
does: its key and argument layout is checked here against the real script in real Redis."""

from __future__ import annotations

import uuid

import pytest

from antibot import keys as antibot_keys
from bench.redis_ceiling import purchase_call
from core.redis_store import inventory_redis
from sales import inventory, keys
from sales.inventory import PURCHASE_SCRIPT
from tests.factories import make_sale

pytestmark = pytest.mark.django_db


def _run(sale_id: int, *, user: str, nonce: str) -> list:  # type: ignore[type-arg]
    script_keys, args = purchase_call(sale_id, user=user, order_id=str(uuid.uuid4()), nonce=nonce)
    return PURCHASE_SCRIPT(script_keys, args, client=inventory_redis())  # type: ignore[no-any-return]


def test_the_ceiling_call_wins_and_spends_the_challenge() -> None:
    sale = make_sale(stock=5)
    client = inventory_redis()

    status, order_id, remaining, *_ = _run(sale.pk, user="7", nonce="n-1")

    assert (status, remaining) == ("SUCCESS", 4)
    assert inventory.sale_buyers(sale.pk) == {7: order_id}
    assert client.get(antibot_keys.spent_challenge_key(keys.keyspace(sale.pk), "n-1")) == "7"
    assert 0 < client.ttl(antibot_keys.spent_challenge_key(keys.keyspace(sale.pk), "n-1")) <= 1800


def test_the_ceiling_call_is_refused_like_the_winning_path() -> None:
    sale = make_sale(stock=5)
    _run(sale.pk, user="7", nonce="n-1")

    assert _run(sale.pk, user="8", nonce="n-1")[0] == "POW_REUSED"
    assert _run(sale.pk, user="7", nonce="n-2")[0] == "ALREADY_PURCHASED"
    inventory_redis().hset(keys.returned_buyers_key(sale.pk), "9", "an-order-given-back")
    assert _run(sale.pk, user="9", nonce="n-3")[0] == "ALREADY_PURCHASED"
    counts = inventory.sale_counts(sale.pk)
    assert (counts.remaining, counts.buyers, counts.stock_consistent) == (4, 1, True)
