"""The WebSocket contract on a real ws process (uvicorn with ``sales.ws_protocol``, as ``make
run`` serves it), where the rooms write their frames to the connections' transports
themselves: every message, in order, as a standard client (the ``websockets`` library) reads
them. ``test_consumer.py`` checks the same messages through the ASGI interface."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.utils import timezone
from websockets.asyncio.client import connect
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from sales.models import Admission, FlashSale
from sales.purchase import purchase_attempt
from sales.services import sale_update
from sales.waiting_room import queue_join
from tests.factories import make_sale, make_user
from tests.processes import ChildProcess
from wsdoor.hub import LINE_INTERVAL_SECONDS
from wsdoor.sockets import Outgoing

pytestmark = pytest.mark.django_db(transaction=True)
WAIT = 30.0


def _open_in(sale: FlashSale, *, seconds: float, lasting: float) -> FlashSale:
    try:
        sale.starts_at = timezone.now() + timedelta(seconds=seconds)
        sale.ends_at = sale.starts_at + timedelta(seconds=lasting)
        return sale_update(sale=sale)
    finally:
        connection.close()  # This ran in a worker thread; its connection goes with it.


def _buy(sale: FlashSale) -> str:
    try:
        return purchase_attempt(sale_id=sale.pk, user_id=make_user().pk).status.value
    finally:
        connection.close()


def _join(sale: FlashSale) -> int:
    try:
        return queue_join(sale_id=sale.pk, user_id=make_user().pk).number
    finally:
        connection.close()


def test_a_page_hears_the_whole_sale_from_a_real_ws_process(ws_server: ChildProcess) -> None:
    # Given a page watching a sale of 2 units that opens in an hour
    sale = make_sale(stock=2, starts_in=3600)
    url = f"ws://127.0.0.1:{ws_server.port}/ws/sales/{sale.pk}/"

    async def scenario() -> list[dict[str, Any]]:
        received: list[dict[str, Any]] = []
        async with connect(url, origin=f"http://127.0.0.1:{ws_server.port}", open_timeout=WAIT) as page:  # type: ignore[arg-type]

            async def until(kind: str) -> None:
                while not received or received[-1]["type"] != kind:
                    received.append(json.loads(await asyncio.wait_for(page.recv(), WAIT)))

            await until("hello")
            # When the operator opens it in 2.5 s for 8 s, and both units sell once it opens
            await sync_to_async(_open_in)(sale, seconds=2.5, lasting=8)
            await until("sale_started")
            assert await sync_to_async(_buy)(sale) == "SUCCESS"
            await until("stock")
            assert await sync_to_async(_buy)(sale) == "SUCCESS"
            await until("sold_out")
            # And the sale ends
            await until("sale_ended")
        return received

    received = asyncio.run(scenario())

    # Then the page heard every message of the contract, in order: the hour's countdown, the
    # new window's hello, its last seconds, the start, the stock, sold out, the end
    kinds = [message["type"] for message in received]
    second_hello = kinds.index("hello", 1)
    assert kinds[0] == "hello" and set(kinds[1:second_hello]) <= {"countdown"}
    after = received[second_hello + 1 :]
    countdowns = [message["seconds_remaining"] for message in after if message["type"] == "countdown"]
    assert [message["type"] for message in after] == [
        *["countdown"] * len(countdowns),
        "sale_started",
        "stock",
        "stock",
        "sold_out",
        "sale_ended",
    ]
    assert set(received[0]) == {"type", "server_time", "starts_at", "ends_at", "remaining_stock", "status"}
    assert (received[0]["status"], received[second_hello]["status"]) == ("scheduled", "scheduled")
    assert countdowns == list(range(countdowns[0], 0, -1)) and 2 <= countdowns[0] <= 3
    assert after[-4:] == [
        {"type": "stock", "remaining_stock": 1},
        {"type": "stock", "remaining_stock": 0},
        {"type": "sold_out"},
        {"type": "sale_ended"},
    ]


def test_a_page_hears_a_queue_mode_sales_line_every_second_from_a_real_ws_process(ws_server: ChildProcess) -> None:
    # Given a page on a queue-mode sale open for a second, letting in one place a second
    sale = make_sale(stock=20, admission=Admission.QUEUE, serving_rate=1, starts_in=-1)
    url = f"ws://127.0.0.1:{ws_server.port}/ws/sales/{sale.pk}/"

    async def scenario() -> tuple[dict[str, Any], list[tuple[float, dict[str, Any]]]]:
        heard: list[tuple[float, dict[str, Any]]] = []
        async with connect(url, origin=f"http://127.0.0.1:{ws_server.port}", open_timeout=WAIT) as page:  # type: ignore[arg-type]
            hello = json.loads(await asyncio.wait_for(page.recv(), WAIT))

            async def line_message() -> dict[str, Any]:
                while True:
                    message = json.loads(await asyncio.wait_for(page.recv(), WAIT))
                    if message["type"] == "queue":
                        heard.append((time.monotonic(), message))
                        return message

            await line_message()
            # When six shoppers join, one after another while the line is told
            for count in range(1, 7):
                assert await sync_to_async(_join)(sale) == count
                while (message := await line_message())["served"] + message["waiting"] != count:
                    pass
            # And the page listens a few seconds more
            for _ in range(4):
                await line_message()
        return hello, heard

    hello, heard = asyncio.run(scenario())

    # Then the hello carried the line, and every message after the sixth join counts six
    assert hello["queue"] == {
        "served": 0,
        "rate_per_second": 1.0,
        "waiting": 0,
        "opens_at": sale.starts_at.isoformat(timespec="milliseconds"),
    }
    messages = [message for _, message in heard]
    assert {tuple(message) for message in messages} == {("type", "served", "rate_per_second", "waiting")}
    assert [message["served"] + message["waiting"] for message in messages[-4:]] == [6, 6, 6, 6]
    # And the line moved, never back
    served = [message["served"] for message in messages]
    assert served == sorted(served) and served[-1] >= 1
    assert all(message["rate_per_second"] > 0 for message in messages)
    # At least once a second: a gap of twice that allows for a shared machine, while a room
    # that spoke only per join would have gone quiet after the sixth
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(heard)]
    assert max(gaps) <= 2 * LINE_INTERVAL_SECONDS, gaps


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70000])
def test_a_broadcast_frame_is_what_a_websocket_client_parses(size: int) -> None:
    # Every payload length encoding of RFC 6455 (7-bit, 16-bit, 64-bit), with non-ASCII text
    text = "é" * (size // 2) + "x" * (size % 2)  # ``size`` bytes of UTF-8
    frame_bytes = Outgoing.of(text).frame
    reader = StreamReader()
    reader.feed_data(frame_bytes)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
        raise AssertionError("the parser wanted more bytes than the frame has")
    except StopIteration as done:
        frame: Frame = done.value
    assert (frame.opcode, frame.fin, frame.rsv1) == (Opcode.TEXT, True, False)
    assert bytes(frame.data).decode() == text
