"""The WebSocket consumer through Channels' ``WebsocketCommunicator``, against real Redis:
every message of the contract (docs/design.md, "WebSocket")."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
import redis
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.utils import timezone
from prometheus_client import REGISTRY

from core.events import CLIENT_NAME, subscription
from devstack.localservers import LocalRedis
from flashsale_project.asgi import application
from salelog.keys import CHECKPOINTS_CHANNEL
from sales import inventory, keys
from sales.models import Admission, FlashSale
from sales.purchase import purchase_attempt
from sales.services import sale_update
from sales.waiting_room import Place, queue_join
from tests.factories import make_sale, make_user
from wsdoor.consumers import NO_SUCH_SALE, TRY_AGAIN_LATER
from wsdoor.hub import LINE_INTERVAL_SECONDS, STOCK_INTERVAL_SECONDS, live_hub
from wsdoor.sockets import Outgoing

pytestmark = pytest.mark.django_db
ORIGIN = (b"origin", b"http://127.0.0.1:8000")
WAIT = 15.0  # Generous: the machine is shared; nothing here measures time.


def live(scenario: Callable[[], Awaitable[None]]) -> None:
    """Run ``scenario`` on its own event loop, then close that loop's hub. The loop drives the
    process's subscription, as in a ws process (a thread driving it for an earlier test is
    stopped first)."""
    subscription.restart()

    async def run() -> None:
        try:
            await scenario()
        finally:
            await live_hub().close()

    async_to_sync(run)()


async def connected(sale_id: int, *, origin: tuple[bytes, bytes] = ORIGIN) -> WebsocketCommunicator:
    socket = WebsocketCommunicator(application, f"/ws/sales/{sale_id}/", headers=[origin])
    accepted, _ = await socket.connect(timeout=WAIT)
    assert accepted
    return socket


async def next_of(socket: WebsocketCommunicator, kind: str) -> dict[str, Any]:
    """The next message of type ``kind``, skipping ``countdown`` ticks."""
    while True:
        message = await socket.receive_json_from(timeout=WAIT)
        if message["type"] == kind:
            return message
        assert message["type"] == "countdown", message


async def subscribed() -> None:
    assert await subscription.until_live(timeout=WAIT)


async def buy(sale: FlashSale) -> str:
    user = await sync_to_async(make_user)()
    answer = await sync_to_async(purchase_attempt)(sale_id=sale.pk, user_id=user.pk)
    return answer.status.value


def iso(moment: Any) -> str:
    return moment.isoformat(timespec="milliseconds")


def test_hello_on_connect_carries_the_server_clock_the_window_and_the_stock() -> None:
    # Given a sale opening in an hour with 7 units
    sale = make_sale(stock=7, starts_in=3600)

    async def scenario() -> None:
        # When a page connects
        socket = await connected(sale.pk)
        hello = await socket.receive_json_from(timeout=WAIT)
        # Then the first message is hello, with times in ISO 8601 UTC
        assert set(hello) == {"type", "server_time", "starts_at", "ends_at", "remaining_stock", "status"}
        assert hello["type"] == "hello"
        assert hello["starts_at"] == iso(sale.starts_at)
        assert hello["ends_at"] == iso(sale.ends_at)
        assert hello["server_time"].endswith("+00:00")
        assert hello["remaining_stock"] == 7
        assert hello["status"] == "scheduled"
        await socket.disconnect()

    live(scenario)


def test_countdown_each_second_then_sale_started_at_the_start() -> None:
    # Given a sale opening in a few seconds
    sale = make_sale(stock=3, starts_in=3.5)

    async def scenario() -> None:
        socket = await connected(sale.pk)
        assert (await socket.receive_json_from(timeout=WAIT))["type"] == "hello"
        # When the start comes
        received: list[dict[str, Any]] = []
        while not received or received[-1]["type"] != "sale_started":
            received.append(await socket.receive_json_from(timeout=WAIT))
        # Then one countdown per remaining second, down to 1, then sale_started
        seconds = [message["seconds_remaining"] for message in received[:-1]]
        assert {message["type"] for message in received[:-1]} == {"countdown"}
        assert seconds == list(range(seconds[0], 0, -1))
        assert 2 <= seconds[0] <= 4
        assert received[-1] == {"type": "sale_started"}
        await socket.disconnect()

    live(scenario)


def test_hello_after_the_start_says_live_and_no_countdown_follows() -> None:
    sale = make_sale(stock=3, starts_in=-1, duration=4)

    async def scenario() -> None:
        socket = await connected(sale.pk)
        hello = await socket.receive_json_from(timeout=WAIT)
        assert hello["status"] == "live"
        # The next message is the end, not a countdown or a start.
        assert await socket.receive_json_from(timeout=WAIT) == {"type": "sale_ended"}
        await socket.disconnect()

    live(scenario)


@pytest.mark.usefixtures("sale_data")  # on one Redis and on a Redis Cluster
def test_stock_when_a_unit_is_sold() -> None:
    # Given a live sale with 5 units and a page watching it
    sale = make_sale(stock=5)

    async def scenario() -> None:
        socket = await connected(sale.pk)
        assert (await socket.receive_json_from(timeout=WAIT))["remaining_stock"] == 5
        await subscribed()
        # When a shopper buys one
        assert await buy(sale) == "SUCCESS"
        # Then the page hears the new count
        assert await socket.receive_json_from(timeout=WAIT) == {"type": "stock", "remaining_stock": 4}
        await socket.disconnect()

    live(scenario)


def test_a_burst_of_sales_ends_on_the_true_count() -> None:
    # Given a live sale with 30 units and a page watching it
    sale = make_sale(stock=30)

    async def scenario() -> None:
        socket = await connected(sale.pk)
        await socket.receive_json_from(timeout=WAIT)
        await subscribed()
        # When 12 units go in a burst
        for _ in range(12):
            assert await buy(sale) == "SUCCESS"
        # Then the counts only go down and the last one is the truth (bursts are coalesced)
        counts: list[int] = []
        while not counts or counts[-1] != 18:
            message = await socket.receive_json_from(timeout=WAIT)
            assert message["type"] == "stock"
            counts.append(message["remaining_stock"])
        assert counts == sorted(counts, reverse=True)
        assert 1 <= len(counts) <= 12
        assert await socket.receive_nothing(timeout=0.5)
        await socket.disconnect()

    live(scenario)


class RecordingPage:
    """A socket of the room that keeps what it was sent (the room's side of the contract,
    without a server in between)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def push(self, message: Outgoing) -> None:
        self.messages.append(json.loads(message.text))

    def unsent_bytes(self) -> int:
        return 0

    def drop(self) -> None:
        raise AssertionError("a page that reads everything is never dropped")


def test_stock_is_coalesced_to_the_latest_count_and_zero_goes_out_at_once() -> None:
    # Given a page watching a live sale with 50 units
    sale = make_sale(stock=50)

    async def scenario() -> None:
        hub = live_hub()
        page = RecordingPage()
        assert await hub.join(sale.pk, page)
        room = hub.rooms[sale.pk]
        # Subscribed: the hub's read-back of the sale from Redis is behind it.
        await subscribed()
        assert [message["type"] for message in page.messages] == ["hello"]

        # When 40 purchases are heard at once
        for remaining in range(49, 9, -1):
            room.stock_heard(remaining)
        # Then the first goes out at once and the other 39 wait for the interval's end
        assert page.messages[1:] == [{"type": "stock", "remaining_stock": 49}]
        while len(page.messages) < 3:
            await asyncio.sleep(0.05)
        # And then one message carries the latest count
        assert page.messages[2:] == [{"type": "stock", "remaining_stock": 10}]

        # When the last ten go inside the next interval
        for remaining in range(9, -1, -1):
            room.stock_heard(remaining)
        # Then zero and sold_out go out at once, without waiting for the interval
        assert page.messages[3:] == [{"type": "stock", "remaining_stock": 0}, {"type": "sold_out"}]
        await asyncio.sleep(2 * STOCK_INTERVAL_SECONDS)
        assert len(page.messages) == 5  # Nothing was left waiting.
        hub.leave(sale.pk, page)

    live(scenario)


def test_a_stampede_of_purchase_events_reaches_a_socket_a_few_times_a_second_not_once_each() -> None:
    # Given a page watching a live sale
    sale = make_sale(stock=1000)

    async def scenario() -> None:
        socket = await connected(sale.pk)
        await socket.receive_json_from(timeout=WAIT)
        await subscribed()
        # When 600 purchases are published as fast as Redis takes them (purchase.lua's events)
        client = redis.Redis.from_url(settings.REDIS_URL)
        pipe = client.pipeline(transaction=False)
        now_ms = await sync_to_async(inventory.redis_now_ms)()
        for remaining in range(999, 399, -1):
            event = {
                "product_id": sale.product_id,
                "sale_id": sale.pk,
                "buyer": 1,
                "remaining": remaining,
                "timestamp": now_ms + 1000 - remaining,  # by the Redis clock, as the script's are
            }
            pipe.publish(inventory.keys.EVENTS_CHANNEL, json.dumps(event))
        began = time.monotonic()
        await sync_to_async(pipe.execute)()
        # Then the page hears the counts going down to the last one
        counts: list[int] = []
        while not counts or counts[-1] != 400:
            message = await socket.receive_json_from(timeout=WAIT)
            assert message["type"] == "stock"
            counts.append(message["remaining_stock"])
        took = time.monotonic() - began
        # In at most one message per interval (plus the first at once), never one per purchase
        assert counts == sorted(counts, reverse=True)
        assert len(counts) <= 2 + math.ceil(took / STOCK_INTERVAL_SECONDS), (len(counts), took)
        assert await socket.receive_nothing(timeout=2 * STOCK_INTERVAL_SECONDS)
        await socket.disconnect()

    live(scenario)


def test_sold_out_when_the_last_unit_goes() -> None:
    sale = make_sale(stock=1)

    async def scenario() -> None:
        socket = await connected(sale.pk)
        await socket.receive_json_from(timeout=WAIT)
        await subscribed()
        assert await buy(sale) == "SUCCESS"
        assert await socket.receive_json_from(timeout=WAIT) == {"type": "stock", "remaining_stock": 0}
        assert await socket.receive_json_from(timeout=WAIT) == {"type": "sold_out"}
        # A page that connects now is told in its hello
        late = await connected(sale.pk)
        hello = await late.receive_json_from(timeout=WAIT)
        assert (hello["status"], hello["remaining_stock"]) == ("sold_out", 0)
        await socket.disconnect()
        await late.disconnect()

    live(scenario)


def test_sale_ended_at_the_end() -> None:
    sale = make_sale(stock=2, starts_in=-1, duration=3)

    async def scenario() -> None:
        socket = await connected(sale.pk)
        assert (await socket.receive_json_from(timeout=WAIT))["status"] == "live"
        assert await next_of(socket, "sale_ended") == {"type": "sale_ended"}
        await socket.disconnect()

    live(scenario)


def test_a_moved_window_sends_a_new_hello_and_the_countdown_follows_it() -> None:
    # Given a page watching a sale that opens in an hour
    sale = make_sale(stock=2, starts_in=3600)

    async def scenario() -> None:
        socket = await connected(sale.pk)
        await socket.receive_json_from(timeout=WAIT)
        await subscribed()
        # When the operator moves the start to a few seconds from now
        sale.starts_at = sale.starts_at - timedelta(seconds=3600 - 3)
        await sync_to_async(sale_update)(sale=sale)
        # Then the page gets a hello with the new start, and the start arrives
        hello = await next_of(socket, "hello")
        assert hello["starts_at"] == iso(sale.starts_at)
        assert await next_of(socket, "sale_started") == {"type": "sale_started"}
        await socket.disconnect()

    live(scenario)


def test_a_sale_not_loaded_into_redis_yet_is_read_from_the_database() -> None:
    sale = make_sale(stock=4, starts_in=86_400, warm=False)

    async def scenario() -> None:
        socket = await connected(sale.pk)
        hello = await socket.receive_json_from(timeout=WAIT)
        assert (hello["status"], hello["remaining_stock"], hello["starts_at"]) == (
            "scheduled",
            4,
            iso(sale.starts_at),
        )
        await socket.disconnect()

    live(scenario)


def test_open_sockets_are_counted_in_the_ws_connections_gauge() -> None:
    sale = make_sale()

    def gauge() -> float:
        return REGISTRY.get_sample_value("flash_sale_ws_connections") or 0.0

    async def scenario() -> None:
        before = gauge()
        sockets = [await connected(sale.pk) for _ in range(3)]
        for socket in sockets:
            await socket.receive_json_from(timeout=WAIT)
        assert gauge() == before + 3
        await sockets[0].disconnect()
        assert gauge() == before + 2
        for socket in sockets[1:]:
            await socket.disconnect()
        assert gauge() == before

    live(scenario)


def test_an_unknown_sale_closes_the_socket_with_4404() -> None:
    async def scenario() -> None:
        socket = await connected(987_654_321)
        assert await socket.receive_output(timeout=WAIT) == {"type": "websocket.close", "code": NO_SUCH_SALE}

    live(scenario)


def test_while_redis_is_away_a_socket_is_closed_with_1013_not_an_error(own_redis: LocalRedis) -> None:
    # Given a sale, and Redis gone
    sale = make_sale()
    own_redis.stop()

    async def scenario() -> None:
        # When a page connects, it is told to come back later (it polls meanwhile)
        socket = await connected(sale.pk)
        assert await socket.receive_output(timeout=WAIT) == {"type": "websocket.close", "code": TRY_AGAIN_LATER}

    live(scenario)


def test_a_page_from_another_site_is_refused() -> None:
    sale = make_sale()

    async def scenario() -> None:
        socket = WebsocketCommunicator(
            application, f"/ws/sales/{sale.pk}/", headers=[(b"origin", b"https://evil.example")]
        )
        accepted, _ = await socket.connect(timeout=WAIT)
        assert not accepted

    live(scenario)


def test_every_socket_of_a_process_shares_one_redis_subscription() -> None:
    # Given 40 pages on two sales in one process
    sales = [make_sale(stock=5), make_sale(stock=5)]

    async def scenario() -> None:
        sockets = [await connected(sales[n % 2].pk) for n in range(40)]
        for socket in sockets:
            await socket.receive_json_from(timeout=WAIT)
        await subscribed()
        # Then Redis sees one subscriber connection of the process, on every channel it hears
        clients = await sync_to_async(redis.Redis.from_url(settings.REDIS_URL, decode_responses=True).client_list)()
        hub_clients = [client for client in clients if client["name"].startswith(CLIENT_NAME)]
        assert len(hub_clients) == 1
        assert hub_clients[0]["sub"] == str(len(subscription.channels))
        # And one sale's event reaches exactly that sale's 20 pages
        assert await buy(sales[0]) == "SUCCESS"
        for n, socket in enumerate(sockets):
            if n % 2 == 0:
                assert await socket.receive_json_from(timeout=WAIT) == {"type": "stock", "remaining_stock": 4}
            else:
                assert await socket.receive_nothing(timeout=0.05)
        for socket in sockets:
            await socket.disconnect()
        # And a sale nobody watches any more has no room left in the process
        assert live_hub().rooms == {}

    live(scenario)


@pytest.mark.usefixtures("sale_data")  # on one Redis and on a Redis Cluster
def test_a_stock_return_after_sold_out_is_heard() -> None:
    # Given a sold-out sale and a page watching it
    sale = make_sale(stock=1)

    async def scenario() -> None:
        socket = await connected(sale.pk)
        await socket.receive_json_from(timeout=WAIT)
        await subscribed()
        assert await buy(sale) == "SUCCESS"
        assert (await socket.receive_json_from(timeout=WAIT))["remaining_stock"] == 0
        assert await socket.receive_json_from(timeout=WAIT) == {"type": "sold_out"}
        # When a unit comes back (an expired order), published as the contract says
        client = inventory.inventory_redis()
        await sync_to_async(client.incr)(inventory.keys.stock_key(sale.pk))
        now_ms = await sync_to_async(inventory.redis_now_ms)()
        event = {"product_id": sale.product_id, "sale_id": sale.pk, "buyer": 0, "remaining": 1, "timestamp": now_ms}
        await sync_to_async(client.publish)(inventory.keys.EVENTS_CHANNEL, json.dumps(event))
        # Then the page hears it
        assert await socket.receive_json_from(timeout=WAIT) == {"type": "stock", "remaining_stock": 1}
        await socket.disconnect()

    live(scenario)


# --- A queue-mode sale's line ------------------------------------------------------------

LINE_FIELDS = {"type", "served", "rate_per_second", "waiting"}
# The contract says once a second; a gap of twice that on a shared machine is still a
# broadcast on its schedule, while a room that only sent on a change, or per join, is not.
LINE_GAP_ALLOWED = 2 * LINE_INTERVAL_SECONDS


async def join_line(sale: FlashSale) -> Place:
    user = await sync_to_async(make_user)()
    return await sync_to_async(queue_join)(sale_id=sale.pk, user_id=user.pk)


async def line_messages(socket: WebsocketCommunicator, count: int, *, gaps: list[float]) -> list[dict[str, Any]]:
    """The next ``count`` ``queue`` messages (``countdown`` ticks skipped), the time between
    consecutive ones appended to ``gaps``."""
    messages: list[dict[str, Any]] = []
    last = time.monotonic()
    while len(messages) < count:
        message = await next_of(socket, "queue")
        now = time.monotonic()
        if messages:
            gaps.append(now - last)
        last = now
        assert set(message) == LINE_FIELDS, message
        messages.append(message)
    return messages


def test_a_queue_mode_sale_tells_its_line_every_second_while_shoppers_join() -> None:
    # Given a queue-mode sale letting one place in a second, open for a second, and a page on it
    sale = make_sale(stock=50, admission=Admission.QUEUE, serving_rate=1, starts_in=-1)

    async def scenario() -> None:
        socket = await connected(sale.pk)
        hello = await socket.receive_json_from(timeout=WAIT)
        # Then its hello carries the line: nobody in it yet, the configured rate until one is measured
        assert hello["type"] == "hello"
        assert hello["queue"] == {"served": 0, "rate_per_second": 1.0, "waiting": 0, "opens_at": iso(sale.starts_at)}
        gaps: list[float] = []

        # When ten shoppers join
        places = [await join_line(sale) for _ in range(10)]
        assert [place.number for place in places] == list(range(1, 11))

        # Then every message counts them all, let in or waiting, and the line moves
        while (message := await next_of(socket, "queue"))["served"] + message["waiting"] != 10:
            pass
        heard = await line_messages(socket, 4, gaps=gaps)
        for message in heard:
            assert message["served"] + message["waiting"] == 10, heard
            assert message["rate_per_second"] > 0, heard
        served = [message["served"] for message in heard]
        assert served == sorted(served) and served[-1] > served[0], heard
        assert max(gaps) <= LINE_GAP_ALLOWED, gaps
        await socket.disconnect()

    live(scenario)


def test_the_line_tells_the_measured_rate_not_the_configured_one() -> None:
    # Given a queue-mode sale configured to let in 4 places a second, and a page on it
    sale = make_sale(stock=50, admission=Admission.QUEUE, serving_rate=4, starts_in=-1)

    async def scenario() -> None:
        socket = await connected(sale.pk)
        assert (await socket.receive_json_from(timeout=WAIT))["queue"]["rate_per_second"] == 4.0
        await join_line(sale)
        # When the scripts have measured the line moving at a quarter place a second (line.lua
        # keeps its measure in the line's state hash, as written here)
        client = inventory.inventory_redis()
        await sync_to_async(client.hset)(keys.line_state_key(sale.pk), "measured", "0.250000")
        # Then the next messages carry the measured rate
        while (await next_of(socket, "queue"))["rate_per_second"] != 0.25:
            pass
        assert (await next_of(socket, "queue"))["rate_per_second"] == 0.25
        await socket.disconnect()

    live(scenario)


def test_before_the_start_the_line_has_let_nobody_in_and_the_pre_queue_waits() -> None:
    # Given a queue-mode sale opening in an hour whose pre-queue is open, and a page on it
    sale = make_sale(
        stock=5,
        admission=Admission.QUEUE,
        serving_rate=2,
        starts_in=3600,
        pre_queue_opens_at=timezone.now() - timedelta(seconds=1),
    )

    async def scenario() -> None:
        socket = await connected(sale.pk)
        hello = await socket.receive_json_from(timeout=WAIT)
        assert (hello["status"], hello["queue"]) == (
            "scheduled",
            {"served": 0, "rate_per_second": 2.0, "waiting": 0, "opens_at": iso(sale.pre_queue_opens_at)},
        )
        # When three shoppers join the pre-queue
        for _ in range(3):
            assert (await join_line(sale)).status.value == "pre_queue"
        # Then the line says three wait and nobody was let in, beside the countdown
        while (await next_of(socket, "queue"))["waiting"] != 3:
            pass
        assert await next_of(socket, "queue") == {"type": "queue", "served": 0, "rate_per_second": 2.0, "waiting": 3}
        assert (await next_of(socket, "countdown"))["seconds_remaining"] > 3000
        await socket.disconnect()

    live(scenario)


def test_once_the_line_sells_out_it_is_told_at_once_and_goes_quiet() -> None:
    # Given a queue-mode sale of one unit, a shopper let in and a page waiting in the line
    sale = make_sale(stock=1, admission=Admission.QUEUE, serving_rate=100, starts_in=-1)

    async def scenario() -> None:
        socket = await connected(sale.pk)
        await socket.receive_json_from(timeout=WAIT)
        await subscribed()
        first = await join_line(sale)
        await join_line(sale)
        await next_of(socket, "queue")
        # When the first buys the last unit
        user_id = int(first.queue_pass.split(".")[2])
        answer = await sync_to_async(purchase_attempt)(sale_id=sale.pk, user_id=user_id, queue_pass=first.queue_pass)
        assert answer.status.value == "SUCCESS"
        # Then the page hears it at once, and the line has nothing more to say
        while (message := await socket.receive_json_from(timeout=WAIT))["type"] == "queue":
            pass
        assert message == {"type": "stock", "remaining_stock": 0}
        assert await socket.receive_json_from(timeout=WAIT) == {"type": "sold_out"}
        assert await socket.receive_nothing(timeout=2.5 * LINE_INTERVAL_SECONDS)
        await socket.disconnect()

    live(scenario)


def test_a_sale_switched_to_queue_mode_sends_a_hello_with_its_line_and_starts_telling_it() -> None:
    # Given a page on a live sale that admits directly: its hello has no line
    sale = make_sale(stock=5, starts_in=-1)

    async def scenario() -> None:
        socket = await connected(sale.pk)
        assert "queue" not in await socket.receive_json_from(timeout=WAIT)
        await subscribed()
        # When the operator switches it to queue mode
        sale.admission = Admission.QUEUE
        sale.serving_rate = 3
        await sync_to_async(sale_update)(sale=sale)
        # Then the page gets a hello with the line, then the line's messages
        hello = await next_of(socket, "hello")
        assert hello["queue"] == {"served": 0, "rate_per_second": 3.0, "waiting": 0, "opens_at": iso(sale.starts_at)}
        assert await next_of(socket, "queue") == {"type": "queue", "served": 0, "rate_per_second": 3.0, "waiting": 0}
        await socket.disconnect()

    live(scenario)


def _sale_reads() -> int:
    """Scripts Redis has run: the room's read of the sale (``sale_state.lua``) is one."""
    stats = inventory.inventory_redis().info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval"))


def test_thirty_pages_on_a_queue_mode_sale_cost_one_read_a_second(own_redis: LocalRedis) -> None:
    # Given thirty pages of one process on a queue-mode sale, on a Redis of the test's own
    sale = make_sale(stock=5, admission=Admission.QUEUE, serving_rate=1, starts_in=-1)

    async def scenario() -> None:
        sockets = [await connected(sale.pk) for _ in range(30)]
        for socket in sockets:
            await socket.receive_json_from(timeout=WAIT)
        await next_of(sockets[0], "queue")
        before = _sale_reads()
        # When three more messages go out to all of them
        for _ in range(3):
            for socket in sockets:
                await next_of(socket, "queue")
        after = _sale_reads()
        # Then Redis ran one read per message (and perhaps the next one's), not one per page
        assert 3 <= after - before <= 4, after - before
        for socket in sockets:
            await socket.disconnect()

    live(scenario)


def test_a_checkpoint_of_the_sales_log_reaches_its_pages_and_no_others() -> None:
    # Given pages watching two sales
    sale, other = make_sale(stock=5), make_sale(stock=5)

    async def scenario() -> None:
        watching = await connected(sale.pk)
        elsewhere = await connected(other.pk)
        await watching.receive_json_from(timeout=WAIT)
        await elsewhere.receive_json_from(timeout=WAIT)
        await subscribed()
        # When the log builder publishes a signed checkpoint of the first sale's log
        note = "flashsale.localhost/sales/1\n3\nAAAA\n\n\u2014 flashsale.localhost/sales/1 BBBB\n"
        client = inventory.inventory_redis()
        await sync_to_async(client.publish)(CHECKPOINTS_CHANNEL, json.dumps({"sale_id": sale.pk, "checkpoint": note}))
        # Then its page gets it as sent, and the other sale's page nothing
        assert await next_of(watching, "checkpoint") == {"type": "checkpoint", "checkpoint": note}
        assert await elsewhere.receive_nothing(timeout=0.5)
        await watching.disconnect()
        await elsewhere.disconnect()

    live(scenario)
