"""Fan-out at scale: 2,000 WebSocket clients on one ws process (uvicorn, as ``make run``
runs it) all receive ``sale_started``, through one Redis subscription of that process.

The sale opens far in the future while the clients connect; then the operator moves the
start to a few seconds from now (``sale_update``), so the test waits for states, never for
a guessed amount of time.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone
from websockets.asyncio.client import ClientConnection, connect

from core.events import CLIENT_NAME
from sales.models import FlashSale
from sales.services import sale_update
from tests.factories import make_sale
from tests.processes import OPEN_ADMISSION, ROOT, ChildProcess, start_ws

CLIENTS = 2000
CONNECT_BATCH = 100
WAIT = 120.0
FIGURES = ROOT / "artifacts" / "storefront" / "fanout.json"


@pytest.fixture
def lone_ws_server(transactional_db: None) -> Any:
    """A ws process of its own: the subscription count below is this process's alone."""
    child = start_ws(env={**OPEN_ADMISSION, "WS_MAX_CONNECTIONS_PER_IP": "0"})
    yield child
    child.stop()


def _move_start(sale: FlashSale, *, seconds_from_now: float) -> float:
    try:
        duration = sale.ends_at - sale.starts_at
        sale.starts_at = timezone.now() + timedelta(seconds=seconds_from_now)
        sale.ends_at = sale.starts_at + duration
        sale_update(sale=sale)
        return sale.starts_at.timestamp()
    finally:
        connection.close()  # This ran in a worker thread; its connection goes with it.


async def _watch(socket: ClientConnection) -> tuple[list[str], float]:
    kinds = []
    while True:
        message = json.loads(await socket.recv())
        kinds.append(message["type"])
        if message["type"] == "sale_started":
            return kinds, time.time()


async def _crowd(url: str, sale: FlashSale) -> dict[str, Any]:
    sockets: list[ClientConnection] = []
    origin = "http://127.0.0.1"
    started_connecting = time.perf_counter()
    for first in range(0, CLIENTS, CONNECT_BATCH):
        batch = await asyncio.gather(
            *(
                connect(url, origin=origin, open_timeout=WAIT, max_queue=None, ping_interval=None)  # type: ignore[arg-type]
                for _ in range(first, min(first + CONNECT_BATCH, CLIENTS))
            )
        )
        sockets.extend(batch)
    hellos = [json.loads(await socket.recv()) for socket in sockets]
    connected_in = time.perf_counter() - started_connecting
    assert {hello["type"] for hello in hellos} == {"hello"}
    assert {hello["status"] for hello in hellos} == {"scheduled"}

    watchers = [asyncio.create_task(_watch(socket)) for socket in sockets]
    starts_at = await asyncio.to_thread(_move_start, sale, seconds_from_now=3)
    results = await asyncio.wait_for(asyncio.gather(*watchers), WAIT)
    for socket in sockets:
        await socket.close()
    received_at = [at for _, at in results]
    return {
        "clients": CLIENTS,
        "got_sale_started": sum(1 for kinds, _ in results if kinds[-1] == "sale_started"),
        "message_kinds": sorted({kind for kinds, _ in results for kind in kinds}),
        "connect_seconds": round(connected_in, 2),
        "first_sale_started_after_start_ms": round((min(received_at) - starts_at) * 1000, 1),
        "last_sale_started_after_start_ms": round((max(received_at) - starts_at) * 1000, 1),
    }


def _hub_subscribers(server: ChildProcess) -> list[dict[str, Any]]:
    """The Redis connections of ``server``'s hub (other ws processes may be running)."""
    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    return [entry for entry in client.client_list() if entry["name"] == f"{CLIENT_NAME}:{server.process.pid}"]


def test_two_thousand_clients_on_one_process_all_receive_sale_started(lone_ws_server: ChildProcess) -> None:
    # Given a sale opening in an hour and 2,000 pages open on one ws process
    sale = make_sale(stock=10, starts_in=3600)
    url = f"ws://127.0.0.1:{lone_ws_server.port}/ws/sales/{sale.pk}/"

    async def scenario() -> dict[str, Any]:
        crowd = asyncio.create_task(_crowd(url, sale))
        # While they watch, the process holds one subscription for all of them
        while not crowd.done() and not _hub_subscribers(lone_ws_server):
            await asyncio.sleep(0.1)
        figures = await crowd
        figures["hub_subscriptions"] = [entry["sub"] for entry in _hub_subscribers(lone_ws_server)]
        return figures

    # When the operator moves the start to three seconds from now
    figures = asyncio.run(scenario())

    # Then every page got sale_started, after the countdown, and Redis saw one subscriber
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    FIGURES.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    assert figures["got_sale_started"] == CLIENTS
    assert figures["message_kinds"] == ["countdown", "hello", "sale_started"]
    # One connection, on the process's four channels: purchase events, sale updates,
    # revocations and the log's checkpoints
    assert figures["hub_subscriptions"] == ["4"]
