"""The door in operation: Redis going away and coming back, the metrics it writes, and the
automatic pipelining of its Redis commands."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families
from redis.exceptions import NoScriptError, ResponseError

from core.pipelining import AutoPipeline
from devstack.localservers import LocalRedis, free_port
from sales import inventory
from tests.clients import Wire, tcp_ask
from tests.factories import make_sale, make_shopper
from tests.processes import OPEN_ADMISSION, start_tcp

pytestmark = pytest.mark.django_db(transaction=True)

ATTEMPT, PING = 0x01, 0x04


def test_redis_down_answers_unavailable_at_once_and_the_door_carries_on(own_redis: LocalRedis) -> None:
    # Given a door on a Redis of this test's own, which knows the sale already
    server = start_tcp(env={**OPEN_ADMISSION, "REDIS_URL": own_redis.url})
    try:
        sale = make_sale(stock=3)
        _, first = make_shopper()
        _, second = make_shopper()
        with Wire(server.port) as wire:
            assert wire.ask(ATTEMPT, {"product_id": sale.pk, "token": first})["status"] == "SUCCESS"

            # When Redis goes away
            own_redis.stop()
            down = wire.ask(ATTEMPT, {"product_id": sale.pk, "token": second})

            # Then the attempt hears UNAVAILABLE with when to come back, the connection stays
            assert down["status"] == "UNAVAILABLE"
            assert down["retry_after_ms"] == 1000
            assert wire.ask(PING, {}) == {"status": "OK"}

            # And once Redis is back (from its append-only file) nothing was half-done
            own_redis.start()
            counts = inventory.sale_counts(sale.pk)
            assert (counts.remaining, counts.buyers, counts.stream_length) == (2, 1, 1)
            assert wire.ask(ATTEMPT, {"product_id": sale.pk, "token": second})["status"] == "SUCCESS"
    finally:
        server.stop()


def _samples(directory: Path, name: str) -> dict[frozenset[tuple[str, str]], float]:
    found: dict[frozenset[tuple[str, str]], float] = {}
    for path in directory.glob("*.db"):
        for key, value, _, _ in MmapedDict.read_all_values_from_file(str(path)):
            _, sample, labels, _ = json.loads(key)
            if sample == name and value:
                found[frozenset(labels.items())] = found.get(frozenset(labels.items()), 0.0) + value
    return found


def test_purchase_metrics_are_labelled_tcp(tmp_path: Path) -> None:
    # Given a door writing its metrics where make run's /metrics reads them
    server = start_tcp(env={**OPEN_ADMISSION, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    try:
        sale = make_sale(stock=1)
        _, winner = make_shopper()
        _, late = make_shopper()

        assert tcp_ask(server, ATTEMPT, {"product_id": sale.pk, "token": winner})["status"] == "SUCCESS"
        assert tcp_ask(server, ATTEMPT, {"product_id": sale.pk, "token": late})["status"] == "SOLD_OUT"
        assert tcp_ask(server, ATTEMPT, {"product_id": 10**12, "token": late})["status"] == "NOT_FOUND"
    finally:
        server.stop()

    requests = _samples(tmp_path, "flash_sale_requests_total")
    sale_label = str(sale.pk)
    assert requests == {
        frozenset({("sale", sale_label), ("status", "success"), ("transport", "tcp")}): 1.0,
        frozenset({("sale", sale_label), ("status", "sold_out"), ("transport", "tcp")}): 1.0,
        frozenset({("sale", "unknown"), ("status", "not_found"), ("transport", "tcp")}): 1.0,
    }
    # Each process's file keeps the histogram's buckets, not yet cumulative: they add up to three.
    buckets = _samples(tmp_path, "flash_sale_processing_duration_seconds_bucket")
    assert {dict(labels)["transport"] for labels in buckets} == {"tcp"}
    assert sum(buckets.values()) == 3.0


def test_a_door_of_its_own_container_answers_the_scrape_itself(settings: object) -> None:
    # Given a door run as compose runs it: no shared multiprocess directory, its own /metrics
    port = free_port()
    server = start_tcp(env={**OPEN_ADMISSION, "METRICS_BEARER_TOKEN": "scrape-token"}, metrics_port=port)
    try:
        sale = make_sale(stock=1)
        _, token = make_shopper()
        assert tcp_ask(server, ATTEMPT, {"product_id": sale.pk, "token": token})["status"] == "SUCCESS"

        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        with_token = httpx.get(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": "Bearer scrape-token"})
        elsewhere = httpx.get(f"http://127.0.0.1:{port}/admin/", timeout=10)
        posted = httpx.post(f"http://127.0.0.1:{port}/metrics", timeout=10)
        with Wire(port) as garbage:  # not HTTP at all: 404, closed, and the door goes on
            garbage.send(b"\x01\x00\x00\x00\x02{}\r\n\r\n")
            answered = b""
            while chunk := garbage.sock.recv(4096):
                answered += chunk
        assert answered.startswith(b"HTTP/1.0 404 ")
        assert tcp_ask(server, PING, {}) == {"status": "OK"}
    finally:
        server.stop()

    # Then Prometheus reads the purchase, labelled tcp, and the open connections
    assert scraped.status_code == with_token.status_code == 200
    samples = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(scraped.text)
        for sample in family.samples
    }
    labels = frozenset({("sale", str(sale.pk)), ("status", "success"), ("transport", "tcp")})
    assert samples[("flash_sale_requests_total", labels)] == 1.0
    assert ("flash_sale_tcp_connections", frozenset()) in samples
    assert (elsewhere.status_code, posted.status_code) == (404, 404)


def test_commands_of_one_turn_go_together_each_with_its_own_answer(settings: object) -> None:
    async def scenario() -> list[object]:
        pipeline = AutoPipeline(aioredis.Redis.from_url(settings.REDIS_URL, decode_responses=True))  # type: ignore[attr-defined]
        try:
            outcomes = await asyncio.gather(
                pipeline.execute_command("SET", "pipelined:a", "1"),
                pipeline.execute_command("INCR", "pipelined:a"),
                pipeline.execute_command("HGET", "pipelined:a", "field"),  # wrong type: its own error
                pipeline.evalsha("0" * 40, 0),  # no such script: NOSCRIPT, for the caller to load it
                pipeline.execute_command("GET", "pipelined:a"),
                return_exceptions=True,
            )
            alone = await pipeline.execute_command("GET", "pipelined:a")  # a batch of one
        finally:
            await pipeline.aclose()
        return [*outcomes, alone]

    outcomes = asyncio.run(scenario())

    assert outcomes[:2] == [True, 2]
    assert isinstance(outcomes[2], ResponseError) and "WRONGTYPE" in str(outcomes[2])
    assert isinstance(outcomes[3], NoScriptError)
    assert outcomes[4:] == ["2", "2"]
