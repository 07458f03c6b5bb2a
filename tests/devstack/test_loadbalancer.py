"""Many nodes behind a real load balancer, locally: three granian web processes and a ws
process on loopback ports behind Debian's HAProxy, with the configuration the compose stack
runs (devstack/loadbalancer.py). No sticky sessions: any process answers any shopper."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect
from websockets.typing import Origin

from core.errors import RequestTimeout
from devstack.loadbalancer import LocalHaproxy
from devstack.localservers import free_port
from flashsale_project.settings.environment import redis_db_url
from orders.models import Order
from sales import inventory
from tests.clients import purchase_resent
from tests.factories import make_sale, make_shoppers
from tests.polling import wait_for
from tests.processes import OPEN_ADMISSION, ChildProcess, SharedWorker, start_shared_worker, start_web, start_ws

pytestmark = pytest.mark.django_db(transaction=True)

WEB_PROCESSES = 3


@pytest.fixture(scope="module")
def balanced_stack(
    django_db_setup: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LocalHaproxy, list[ChildProcess], SharedWorker]]:
    # A broker database of their own, and their own worker: the session's worker stays unstarted
    # for the suites that count waiting orders.
    env = {**OPEN_ADMISSION, "CELERY_BROKER_URL": redis_db_url(os.environ["REDIS_URL"], 6)}
    webs = [start_web(workers=1, env=env) for _ in range(WEB_PROCESSES)]
    ws = start_ws(env=env)
    worker = start_shared_worker(name="lb-worker", **env)
    balancer = LocalHaproxy(
        config_dir=tmp_path_factory.mktemp("haproxy"),
        port=free_port(),
        web_ports=tuple(web.port for web in webs),
        ws_ports=(ws.port,),
    ).start()
    # Every server passed its first health check.
    wait_for(lambda: len(_served_by(balancer, 3 * WEB_PROCESSES)) == WEB_PROCESSES, what="all web servers in rotation")
    yield balancer, webs, worker
    balancer.stop()
    worker.stop()
    ws.stop()
    for web in webs:
        web.stop()


@pytest.fixture
def balanced(
    balanced_stack: tuple[LocalHaproxy, list[ChildProcess], SharedWorker],
) -> Iterator[tuple[LocalHaproxy, list[ChildProcess]]]:
    """The module's stack, its worker working for this test (idle before its flush)."""
    balancer, webs, worker = balanced_stack
    with worker.working():
        yield balancer, webs


def _served_by(balancer: LocalHaproxy, requests: int) -> Counter[str]:
    with httpx.Client(base_url=balancer.url, timeout=10) as client:
        return Counter(client.get("/api/sales/").headers.get("X-Served-By", "") for _ in range(requests))


async def _attempts(base_url: str, sale_id: int, tokens: list[str]) -> list[tuple[str, int, dict, str]]:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    gate = asyncio.Semaphore(200)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:

        async def attempt(token: str) -> tuple[str, int, dict, str]:
            async with gate:
                response = await purchase_resent(client, sale_id, token)
                return token, response.status_code, response.json(), response.headers.get("X-Served-By", "")

        return await asyncio.gather(*(attempt(token) for token in tokens))


def test_requests_are_spread_over_every_web_process_and_a_shopper_needs_no_sticky_session(
    balanced: tuple[LocalHaproxy, list[ChildProcess]],
) -> None:
    balancer, _ = balanced
    # Round robin over the three
    assert sorted(_served_by(balancer, 30).values()) == [10, 10, 10]

    # One shopper's purchase and retries land on different processes and agree
    sale = make_sale(stock=5)
    [(_, token)] = make_shoppers(1)
    with httpx.Client(base_url=balancer.url, timeout=10) as client:
        answers = [
            client.post(f"/api/sales/{sale.pk}/purchase/", json={}, headers={"Authorization": f"Token {token}"})
            for _ in range(WEB_PROCESSES)
        ]
    assert len({answer.headers["X-Served-By"] for answer in answers}) == WEB_PROCESSES
    assert [answer.status_code for answer in answers] == [201, 409, 409]
    order_id = answers[0].json()["order_id"]
    assert {answer.json()["order_id"] for answer in answers} == {order_id}


def test_a_stampede_through_the_balancer_sells_exactly_the_stock(
    balanced: tuple[LocalHaproxy, list[ChildProcess]],
) -> None:
    # Given ten units and 1,000 shoppers who each try twice, through HAProxy to three processes
    balancer, _ = balanced
    sale = make_sale(stock=10)
    shoppers = make_shoppers(1000)
    tokens = [token for _, token in shoppers] * 2

    results = asyncio.run(_attempts(balancer.url, sale.pk, tokens))

    # Then every process took part, exactly ten won, every winner's other try heard their order
    assert {served for *_, served in results} == {f"web-{n}" for n in range(1, WEB_PROCESSES + 1)}
    statuses = Counter((status, body["status"]) for _, status, body, _ in results)
    assert statuses[(201, "SUCCESS")] == 10
    assert statuses[(409, "ALREADY_PURCHASED")] == 10
    assert set(statuses) <= {(201, "SUCCESS"), (409, "ALREADY_PURCHASED"), (409, "SOLD_OUT"), (429, "RATE_LIMITED")}
    wins = {body["order_id"]: token for token, status, body, _ in results if status == 201}
    for token, _, body, _ in results:
        if body["status"] == "ALREADY_PURCHASED":
            assert wins[body["order_id"]] == token
    counts = inventory.sale_counts(sale.pk)
    assert (counts.remaining, counts.buyers, counts.total) == (0, 10, 10)  # I1
    # And each win becomes one order with the same id (I2, I3)
    wait_for(lambda: Order.objects.filter(sale=sale).count() >= 10, what="10 orders")
    user_of_token = {token: user_id for user_id, token in shoppers}
    orders = {str(order.id): order.user_id for order in Order.objects.filter(sale=sale)}
    assert orders == {order_id: user_of_token[token] for order_id, token in wins.items()}


def test_the_live_socket_goes_through_the_balancer(balanced: tuple[LocalHaproxy, list[ChildProcess]]) -> None:
    balancer, _ = balanced
    sale = make_sale(stock=5)
    [(_, token)] = make_shoppers(1)
    url = f"ws://127.0.0.1:{balancer.port}/ws/sales/{sale.pk}/"
    with connect(url, origin=Origin(f"http://127.0.0.1:{balancer.port}")) as socket:
        hello = json.loads(socket.recv(timeout=30))
        assert (hello["type"], hello["remaining_stock"]) == ("hello", 5)
        with httpx.Client(base_url=balancer.url, timeout=10) as client:
            bought = client.post(
                f"/api/sales/{sale.pk}/purchase/", json={}, headers={"Authorization": f"Token {token}"}
            )
        assert bought.status_code == 201
        while (message := json.loads(socket.recv(timeout=30)))["type"] == "countdown":
            pass
        assert message == {"type": "stock", "remaining_stock": 4}


def test_with_no_server_up_the_balancer_answers_the_contracts_503(tmp_path: Path) -> None:
    balancer = LocalHaproxy(config_dir=tmp_path, port=free_port(), web_ports=(free_port(),)).start()
    try:
        wait_for(lambda: _post_status(balancer) == 503, what="the server marked down")
        response = httpx.post(f"{balancer.url}/api/sales/1/purchase/", json={}, timeout=10)
    finally:
        balancer.stop()
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json()["status"] == "UNAVAILABLE"


def _post_status(balancer: LocalHaproxy) -> int:
    return httpx.post(f"{balancer.url}/api/sales/1/purchase/", json={}, timeout=10).status_code


def test_a_body_that_never_finishes_is_the_balancers_408_and_reaches_no_web_process(
    balanced: tuple[LocalHaproxy, list[ChildProcess]],
) -> None:
    # Given forty anonymous logins announcing 60,000 bytes and never sending them, through
    # the balancer (each web process behind it has 8 threads)
    balancer, _ = balanced
    began = time.monotonic()
    slow = [socket.create_connection(("127.0.0.1", balancer.port), timeout=30) for _ in range(40)]
    try:
        for connection in slow:
            connection.sendall(
                b"POST /api/auth/token/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: 60000\r\n\r\n" + b'{"u'
            )
        # When others buy meanwhile, through the balancer
        sale = make_sale(stock=5)
        [(_, token)] = make_shoppers(1)
        with httpx.Client(base_url=balancer.url, timeout=10) as shopper:
            healthz = shopper.get("/healthz")
            bought = shopper.post(
                f"/api/sales/{sale.pk}/purchase/", json={}, headers={"Authorization": f"Token {token}"}
            )
        # Then they are answered, and each slow body hears the contract's 408 from the balancer
        answers = [connection.recv(4096) for connection in slow]
    finally:
        for connection in slow:
            connection.close()
    assert (healthz.status_code, bought.status_code) == (200, 201)
    heads = {answer.partition(b"\r\n\r\n")[0].split(b"\r\n")[0] for answer in answers}
    assert heads == {b"HTTP/1.1 408 Request Timeout"}
    assert {json.loads(answer.partition(b"\r\n\r\n")[2]) == RequestTimeout().body() for answer in answers} == {True}
    assert time.monotonic() - began >= 4.9  # timeout http-request
