"""Refused requests leave no state behind: 5,000 purchases of each kind of refusal, each with a
new Idempotency-Key, against the real server, and Redis holds as many keys and about as much
memory afterwards as before (docs/design.md, "Idempotency-Key")."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator

import pytest
import redis
from django.conf import settings

from tests.clients import purchase
from tests.factories import make_sale, make_shoppers
from tests.polling import wait_for
from tests.processes import ChildProcess, start_web

pytestmark = pytest.mark.django_db(transaction=True)

EACH = 5_000
CONNECTIONS = 16
SMALL_CONSTANT_BYTES = 128 * 1024
"""What Redis's memory may move by meanwhile (buffers, the answer counts): a stored answer
per request would be about 400 bytes each, 2 MB for one kind."""


@pytest.fixture(scope="module")
def windowed_server(django_db_setup: None) -> Iterator[ChildProcess]:
    """granian as make run runs it, with a shopper's window at 5 calls a minute."""
    child = start_web(env={"ANTIBOT_USER_LIMIT": "5", "ANTIBOT_RATE_WINDOW_SECONDS": "60", "ANTIBOT_IP_LIMIT": "0"})
    yield child
    child.stop()


async def _crowd(server: ChildProcess, plan: list[tuple[int, str, str, bytes]]) -> Counter[str]:
    """Send each (sale, token, key, body) once over a few kept-alive connections.

    Plain HTTP/1.1 on asyncio streams: the answers are all small JSON with a Content-Length,
    and 25,000 of them through httpx took most of this test's minute and a half."""
    answers: Counter[str] = Counter()
    queue: asyncio.Queue[tuple[int, str, str, bytes]] = asyncio.Queue()
    for item in plan:
        queue.put_nowait(item)
    host, port = "127.0.0.1", server.port

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while not queue.empty():
                sale_id, token, key, body = queue.get_nowait()
                writer.write(
                    f"POST /api/sales/{sale_id}/purchase/ HTTP/1.1\r\nHost: {host}:{port}\r\n"
                    f"Authorization: Token {token}\r\nIdempotency-Key: {key}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=30)
                status_line, *header_lines = head.decode("latin-1").split("\r\n")
                headers = dict(line.lower().split(": ", 1) for line in header_lines if line)
                answer = json.loads(await reader.readexactly(int(headers["content-length"])))
                answers[f"{status_line.split()[1]} {answer['status']}"] += 1
                if headers.get("connection") == "close":
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(CONNECTIONS)))
    return answers


def _sale_data() -> tuple[int, int]:
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        return int(client.dbsize()), int(client.info("memory")["used_memory"])
    finally:
        client.close()


def test_refusals_of_every_kind_leave_no_key_behind(windowed_server: ChildProcess) -> None:
    # Given a sale of each state a refusal comes from, and the shoppers who will be refused
    not_started = make_sale(stock=5, starts_in=3600)
    ended = make_sale(stock=5, starts_in=-7200, duration=3600)
    sold_out = make_sale(stock=1)
    guarded = make_sale(stock=5, pow_difficulty=8)
    (_, winner), (_, late), (_, early), (_, over), *provers = make_shoppers(4 + EACH // 5)
    assert purchase(windowed_server, sold_out.pk, winner).status_code == 201
    kinds: dict[str, list[tuple[int, str, str, bytes]]] = {
        "409 NOT_STARTED": [(not_started.pk, early, f"ns-{n}", b"{}") for n in range(EACH)],
        "409 ENDED": [(ended.pk, late, f"end-{n}", b"{}") for n in range(EACH)],
        "409 SOLD_OUT": [(sold_out.pk, late, f"so-{n}", b"{}") for n in range(EACH)],
        # Over the shopper's window: its first calls fail the proof of work, the rest are 429.
        "429 RATE_LIMITED": [(guarded.pk, over, f"rl-{n}", b"{}") for n in range(EACH)],
        # A forged challenge from shoppers within their windows: five each.
        "403 POW_INVALID": [
            (guarded.pk, token, f"pow-{n}", b'{"challenge": "v1.1.2.3.4.5.6", "solution": "0"}')
            for n, (_, token) in enumerate(provers * 5)
        ],
    }
    sent: Counter[int] = Counter({sold_out.pk: 1})
    # One of each first, so the answer counts' fields exist before the measurement.
    warm_up = [plan[-1] for plan in kinds.values()]
    asyncio.run(_crowd(windowed_server, warm_up))
    sent.update(sale_id for sale_id, *_ in warm_up)
    _wait_for_counts(sent)
    keys_before, memory_before = _sale_data()

    for kind, plan in kinds.items():
        # When 5,000 requests, each with a new key, are refused this way
        answers = asyncio.run(_crowd(windowed_server, plan))
        sent.update(sale_id for sale_id, *_ in plan)
        # (a window is counted per process, and restarts every minute: those let a few through
        # to the proof of work, refused too)
        allowed = {kind, "403 POW_INVALID"} if kind == "429 RATE_LIMITED" else {kind}
        assert set(answers) <= allowed, (kind, answers)
        assert answers[kind] > EACH // 2, (kind, answers)

    # Then Redis holds exactly as many keys, and about as much memory, as before
    _wait_for_counts(sent)
    keys_after, memory_after = _sale_data()
    assert keys_after == keys_before
    assert memory_after - memory_before < SMALL_CONSTANT_BYTES, (memory_before, memory_after)


def _wait_for_counts(sent: Counter[int]) -> None:
    """Wait until the web processes flushed the count of every attempt sent (they do once a
    second), so no write of theirs lands after a measurement."""
    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)

    def counted() -> bool:
        return all(int(client.hget(f"sale:{{{sale_id}}}:stats", "arrived") or 0) >= n for sale_id, n in sent.items())

    wait_for(counted, what="the answer counts flushed", timeout=30)
    client.close()
