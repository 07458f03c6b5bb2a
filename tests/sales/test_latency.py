"""Each purchase answer's time in the server, counted per sale in the latency hash beside
the answer counts (``sales.tally``), by real web processes and the TCP door."""

from __future__ import annotations

from typing import cast

import pytest

from core.redis_store import inventory_redis
from sales import keys
from sales.latency import FIELDS, quantile_ms
from tests.clients import purchase, tcp_ask
from tests.factories import make_sale, make_shoppers
from tests.polling import wait_for
from tests.processes import ChildProcess

pytestmark = pytest.mark.django_db(transaction=True)


def _histogram(sale_id: int) -> dict[str, int]:
    raw = cast(dict[str, str], inventory_redis().hgetall(keys.latency_key(sale_id)))
    return {name: int(count) for name, count in raw.items()}


def test_every_purchase_answer_is_counted_in_one_latency_bucket(
    web_server: ChildProcess, tcp_server: ChildProcess
) -> None:
    # Given a sale of 3 units and 12 shoppers, 8 over HTTP and 4 over the TCP door
    sale = make_sale(stock=3)
    shoppers = make_shoppers(12)

    # When each tries once
    for _, token in shoppers[:8]:
        purchase(web_server, sale.pk, token)
    for _, token in shoppers[8:]:
        tcp_ask(tcp_server, 0x01, {"product_id": sale.pk, "token": token})

    # Then, once the processes flushed, the histogram holds 12 answers, each in a known bucket
    wait_for(lambda: sum(_histogram(sale.pk).values()) >= 12, what="12 answers counted", timeout=30)
    histogram = _histogram(sale.pk)
    assert sum(histogram.values()) == 12
    assert set(histogram) <= set(FIELDS)
    p50, p99 = quantile_ms(histogram, 0.5), quantile_ms(histogram, 0.99)
    assert p50 is not None and p99 is not None and 0 < p50 <= p99
