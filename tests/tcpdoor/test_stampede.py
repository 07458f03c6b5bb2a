"""Stampedes over the TCP door with exact winners, and TCP and HTTP shoppers competing for the
same stock; every win becomes one order row (the real Celery worker)."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import httpx
import pytest

from orders.models import Order
from sales import inventory
from tcpdoor.load import attempt_frame, load_run
from tests.factories import make_sale, make_shoppers
from tests.polling import wait_for
from tests.processes import ChildProcess, child_env

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]


def test_a_tcp_stampede_sells_exactly_the_stock_to_distinct_shoppers(
    tcp_server: ChildProcess, celery_worker: ChildProcess
) -> None:
    # Given ten units and 600 shoppers who each try twice, over 100 pipelined connections
    sale = make_sale(stock=10)
    shoppers = make_shoppers(600)
    attempts = [token for _, token in shoppers] * 2
    random.shuffle(attempts)
    frames = [attempt_frame(sale.product.slug, token=token) for token in attempts]

    result = load_run(frames, port=tcp_server.port, connections=100, keep_bodies=True)

    # Then every attempt was answered; exactly ten won, each a different shopper
    assert result.requests == 1200 and not result.errors
    assert result.statuses["SUCCESS"] == 10
    assert set(result.statuses) <= {"SUCCESS", "ALREADY_PURCHASED", "SOLD_OUT", "RATE_LIMITED"}
    won = [body["order_id"] for body in result.bodies if body["status"] == "SUCCESS"]
    assert len(set(won)) == 10
    assert {body["order_id"] for body in result.bodies if body["status"] == "ALREADY_PURCHASED"} <= set(won)
    counts = inventory.sale_counts(sale.pk)
    assert (counts.remaining, counts.buyers) == (0, 10)
    assert sorted(inventory.sale_buyers(sale.pk).values()) == sorted(won)
    # And the worker made exactly those ten orders
    wait_for(lambda: Order.objects.filter(sale=sale).count() >= 10, what="10 orders")
    assert sorted(str(pk) for pk in Order.objects.filter(sale=sale).values_list("id", flat=True)) == sorted(won)


async def _http_attempts(base_url: str, sale_id: int, tokens: list[str]) -> list[dict]:
    gate = asyncio.Semaphore(50)
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:

        async def attempt(token: str) -> dict:
            async with gate:
                response = await client.post(
                    f"/api/sales/{sale_id}/purchase/", json={}, headers={"Authorization": f"Token {token}"}
                )
                return dict(response.json())

        return await asyncio.gather(*(attempt(token) for token in tokens))


def test_tcp_and_http_shoppers_compete_for_one_stock_without_oversell(
    tcp_server: ChildProcess, web_server: ChildProcess, celery_worker: ChildProcess
) -> None:
    # Given 25 units, 400 shoppers over TCP and 400 over HTTP, all at once
    sale = make_sale(stock=25)
    shoppers = [token for _, token in make_shoppers(800)]
    over_tcp, over_http = shoppers[:400], shoppers[400:]
    tcp_bodies: list[dict] = []

    def tcp_crowd() -> None:
        frames = [attempt_frame(sale.pk, token=token) for token in over_tcp]
        tcp_bodies.extend(load_run(frames, port=tcp_server.port, connections=50, keep_bodies=True).bodies)

    crowd = threading.Thread(target=tcp_crowd)
    crowd.start()
    http_bodies = asyncio.run(_http_attempts(web_server.url, sale.pk, over_http))
    crowd.join(timeout=120)

    # Then both doors together sold exactly the stock, never more
    assert len(tcp_bodies) == 400 and len(http_bodies) == 400
    answers = Counter(body["status"] for body in tcp_bodies + http_bodies)
    assert answers["SUCCESS"] == 25
    assert set(answers) <= {"SUCCESS", "SOLD_OUT", "RATE_LIMITED"}
    won = [body["order_id"] for body in tcp_bodies + http_bodies if body["status"] == "SUCCESS"]
    counts = inventory.sale_counts(sale.pk)
    assert (counts.remaining, counts.buyers, counts.stock_consistent) == (0, 25, True)
    assert sorted(inventory.sale_buyers(sale.pk).values()) == sorted(won)
    wait_for(lambda: Order.objects.filter(sale=sale).count() >= 25, what="25 orders")
    assert Order.objects.filter(sale=sale).count() == 25


def test_the_seeds_client_sends_one_attempt_and_benchmarks_with_the_oversell_check(
    tcp_server: ChildProcess, celery_worker: ChildProcess
) -> None:
    sale = make_sale(stock=5)
    (_, token), *_ = make_shoppers(1)
    env = child_env()
    client = [sys.executable, "-m", "tcpdoor.client", "--port", str(tcp_server.port)]

    one = subprocess.run([*client, "attempt", sale.product.slug, "--token", token], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    bench = subprocess.run([*client, "bench", str(sale.pk), "-c", "10", "-n", "300", "--users", "1-60", "--check"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)  # fmt: skip

    assert one.returncode == 0, one.stderr
    assert json.loads(one.stdout)["status"] == "SUCCESS"
    assert bench.returncode == 0, bench.stdout + bench.stderr
    report = json.loads(bench.stdout)
    assert report["attempts"] == 300
    assert report["statuses"]["SUCCESS"] == 4  # the stock the first attempt left
    assert report["check"]["holds"] is True
    assert (report["check"]["buyers"], report["check"]["orders"], report["check"]["remaining"]) == (5, 5, 0)
    assert report["latency_ms"]["p99"] >= report["latency_ms"]["p50"] > 0
