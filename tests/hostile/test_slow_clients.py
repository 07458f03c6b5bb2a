"""Slow clients (issue 21), against a real granian as make run starts it: header blocks that
never finish are closed at their deadline; bodies hold a thread each while they arrive
(granian cannot time them out: docs/reliability.md), but one address holds no more than its
cap, is refused past it before its body is read, and the tier keeps answering others.

The servers' deadlines are 2 s here (conftest.py); every bound on how long something may
take is generous on top of that, for a shared machine."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

import httpx
import pytest

from core.errors import RequestTimeout
from devstack.children import spawn
from sales import inventory
from tests.clients import purchase
from tests.factories import make_sale, make_shopper
from tests.polling import wait_for
from tests.processes import ChildProcess

from .conftest import BODY_TIMEOUT_SECONDS, HEADER_TIMEOUT_MS, SMALL_CAP, SMALL_THREADS
from .raw import Answer, Raw, head

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
# Past a deadline, how much later the server may act and still pass, on a busy machine.
SLACK_SECONDS = 15.0
BODIES_REFUSED = {
    "status": "RATE_LIMITED",
    "detail": "Too many requests from your address are still sending their bodies; try again in 1 s.",
    "reason": "slow",
}


def _port(server: ChildProcess) -> int:
    return int(server.url.rsplit(":", 1)[1])


def _body_never_finished(port: int) -> bytes:
    # Anonymous, the server's own Host, a length announced and a body begun.
    return head("POST", "/api/auth/token/", port, Content_Type="application/json", Content_Length="60000") + b'{"u'


def _purchase_head(port: int, sale_id: int, token: str, length: int) -> bytes:
    return head(
        "POST", f"/api/sales/{sale_id}/purchase/", port,
        Authorization=f"Token {token}", Content_Type="application/json", Content_Length=str(length),
    )  # fmt: skip


def test_a_body_that_arrives_whole_after_the_deadline_is_answered_408_and_changes_nothing(
    slow_web: ChildProcess, source: str
) -> None:
    sale = make_sale(stock=3)
    _, token = make_shopper()
    port = _port(slow_web)
    body = b'{"challenge": "x", "solution": "y"}'
    with Raw(port, source=source, timeout=BODY_TIMEOUT_SECONDS + SLACK_SECONDS) as client:
        client.send(_purchase_head(port, sale.pk, token, len(body)) + body[:5])
        # The client is the slow one here: it sends the rest after the deadline.
        time.sleep(BODY_TIMEOUT_SECONDS + 0.5)
        client.send(body[5:])

        answer = client.answer()

    assert answer is not None, "closed without an answer"
    assert answer.status == 408
    assert answer.json() == RequestTimeout().body()
    assert answer.headers["connection"] == "close"
    assert inventory.sale_counts(sale.pk).remaining == 3


def test_an_address_at_its_cap_is_refused_before_its_next_body_is_read(small_web: ChildProcess, source: str) -> None:
    sale = make_sale(stock=3)
    _, token = make_shopper()
    port = _port(small_web)
    # Given an address with its cap of bodies that never finish (2)
    held = [Raw(port, source=source, timeout=SLACK_SECONDS) for _ in range(SMALL_CAP)]
    try:
        for client in held:
            client.send(_body_never_finished(port))

        # When it sends whole requests: a purchase body refused as invalid (400) once read, until
        # both bodies held are being read
        def refused() -> bool:
            return purchase(small_web, sale.pk, token, {"challenge": 1}, source=source).status_code == 429

        wait_for(refused, what="the address's next body refused", timeout=SLACK_SECONDS)
        answer = purchase(small_web, sale.pk, token, source=source)
        other = purchase(small_web, sale.pk, make_shopper()[1])
    finally:
        for client in held:
            client.close()

    # Then it is refused 429 with the contract's body, its body not read: nothing changed
    assert answer.status_code == 429
    assert answer.json() == BODIES_REFUSED
    assert answer.headers["Retry-After"] == "1"
    assert answer.headers["Connection"] == "close"
    # And another address buys as usual
    assert other.status_code == 201
    assert inventory.sale_counts(sale.pk).remaining == 2


def test_slow_bodies_of_one_address_hold_no_more_threads_than_its_cap(small_web: ChildProcess, source: str) -> None:
    # Given twenty bodies that never finish from one address, five times the server's threads
    port = _port(small_web)
    slow = [Raw(port, source=source, timeout=SLACK_SECONDS) for _ in range(5 * SMALL_THREADS)]
    readers = ThreadPoolExecutor(len(slow))
    try:
        for client in slow:
            client.send(_body_never_finished(port))
        # All but its cap are answered at once (the cap's are held, unanswered)
        pending = {readers.submit(client.answer) for client in slow}
        answers: list[Answer | None] = []
        deadline = time.monotonic() + SLACK_SECONDS
        while len(answers) < len(slow) - SMALL_CAP and time.monotonic() < deadline:
            done, pending = wait(pending, timeout=deadline - time.monotonic(), return_when=FIRST_COMPLETED)
            answers += [future.result() for future in done]

        # When other addresses ask at once for as many answers as the threads the cap left free
        free = SMALL_THREADS - SMALL_CAP

        def healthz(number: int) -> int:
            transport = httpx.HTTPTransport(local_address=f"127.0.2.{number + 1}")
            with httpx.Client(transport=transport, timeout=10) as client:
                return client.get(f"{small_web.url}/healthz").status_code

        with ThreadPoolExecutor(free) as pool:
            statuses = list(pool.map(healthz, range(free)))
    finally:
        for client in slow:
            client.close()
        readers.shutdown()

    assert len(answers) == len(slow) - SMALL_CAP
    assert {answer.status if answer else None for answer in answers} == {429}
    assert all(answer.json() == BODIES_REFUSED for answer in answers if answer)
    # Then each is answered: the slow bodies hold only their cap of threads
    assert statuses == [200] * free


def test_a_header_block_that_never_finishes_is_closed_after_the_header_timeout(
    slow_web: ChildProcess, source: str
) -> None:
    port = _port(slow_web)
    timeout = HEADER_TIMEOUT_MS / 1000
    with Raw(port, source=source, timeout=timeout + SLACK_SECONDS) as client:
        client.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")

        closed = client.closed_by_server()

        assert closed
        assert timeout - 0.1 <= client.held_for() < timeout + SLACK_SECONDS


def test_fifteen_hundred_half_sent_header_blocks_from_one_address_are_all_closed(
    slow_web: ChildProcess, source: str
) -> None:
    port = _port(slow_web)
    timeout = HEADER_TIMEOUT_MS / 1000

    async def half_sent() -> float | None:
        """Seconds until the server closed the connection (None: it did not in time; -1: it answered)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        writer.write(b"POST /api/auth/token/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        began = asyncio.get_running_loop().time()
        try:
            data = await asyncio.wait_for(reader.read(1), timeout + SLACK_SECONDS)
        except TimeoutError:
            return None
        except ConnectionError:
            data = b""
        finally:
            writer.close()
        return asyncio.get_running_loop().time() - began if data == b"" else -1.0

    async def crowd() -> tuple[list[float | None], int]:
        blocks = [asyncio.create_task(half_sent()) for _ in range(1500)]
        await asyncio.sleep(0)
        # Meanwhile another client is answered
        loop = asyncio.get_running_loop()
        healthz = await loop.run_in_executor(None, lambda: httpx.get(f"{slow_web.url}/healthz", timeout=10))
        return await asyncio.gather(*blocks), healthz.status_code

    ends, healthz = asyncio.run(crowd())

    assert healthz == 200
    assert ends.count(None) == 0, "held past the header timeout"
    held = [seconds for seconds in ends if seconds is not None]
    assert -1.0 not in held, "answered instead of closed"
    assert min(held) >= timeout - 0.1


def test_the_tier_answers_others_while_one_address_holds_many_slow_connections(
    slow_web: ChildProcess, source: str, tmp_path: Path
) -> None:
    # Given one address holding 300 slow connections (bench/slowcrowd.py, the benchmark's crowd):
    # half trickling header blocks, half bodies (anonymous logins announcing 60,000 bytes, and
    # one shopper's purchases), a byte a second each, each reopened when the server ends it
    sale = make_sale(stock=1000)
    _, crowd_token = make_shopper()
    status = tmp_path / "crowd.json"
    crowd = spawn(
        "slow-crowd",
        [
            sys.executable, "-m", "bench.slowcrowd", "--port", str(_port(slow_web)), "--sale", str(sale.pk),
            "--token", crowd_token, "--status", str(status), "--source", source, "--connections", "300",
        ],
        env=dict(os.environ), cwd=ROOT, log=tmp_path / "crowd.log",
    )  # fmt: skip
    try:
        # Held: every connection opened, and each kind has met the server's answer to it
        def held() -> bool:
            try:
                seen = json.loads(status.read_text())
            except (FileNotFoundError, ValueError):
                return False
            ended = seen["ended"]
            return sum(seen["opened"].values()) >= 300 and bool(ended["headers"]) and bool(ended["bodies"])

        crowd.wait_until(held, what="hold 300 slow connections", timeout=HEADER_TIMEOUT_MS / 1000 + 2 * SLACK_SECONDS)

        # When others ask for the health check and buy, from another address
        answers = []
        for _ in range(5):
            healthz = httpx.get(f"{slow_web.url}/healthz", timeout=5)
            bought = purchase(slow_web.url, sale.pk, make_shopper()[1])
            answers.append((healthz.status_code, bought.status_code))
        seen = json.loads(status.read_text())
    finally:
        crowd.stop()

    # Then each is answered in time
    assert answers == [(200, 201)] * 5
    # And the slow connections heard only the contract's answers: header blocks closed at
    # their timeout, bodies 429 (their address over its cap)
    assert set(seen["ended"]["headers"]) == {"closed"}
    assert set(seen["ended"]["bodies"]) == {"429"}
