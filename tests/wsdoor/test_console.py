"""The operator console's feed, ``/ws/admin/sales/<id>/live/``, from real ws processes: staff
get the kept figures and then a point a second that follows the sale, over the channel layer
to every ws process; a shopper's, a visitor's and another site's sockets are refused."""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.utils import timezone
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from sales.models import FlashSale
from sales.purchase import purchase_attempt
from sales.services import sale_update
from sales.tally import tally
from tests.factories import make_sale, make_shoppers, make_user
from tests.processes import ChildProcess
from wsdoor.console import FORBIDDEN, NO_SUCH_SALE

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 30.0  # Generous: the machine is shared.


def session_cookie(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def staff_cookie() -> str:
    return session_cookie(get_user_model().objects.create_superuser("watcher", "watcher@example.com", "pw-w-12345"))


async def console(port: int, sale_id: int | str, *, cookie: str = "", origin: str = "") -> ClientConnection:
    return await connect(
        f"ws://127.0.0.1:{port}/ws/admin/sales/{sale_id}/live/",
        origin=origin or f"http://127.0.0.1:{port}",  # type: ignore[arg-type]
        additional_headers={"Cookie": cookie} if cookie else None,
        open_timeout=WAIT,
        ping_interval=None,
    )


async def next_message(page: ClientConnection) -> dict[str, Any] | int:
    """The next message, or the close code if the server closed the socket instead."""
    try:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(page.recv(), WAIT))
    except ConnectionClosed:
        assert page.close_code is not None
        return page.close_code
    return message


async def point_where(page: ClientConnection, holds: Any) -> dict[str, Any]:
    """The first point for which ``holds(point)`` is true (points come once a second)."""
    while True:
        message = await next_message(page)
        assert isinstance(message, dict), f"closed with {message}"
        if message["type"] == "point" and holds(message):
            return message


def test_staff_get_the_kept_figures_then_a_point_a_second_that_follows_the_sale(console_ws: ChildProcess) -> None:
    # Given a live sale of 5 units and a staff member's console on it
    sale = make_sale(stock=5)
    cookie = staff_cookie()
    shoppers = make_shoppers(4)

    async def scenario() -> dict[str, Any]:
        page = await console(console_ws.port, sale.pk, cookie=cookie)
        history = await next_message(page)
        assert isinstance(history, dict) and history["type"] == "history"
        assert history["sale"]["id"] == sale.pk and history["sale"]["total_stock"] == 5
        first = await point_where(page, lambda point: True)
        assert (first["stock"], first["total"], first["status"]) == (5, 5, "live")

        # When three shoppers win a unit and their process flushes its counts
        for user_id, _ in shoppers[:3]:
            await asyncio.to_thread(purchase_attempt, sale_id=sale.pk, user_id=user_id)
        await asyncio.to_thread(tally.flush)

        # Then a point shows the stock fallen to 2 and the wins per second, then the orders
        moved = await point_where(page, lambda point: point["stock"] == 2 and (point["rates"]["won"] or 0) > 0)
        await page.close()
        return moved

    moved = asyncio.run(scenario())
    assert moved["buyers"] == 3
    assert moved["rates"]["to_redis"] > 0 and moved["rates"]["arrived"] > 0
    assert moved["orders"]["waiting"] + moved["orders"]["stored"] == 3
    assert moved["p50_ms"] is None or moved["p50_ms"] >= 0


def test_the_same_points_reach_consoles_on_every_ws_process_from_one_publisher(
    console_ws: ChildProcess, second_console_ws: ChildProcess
) -> None:
    # Given consoles of one sale on two ws processes
    sale = make_sale(stock=5)
    cookie = staff_cookie()

    async def heard(port: int) -> list[int]:
        page = await console(port, sale.pk, cookie=cookie)
        assert (await next_message(page))["type"] == "history"  # type: ignore[index]
        times = [(await point_where(page, lambda point: True))["t"] for _ in range(5)]
        await page.close()
        return times

    async def scenario() -> tuple[list[int], list[int]]:
        first, second = await asyncio.gather(heard(console_ws.port), heard(second_console_ws.port))
        return first, second

    # When each hears five points
    first, second = asyncio.run(scenario())

    # Then both heard the same points (the channel layer's group), each once, a second apart
    assert set(first) & set(second)
    for times in (first, second):
        assert len(set(times)) == len(times)
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert all(gap >= 500 for gap in gaps), gaps


def end(sale: FlashSale) -> None:
    """The operator ends the sale now (its window moved into the past)."""
    sale.starts_at = timezone.now() - timedelta(seconds=60)
    sale.ends_at = timezone.now() - timedelta(seconds=1)
    sale_update(sale=sale)
    connection.close()  # This ran in a worker thread; its connection goes with it.


def test_a_sales_figures_are_kept_for_review_after_it_ends(console_ws: ChildProcess) -> None:
    # Given a sale whose console heard a win, and which then ended
    sale = make_sale(stock=3)
    cookie = staff_cookie()
    (user_id, _), *_ = make_shoppers(1)

    async def watch_a_win() -> None:
        page = await console(console_ws.port, sale.pk, cookie=cookie)
        await next_message(page)
        await point_where(page, lambda point: point["stock"] == 3)
        await asyncio.to_thread(purchase_attempt, sale_id=sale.pk, user_id=user_id)
        await asyncio.to_thread(tally.flush)
        await point_where(page, lambda point: point["stock"] == 2)
        await asyncio.to_thread(end, sale)
        await point_where(page, lambda point: point["status"] == "ended")
        await page.close()

    asyncio.run(watch_a_win())

    # When a console opens later
    async def reopen() -> dict[str, Any] | int:
        page = await console(console_ws.port, sale.pk, cookie=cookie)
        history = await next_message(page)
        await page.close()
        return history

    history = asyncio.run(reopen())

    # Then it receives the kept points first, the stock falling from 3 to 2 among them
    assert isinstance(history, dict) and history["type"] == "history"
    stocks = [point["stock"] for point in history["points"]]
    assert 3 in stocks and 2 in stocks
    assert stocks.index(3) < stocks.index(2)
    assert [point["t"] for point in history["points"]] == sorted(point["t"] for point in history["points"])
    assert history["points"][-1]["status"] == "ended"


def test_a_shoppers_and_a_visitors_sockets_are_closed_with_4403_and_hear_nothing(console_ws: ChildProcess) -> None:
    sale = make_sale(stock=5)
    shopper = session_cookie(make_user())
    inactive_staff = get_user_model().objects.create_user("former", "former@example.com", "pw-f-12345", is_staff=True)
    former = session_cookie(inactive_staff)
    inactive_staff.is_active = False
    inactive_staff.save()

    async def scenario() -> list[dict[str, Any] | int]:
        answers = []
        for cookie in (shopper, "", "sessionid=forged", former):
            page = await console(console_ws.port, sale.pk, cookie=cookie)  # The handshake succeeds.
            answers.append(await next_message(page))
        return answers

    assert asyncio.run(scenario()) == [FORBIDDEN] * 4


def test_another_sites_page_is_refused_before_the_handshake(console_ws: ChildProcess) -> None:
    sale = make_sale(stock=5)
    cookie = staff_cookie()

    async def scenario() -> None:
        with pytest.raises(InvalidStatus) as refused:
            await console(console_ws.port, sale.pk, cookie=cookie, origin="https://evil.example")
        assert refused.value.response.status_code == 403

    asyncio.run(scenario())


@pytest.mark.parametrize("sale_ref", ["987654321", "abc"])
def test_a_console_of_no_sale_is_closed_with_4404(console_ws: ChildProcess, sale_ref: str) -> None:
    cookie = staff_cookie()

    async def scenario() -> dict[str, Any] | int:
        page = await console(console_ws.port, sale_ref, cookie=cookie)
        return await next_message(page)

    assert asyncio.run(scenario()) == NO_SUCH_SALE
    assert "Exception in ASGI application" not in console_ws.log.read_text(errors="replace")
