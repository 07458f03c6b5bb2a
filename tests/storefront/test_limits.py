"""The ws process's limits, against real ws processes (uvicorn as ``make run`` runs it) and
real Redis: the open-file limit, the caps on sockets, paths that name no sale, and readers
that stop reading. Nothing here measures time; each step waits for the state it needs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import resource
import shlex
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from django.conf import settings
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from devstack.procfile import WS_UVICORN_OPTIONS
from sales import keys
from sales.models import FlashSale
from tests.factories import make_sale
from tests.polling import wait_for
from tests.processes import OPEN_ADMISSION, ROOT, ChildProcess, start_ws
from wsdoor.consumers import NO_SUCH_SALE, TRY_AGAIN_LATER
from wsdoor.hub import FILES_KEPT

pytestmark = pytest.mark.django_db(transaction=True)
WAIT = 30.0  # Generous: the machine is shared.


async def opened(port: int, path: str, *, source: str = "127.0.0.1") -> ClientConnection:
    """A page's socket from ``source`` (any 127.0.0.0/8 address is this machine)."""
    return await connect(
        f"ws://127.0.0.1:{port}{path}",
        origin=f"http://127.0.0.1:{port}",  # type: ignore[arg-type]
        open_timeout=WAIT,
        ping_interval=None,
        local_addr=(source, 0),
    )


async def first_answer(page: ClientConnection) -> dict[str, Any] | int:
    """The first message, or the close code if the server closed the socket instead."""
    try:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(page.recv(), WAIT))
    except ConnectionClosed:
        assert page.close_code is not None
        return page.close_code
    return message


def sale_path(sale: FlashSale) -> str:
    return f"/ws/sales/{sale.pk}/"


# --- Paths ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/ws/sales/abc/", "/ws/sales/12", "/ws/other/", "/ws/sales/987654321/"])
def test_a_path_that_names_no_sale_is_closed_with_4404_after_the_handshake(ws_server: ChildProcess, path: str) -> None:
    async def scenario() -> None:
        # When a page opens a socket on a path that names no sale
        page = await opened(ws_server.port, path)  # The handshake succeeded: no HTTP error.
        # Then the server closes it with the code the page stops reconnecting on
        assert await first_answer(page) == NO_SUCH_SALE

    asyncio.run(scenario())
    assert "Exception in ASGI application" not in ws_server.log.read_text(errors="replace")


# --- Caps -------------------------------------------------------------------------------


@pytest.fixture
def capped_ws() -> Iterator[ChildProcess]:
    """A ws process taking 3 sockets, at most 2 from one address."""
    child = start_ws(env={**OPEN_ADMISSION, "WS_MAX_CONNECTIONS": "3", "WS_MAX_CONNECTIONS_PER_IP": "2"})
    yield child
    child.stop()


def test_sockets_over_a_cap_are_closed_with_1013_and_a_socket_that_leaves_makes_room(capped_ws: ChildProcess) -> None:
    sale = make_sale(stock=5, starts_in=3600)
    port, path = capped_ws.port, sale_path(sale)

    async def scenario() -> None:
        # Given two pages from one address
        pages = [await opened(port, path) for _ in range(2)]
        assert [(await first_answer(page))["type"] for page in pages] == ["hello", "hello"]  # type: ignore[index]

        # When a third comes from the same address, it is closed with 1013
        over_address = await opened(port, path)
        assert await first_answer(over_address) == TRY_AGAIN_LATER
        assert over_address.close_reason == "too many sockets from this address"

        # And another address still gets in, up to the process's cap of 3
        elsewhere = await opened(port, path, source="127.0.0.2")
        assert (await first_answer(elsewhere))["type"] == "hello"  # type: ignore[index]
        over_total = await opened(port, path, source="127.0.0.3")
        assert await first_answer(over_total) == TRY_AGAIN_LATER
        assert over_total.close_reason == "this server holds all the sockets it can"

        # When one page leaves, a page from its address gets in again
        await pages[0].close()
        for _ in range(100):
            again = await opened(port, path)
            answer = await first_answer(again)
            if answer != TRY_AGAIN_LATER:
                break
            await asyncio.sleep(0.1)  # The server counts the leaver out when it sees the close.
        assert answer["type"] == "hello"  # type: ignore[index]
        for page in (pages[1], elsewhere, again):
            await page.close()

    asyncio.run(scenario())
    assert "Exception in ASGI application" not in capped_ws.log.read_text(errors="replace")
    wait_for(lambda: "refused 2 sockets over a cap" in capped_ws.log.read_text(), what="the refusals logged")


# --- The open-file limit ----------------------------------------------------------------


def _open_file_limits(pid: int) -> tuple[int, int]:
    line = next(line for line in Path(f"/proc/{pid}/limits").read_text().splitlines() if line.startswith("Max open"))
    soft, hard = line.split()[3:5]
    return int(soft), int(hard)


def test_the_ws_process_raises_its_open_file_limit_to_the_hard_limit_and_says_how_many_sockets_that_allows() -> None:
    # Given a ws process started with a soft limit of half its hard limit
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = hard // 2
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        child = start_ws(env={**OPEN_ADMISSION, "LOG_LEVEL": "INFO"})
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        # Then it runs with the hard limit, and its log says how many sockets that holds
        assert _open_file_limits(child.process.pid) == (hard, hard)
        line = f"open-file limit {hard} (was {lowered}): room for {hard - FILES_KEPT} sockets"
        wait_for(lambda: line in child.log.read_text(errors="replace"), what="the open-file line")
    finally:
        child.stop()


def test_the_ws_process_runs_the_trimmed_protocol_and_the_container_may_hold_many_sockets(
    ws_server: ChildProcess,
) -> None:
    # make run, the tests, the bench and the containers take the line from devstack/procfile.py
    # (tests/devstack/test_procfile.py checks that no other place spells one).
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["ws"]
    assert " ".join(WS_UVICORN_OPTIONS) in shlex.join(str(part) for part in ws_server.process.args)  # type: ignore[union-attr]
    assert compose["command"] == ["python", "-m", "devstack.proc", "ws"]
    # The container's hard limit, which the process raises its soft limit to
    assert compose["ulimits"]["nofile"]["soft"] == compose["ulimits"]["nofile"]["hard"] >= 20_000


# --- Readers that stop reading ----------------------------------------------------------


def _stalled_page(port: int, path: str) -> socket.socket:
    """A page that opens its socket, reads the handshake's answer, then never reads again
    (with a small receive buffer, so the server's side fills soon)."""
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    raw.settimeout(WAIT)
    raw.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    raw.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:{port}\r\n\r\n".encode()
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += raw.recv(1)
    assert answer.startswith(b"HTTP/1.1 101"), answer
    return raw


def _cut_off(raw: socket.socket) -> bool:
    """Read what is left; True once the server has closed or reset the connection."""
    raw.settimeout(WAIT)
    try:
        while raw.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def _window_changed(sale: FlashSale) -> None:
    """What an operator's edit publishes: every socket of the sale gets a fresh hello."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.publish(keys.SALE_UPDATES_CHANNEL, json.dumps({"sale_id": sale.pk}))


async def _watch_stalled_page_cut_off(port: int, sale: FlashSale, *, pace_s: float, log: Path) -> None:
    healthy = await opened(port, sale_path(sale))
    assert (await first_answer(healthy))["type"] == "hello"  # type: ignore[index]
    stalled = await asyncio.to_thread(_stalled_page, port, sale_path(sale))

    async def healthy_reads() -> int:
        count = 0
        while True:
            await healthy.recv()
            count += 1

    reader = asyncio.create_task(healthy_reads())
    # When the sale's messages keep coming (a fresh hello each, ~200 bytes)
    for _ in range(3000):
        await asyncio.to_thread(_window_changed, sale)
        if "cut off" in log.read_text(errors="replace"):
            break
        await asyncio.sleep(pace_s)
    # Then the stalled page is cut off, and the healthy page still gets every message
    assert await asyncio.to_thread(_cut_off, stalled)
    reader.cancel()
    await asyncio.to_thread(_window_changed, sale)
    assert json.loads(await asyncio.wait_for(_next_hello(healthy), WAIT))["type"] == "hello"
    await healthy.close()


async def _next_hello(page: ClientConnection) -> str:
    while True:
        text = str(await page.recv())
        if '"hello"' in text:
            return text


@pytest.fixture
def tight_ws(request: pytest.FixtureRequest) -> Iterator[ChildProcess]:
    child = start_ws(env={**OPEN_ADMISSION, **request.param})
    yield child
    child.stop()


@pytest.mark.parametrize(
    "tight_ws", [{"WS_SEND_BUFFER_BYTES": "4096", "WS_SEND_TIMEOUT_SECONDS": "3600"}], indirect=True
)
def test_a_reader_that_stops_reading_is_cut_off_when_its_unsent_bytes_pass_the_buffer(tight_ws: ChildProcess) -> None:
    sale = make_sale(stock=5, starts_in=3600)
    asyncio.run(_watch_stalled_page_cut_off(tight_ws.port, sale, pace_s=0.0, log=tight_ws.log))
    assert "cut off 1 readers over WS_SEND_BUFFER_BYTES unsent and 0 whose" in tight_ws.log.read_text()


@pytest.mark.parametrize("tight_ws", [{"WS_SEND_BUFFER_BYTES": "16384", "WS_SEND_TIMEOUT_SECONDS": "1"}], indirect=True)
def test_a_reader_that_stops_reading_is_cut_off_when_its_bytes_wait_past_the_timeout(tight_ws: ChildProcess) -> None:
    # Slowly enough that the unsent bytes stay under the buffer for seconds.
    sale = make_sale(stock=5, starts_in=3600)
    asyncio.run(_watch_stalled_page_cut_off(tight_ws.port, sale, pace_s=0.05, log=tight_ws.log))
    assert "cut off 0 readers over WS_SEND_BUFFER_BYTES unsent and 1 whose" in tight_ws.log.read_text()
