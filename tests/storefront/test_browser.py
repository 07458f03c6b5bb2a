"""The storefront in a real browser (Debian's chromium, driven by Playwright) against the real
stack: granian, uvicorn, a Celery worker, Redis, PostgreSQL. Each state the shopper can see
is kept as a screenshot under ``artifacts/screenshots/``.

Nothing here waits a fixed time: each step waits (generously) for the state it needs.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.utils import timezone
from playwright.sync_api import Browser, Page, Request, WebSocketRoute, expect

from antibot.proof_of_work import solve
from orders.drain import sale_orders_drain
from orders.models import Order, WebhookEventType
from orders.services import order_mark_paid
from orders.webhooks import endpoint_add, secret_generate
from sales.models import FlashSale
from sales.services import sale_update
from tests.clients import challenge
from tests.factories import auth, make_sale, make_shopper, make_user, make_wins
from tests.polling import wait_for
from tests.processes import OPEN_ADMISSION, ROOT, ChildProcess, start_web, start_ws

from .conftest import SLOW, Stack, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-for-tests-1"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def log_in(page: Page, username: str, *, then: str = "/") -> None:
    page.goto(f"/accounts/login/?next={then}")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"**{then}")


def open_sale(page: Page, sale: FlashSale) -> None:
    page.goto(f"/sales/{sale.pk}/")
    expect(page.locator("[data-connection]")).to_have_text("Live updates on")
    # A reload would drop this; every check below that it is still there says "no reload".
    page.evaluate("window.sameDocument = true")


def same_document(page: Page) -> bool:
    return bool(page.evaluate("window.sameDocument === true"))


def buy_through_the_api(stack: Stack, sale: FlashSale) -> dict[str, Any]:
    """Another shopper, with an API token, solving the proof of work in Python."""
    _, token = make_shopper()
    with httpx.Client(base_url=stack.url, headers=auth(token), timeout=30) as client:
        body: dict[str, str] = {}
        if sale.pow_difficulty:
            challenge = client.post(f"/api/sales/{sale.pk}/challenge/").json()
            body = {
                "challenge": challenge["challenge"],
                "solution": solve(challenge["challenge"], challenge["difficulty"]),
            }
        answer: dict[str, Any] = client.post(f"/api/sales/{sale.pk}/purchase/", json=body).json()
        return answer


def move_start(sale: FlashSale, *, seconds_from_now: float) -> None:
    duration = sale.ends_at - sale.starts_at
    sale.starts_at = timezone.now() + timedelta(seconds=seconds_from_now)
    sale.ends_at = sale.starts_at + duration
    sale_update(sale=sale)


def clock_seconds(text: str) -> int:
    total = 0
    for part in text.split(":"):
        total = total * 60 + int(part)
    return total


# Every state of the countdown, the result's heading and the Buy button, as the page made
# them: a test reads the whole history afterwards instead of racing the page for a passing
# value (a wait shown for a second, the last seconds before a start).
WATCH_THE_PAGE = """() => {
    const root = document.querySelector("[data-sale-page]");
    const look = () => ({
        clock: root.querySelector("[data-countdown]").textContent,
        counting: !root.querySelector("[data-countdown-block]").hidden,
        heading: root.querySelector("[data-result] strong")?.textContent ?? "",
        disabled: root.querySelector("[data-buy]").disabled,
        label: root.querySelector("[data-buy]").textContent,
    });
    window.pageShown = [look()];
    new MutationObserver(() => {
        const shown = look();
        const last = window.pageShown.at(-1);
        if (Object.keys(shown).some((key) => shown[key] !== last[key])) window.pageShown.push(shown);
    }).observe(root, {subtree: true, childList: true, characterData: true, attributes: true});
}"""
LAST_SECONDS = re.compile(r"^00:0[1-5]$")


def test_the_countdown_counts_down_and_buy_enables_at_the_start_without_a_reload(page: Page) -> None:
    # Given a shopper on the page of a sale that opens in an hour
    make_user(username="ann")
    sale = make_sale(stock=5, starts_in=3600, pow_difficulty=8)
    log_in(page, "ann")
    open_sale(page, sale)
    clock = page.locator("[data-countdown]")
    button = page.locator("[data-buy]")
    status = page.locator("[data-status]")
    expect(clock).to_have_text(re.compile(r"^(59:[0-5]\d|01:00:00)$"))
    expect(button).to_be_disabled()
    expect(status).to_have_text("Opens soon")
    first = clock.inner_text()
    # Then the clock counts down
    expect(clock).not_to_have_text(first)
    assert clock_seconds(clock.inner_text()) < clock_seconds(first)
    screenshot(page, "01-countdown")

    # When the operator moves the start to a few seconds from now
    page.evaluate(WATCH_THE_PAGE)
    move_start(sale, seconds_from_now=4)
    screenshot(page, "02-countdown-last-seconds")

    # Then the page enables Buy at the start, by itself
    expect(button).to_be_enabled()
    expect(button).to_have_text("Buy now")
    expect(status).to_have_text("On sale now")
    expect(page.locator("[data-countdown-block]")).to_be_hidden()
    assert same_document(page)
    screenshot(page, "03-live")
    # And before it the page counted down the last seconds, Buy off meanwhile
    shown = page.evaluate("window.pageShown")
    assert any(one["counting"] and LAST_SECONDS.match(one["clock"]) for one in shown), shown
    assert all(one["disabled"] for one in shown if one["counting"]), shown


def test_buying_shows_the_confirmation_and_the_order_appears_on_the_orders_page(page: Page) -> None:
    # Given a shopper on a live sale's page, on a slow network
    make_user(username="bob")
    sale = make_sale(stock=5, pow_difficulty=8)
    log_in(page, "bob")
    open_sale(page, sale)
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 400, "downloadThroughput": -1, "uploadThroughput": -1},
    )
    purchases: list[Request] = []
    page.on("request", lambda request: purchases.append(request) if request.url.endswith("/purchase/") else None)
    button = page.locator("[data-buy]")

    # When they double-click Buy
    button.dblclick()

    # Then the button says Processing... at once and takes no second click
    expect(button).to_have_text("Processing...")
    expect(button).to_be_disabled()
    screenshot(page, "04-processing")
    result = page.locator("[data-result]")
    expect(result).to_contain_text("Order confirmed")
    order_id = result.locator("[data-order-id]").inner_text()
    assert len(purchases) == 1
    assert UUID.match(purchases[0].headers["idempotency-key"])
    assert UUID.match(order_id)
    expect(page.locator("[data-stock]")).to_have_text("4")
    screenshot(page, "05-order-confirmed")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )

    # And the order is on /orders/ once the worker has written it (the page waits for it)
    result.get_by_role("link", name="See your orders").click()
    row = page.locator(f'tr[data-order-id="{order_id}"]')
    expect(row).to_be_visible()
    expect(row).to_contain_text(sale.product.name)
    expect(row).to_contain_text("Pending payment")
    screenshot(page, "06-orders")


def test_after_a_win_buy_becomes_you_own_this_and_stays_so_on_reload_and_in_other_tabs(
    page: Page, browser: Browser, storefront_stack: Stack
) -> None:
    # Given a shopper with the sale open in two tabs, and in a second browser that shares no
    # channel with the first (it can only learn of the win from the server)
    make_user(username="cat")
    sale = make_sale(stock=5, pow_difficulty=8)
    log_in(page, "cat")
    open_sale(page, sale)
    second_tab = page.context.new_page()
    open_sale(second_tab, sale)
    elsewhere = browser.new_context(base_url=storefront_stack.url)
    elsewhere.set_default_timeout(SLOW)
    other_browser = elsewhere.new_page()
    log_in(other_browser, "cat")
    open_sale(other_browser, sale)
    expect(other_browser.locator("[data-buy]")).to_be_enabled()

    # When they win, pressing Buy with the keyboard
    button = page.locator("[data-buy]")
    button.focus()
    page.keyboard.press("Enter")
    result = page.locator("[data-result]")
    expect(result).to_contain_text("Order confirmed")
    order_id = result.locator("[data-order-id]").inner_text()
    owned = f"You own this: order {order_id[:8]}"

    # Then Buy says they own it and takes no click
    expect(button).to_have_text(owned)
    expect(button).to_be_disabled()
    screenshot(page, "07-you-own-this")
    # the tab open beside it says so without a reload
    expect(second_tab.locator("[data-buy]")).to_have_text(owned)
    expect(second_tab.locator("[data-buy]")).to_be_disabled()
    assert same_document(second_tab)
    # and so does the page after a reload, with a link to the order
    page.reload()
    expect(button).to_have_text(owned)
    expect(button).to_be_disabled()
    expect(page.get_by_role("link", name="See your order", exact=True)).to_have_attribute(
        "href", f"/orders/{order_id}/"
    )
    # and a tab opened now
    third_tab = page.context.new_page()
    third_tab.goto(f"/sales/{sale.pk}/")
    expect(third_tab.locator("[data-buy]")).to_have_text(owned)
    expect(third_tab.locator("[data-buy]")).to_be_disabled()

    # And the other browser, which heard nothing, learns it from its next press (409 with the order)
    other_browser.locator("[data-buy]").click()
    expect(other_browser.locator("[data-result]")).to_contain_text("Already purchased")
    expect(other_browser.locator("[data-buy]")).to_have_text(owned)
    expect(other_browser.locator("[data-buy]")).to_be_disabled()
    elsewhere.close()


def test_when_another_shopper_takes_the_last_unit_the_page_shows_sold_out_without_a_reload(
    page: Page, storefront_stack: Stack
) -> None:
    # Given a shopper watching a live sale with one unit left
    make_user(username="dee")
    sale = make_sale(stock=1, pow_difficulty=8)
    log_in(page, "dee")
    open_sale(page, sale)
    button = page.locator("[data-buy]")
    expect(button).to_be_enabled()
    expect(page.locator("[data-stock]")).to_have_text("1")

    # When someone else buys it
    assert buy_through_the_api(storefront_stack, sale)["status"] == "SUCCESS"

    # Then the page says sold out by itself
    expect(page.locator("[data-status]")).to_have_text("Sold out")
    expect(page.locator("[data-stock]")).to_have_text("0")
    expect(button).to_have_text("Sold out")
    expect(button).to_be_disabled()
    assert same_document(page)
    screenshot(page, "08-sold-out")


def test_an_anonymous_shopper_is_sent_to_log_in_and_comes_back(page: Page) -> None:
    # Given a visitor on a sale's page
    make_user(username="eli")
    sale = make_sale(stock=3, starts_in=600)
    page.goto("/")
    expect(page.get_by_role("link", name=re.compile(sale.product.name))).to_be_visible()
    screenshot(page, "09-home")
    page.get_by_role("link", name=re.compile(sale.product.name)).click()
    login_link = page.get_by_role("link", name="Log in to buy")
    expect(login_link).to_be_visible()
    screenshot(page, "10-anonymous")

    # When they follow "Log in to buy" and log in
    login_link.click()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    screenshot(page, "11-login")
    page.get_by_label("Username").fill("eli")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()

    # Then they are back on the sale's page with a Buy button
    page.wait_for_url(f"**/sales/{sale.pk}/")
    expect(page.locator("[data-buy]")).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("Log out"))).to_be_visible()


def test_the_page_keeps_working_when_the_socket_drops(page: Page, storefront_stack: Stack) -> None:
    # Given a shopper on a live sale's page whose socket the test can cut and refuse
    make_user(username="fox")
    sale = make_sale(stock=5)
    accept = {"sockets": True}
    open_routes: list[WebSocketRoute] = []

    def route(socket: WebSocketRoute) -> None:
        if not accept["sockets"]:
            socket.close(code=1011)
            return
        socket.connect_to_server()
        open_routes.append(socket)

    page.route_web_socket(re.compile(r"/ws/sales/\d+/$"), route)
    log_in(page, "fox")
    open_sale(page, sale)
    connection = page.locator("[data-connection]")

    # When the socket drops and reconnecting fails
    accept["sockets"] = False
    for socket in open_routes:
        socket.close(code=1011)
    expect(connection).to_contain_text("Reconnecting")

    # Then the page still follows the sale, by polling the REST API
    assert buy_through_the_api(storefront_stack, sale)["status"] == "SUCCESS"
    expect(page.locator("[data-stock]")).to_have_text("4")
    screenshot(page, "12-reconnecting")

    # And once the server takes sockets again the page is live again, never reloaded
    accept["sockets"] = True
    expect(connection).to_have_text("Live updates on")
    assert buy_through_the_api(storefront_stack, sale)["status"] == "SUCCESS"
    expect(page.locator("[data-stock]")).to_have_text("3")
    assert same_document(page)


@pytest.fixture
def limited_web(storefront_stack: Stack, collected_static: Any) -> Iterator[ChildProcess]:
    """A web process with real admission limits: one call per shopper per 30 s."""
    child = start_web(
        workers=1,
        env={
            "ANTIBOT_USER_LIMIT": "1",
            "ANTIBOT_IP_LIMIT": "0",
            "ANTIBOT_RATE_WINDOW_SECONDS": "30",
            "FLASHSALE_WS_URL": storefront_stack.ws_url,
        },
        static_root=collected_static,
    )
    yield child
    child.stop()


LIVE_REGION_WRITES = """() => {
    const region = document.querySelector("[data-result]");
    window.liveRegionWrites = [];
    new MutationObserver((records) => {
        const added = records.some((record) =>
            record.type === "characterData" || [...record.addedNodes].some((node) => node.textContent.trim()));
        if (added) window.liveRegionWrites.push(region.textContent);
    }).observe(region, {childList: true, subtree: true, characterData: true});
}"""


TRY_AGAIN = re.compile(r"^Try again in (\d+) s$")


TRY_AGAIN = re.compile(r"^Try again in (\d+) s$")


def test_a_rate_limited_purchase_is_said_once_and_buy_counts_the_wait_down(
    page: Page, limited_web: ChildProcess
) -> None:
    # Given a shopper on a server allowing one call per 30 s, who spent this window's call
    # asking for a challenge through the API, on a sale asking for proof of work: pressing Buy
    # fetches a challenge, then sends the purchase. The windows are fixed spans of the clock;
    # whichever the page's two calls fall in, one of them is over the limit.
    _, token = make_shopper(username="gil")
    sale = make_sale(stock=5, pow_difficulty=4)
    page.goto(f"{limited_web.url}/accounts/login/")
    page.get_by_label("Username").fill("gil")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.goto(f"{limited_web.url}/sales/{sale.pk}/")
    button = page.locator("[data-buy]")
    result = page.locator("[data-result]")
    expect(button).to_be_enabled()
    assert challenge(limited_web, sale.pk, token).status_code == 200
    page.evaluate(WATCH_THE_PAGE)
    page.evaluate(LIVE_REGION_WRITES)

    # When they press Buy
    with page.expect_response(lambda response: response.status == 429) as refused:
        button.click()
    retry_after = int(refused.value.headers["retry-after"])
    expect(result).to_contain_text("The shop is very busy right now")
    screenshot(page, "13-try-again")

    # Then once the wait is over the message goes and Buy is back
    expect(result).to_be_empty(timeout=SLOW + retry_after * 1000)
    expect(button).to_be_enabled()
    # And meanwhile Buy counted the server's wait down, off, outside the live region, which
    # was written once
    shown = page.evaluate("window.pageShown")
    waits = [int(match.group(1)) for one in shown if (match := TRY_AGAIN.match(one["label"]))]
    assert waits and waits[0] == retry_after, shown
    assert waits == sorted(set(waits), reverse=True), shown
    assert all(one["disabled"] for one in shown if TRY_AGAIN.match(one["label"])), shown
    writes = page.evaluate("window.liveRegionWrites")
    assert len(writes) == 1, writes
    assert "The shop is very busy right now" in writes[0]


def test_the_product_page_fits_a_phone(browser: Browser, storefront_stack: Stack) -> None:
    sale = make_sale(stock=10, starts_in=90, pow_difficulty=8)
    context = browser.new_context(base_url=storefront_stack.url, viewport={"width": 390, "height": 844})
    try:
        page = context.new_page()
        page.goto(f"/sales/{sale.pk}/")
        expect(page.locator("[data-countdown]")).to_have_text(re.compile(r"^0[01]:\d\d$"))
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        screenshot(page, "14-phone")
    finally:
        context.close()
    assert overflow == 0


def test_the_browsers_proof_of_work_follows_the_python_rule(page: Page) -> None:
    # The same SHA-256 and the same search as antibot/proof_of_work.py, across block edges
    # and non-ASCII text.
    texts = ["", "abc", "a" * 55, "a" * 56, "a" * 64, "x" * 130, "é€😀" * 13]
    challenge = "v1." + "c" * 70
    page.goto("/")
    got = page.evaluate(
        """async ([texts, challenge]) => {
            const sha = await import("/static/storefront/sha256.js");
            return {hashes: texts.map(sha.sha256Hex), solutions: [4, 8, 12].map((d) => sha.solve(challenge, d))};
        }""",
        [texts, challenge],
    )
    assert got["hashes"] == [hashlib.sha256(text.encode()).hexdigest() for text in texts]
    assert got["solutions"] == [solve(challenge, difficulty) for difficulty in (4, 8, 12)]


@pytest.fixture
def stack_with_its_own_ws(collected_static: Any, celery_worker: ChildProcess) -> Iterator[Stack]:
    """granian and a ws process of this test's own, which the test stops."""
    ws = start_ws(env=OPEN_ADMISSION)
    web = start_web(
        env={**OPEN_ADMISSION, "FLASHSALE_WS_URL": f"ws://127.0.0.1:{ws.port}"}, static_root=collected_static
    )
    yield Stack(web=web, ws=ws)
    web.stop()
    ws.stop()


BUY_TURNED_ON_AT = """() => {
    const button = document.querySelector("[data-buy]");
    new MutationObserver(() => {
        if (!button.disabled && window.buyTurnedOnAt === undefined) window.buyTurnedOnAt = Date.now();
    }).observe(button, {attributes: true});
}"""


def test_buy_turns_on_at_the_start_by_the_pages_clock_with_the_ws_process_gone(
    browser: Browser, stack_with_its_own_ws: Stack
) -> None:
    # Given a shopper on the page of a sale opening in an hour, its socket live
    stack = stack_with_its_own_ws
    make_user(username="hal")
    sale = make_sale(stock=5, starts_in=3600, pow_difficulty=8)
    context = browser.new_context(base_url=stack.url, viewport={"width": 1100, "height": 760})
    context.set_default_timeout(SLOW)
    page = context.new_page()
    received: list[str] = []
    page.on("websocket", lambda socket: socket.on("framereceived", lambda payload: received.append(str(payload))))
    log_in(page, "hal")
    open_sale(page, sale)
    page.evaluate(BUY_TURNED_ON_AT)
    # From here the REST API's sale polls fail: only the page's own clock can turn Buy on
    page.route(re.compile(r"/api/sales/\d+/$"), lambda route: route.abort())
    button = page.locator("[data-buy]")

    # When the operator moves the start to a few seconds from now, the page hears it
    move_start(sale, seconds_from_now=8)
    starts_at_ms = sale.starts_at.timestamp() * 1000
    expect(page.locator("[data-countdown]")).to_have_text(re.compile(r"^00:0[1-8]$"), timeout=SLOW)
    # And the ws process goes away before the start
    stack.ws.stop()
    stopped_at_ms = time.time() * 1000
    expect(page.locator("[data-connection]")).to_contain_text("Reconnecting", timeout=SLOW)
    expect(button).to_be_disabled()
    assert stopped_at_ms < starts_at_ms, "the machine was too slow to stop the ws process before the start"

    # Then Buy turns on at the start, not before, with no sale_started ever received
    expect(button).to_be_enabled(timeout=SLOW)
    turned_on_at_ms = page.evaluate("window.buyTurnedOnAt")
    assert turned_on_at_ms >= starts_at_ms
    assert not any("sale_started" in payload for payload in received)
    assert any('"hello"' in payload for payload in received)
    expect(page.locator("[data-status]")).to_have_text("On sale now")
    screenshot(page, "15-live-without-the-ws-process")

    # And buying works without the socket
    button.click()
    expect(page.locator("[data-result]")).to_contain_text("Order confirmed", timeout=SLOW)
    figures = ROOT / "artifacts" / "storefront" / "buy-without-ws.json"
    figures.parent.mkdir(parents=True, exist_ok=True)
    figures.write_text(json.dumps({"buy_on_after_start_ms": turned_on_at_ms - starts_at_ms}) + "\n")
    context.close()


@pytest.fixture
def web_with_a_payment_window(storefront_stack: Stack, collected_static: Any) -> Iterator[ChildProcess]:
    child = start_web(
        workers=1,
        env={**OPEN_ADMISSION, "FLASHSALE_PAYMENT_WINDOW_SECONDS": "600", "FLASHSALE_WS_URL": storefront_stack.ws_url},
        static_root=collected_static,
    )
    yield child
    child.stop()


ANNOUNCEMENTS = LIVE_REGION_WRITES.replace("[data-result]", "[data-order-announce]")


def test_the_order_page_counts_down_follows_the_order_until_it_is_paid_then_stops_polling(
    page: Page, web_with_a_payment_window: ChildProcess
) -> None:
    # Given a winner on their order's page, under a ten-minute payment window
    web = web_with_a_payment_window
    user = make_user(username="ivy")
    sale = make_sale(stock=5)
    make_wins(sale.pk, [user.pk])
    sale_orders_drain(sale_id=sale.pk)
    order = Order.objects.get(sale=sale)
    polls: list[str] = []
    api = f"/api/orders/{order.pk}/"
    page.on("request", lambda request: polls.append(request.url) if request.url.endswith(api) else None)
    page.clock.install()
    page.goto(f"{web.url}/accounts/login/?next=/orders/{order.pk}/")
    page.get_by_label("Username").fill("ivy")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"**/orders/{order.pk}/")
    page.evaluate(ANNOUNCEMENTS)
    countdown = page.locator("[data-pay-countdown]")
    badge = page.locator("[data-order-badge]")
    expect(countdown).to_have_text(re.compile(r"^(10:00|09:[0-5]\d)$"))
    expect(badge).to_have_text("Pending payment")
    expect(page.get_by_role("link", name="Pay $1.00")).to_be_hidden()  # no checkout configured here
    screenshot(page, "16-order-pending")
    before = clock_seconds(countdown.inner_text())
    with page.expect_response(lambda response: response.url.endswith(api)):
        page.clock.run_for(1500)  # the first poll, a second after the page opened
    expect(countdown).not_to_have_text(countdown.inner_text())
    assert clock_seconds(countdown.inner_text()) < before

    # When the shop reports it paid
    order_mark_paid(order=order)
    with page.expect_response(lambda response: response.url.endswith(api)):
        page.clock.run_for(2500)  # the next step of the backoff

    # Then the page says so, once, and polls no more, however long it stays open
    expect(badge).to_have_text("Paid")
    expect(page.locator("[data-order-page]")).to_have_attribute("data-following", "final")
    expect(page.locator("[data-pay-by-block]")).to_be_hidden()
    screenshot(page, "17-order-paid")
    polled = len(polls)
    page.clock.run_for(60 * 60 * 1000)
    assert len(polls) == polled == 2
    writes = page.evaluate("window.liveRegionWrites")
    assert writes == ["Paid. Thank you: the order is yours."]


@pytest.fixture
def demo_shop_web(
    storefront_stack: Stack, collected_static: Any, tmp_path: Any
) -> Iterator[tuple[ChildProcess, str, Any]]:
    """A web process serving the demo shop, as make run's does; its receiver's log in tmp_path."""
    secret = secret_generate()
    log = tmp_path / "demo-shop.log"
    child = start_web(
        env={
            **OPEN_ADMISSION,
            "FLASHSALE_WS_URL": storefront_stack.ws_url,
            "FLASHSALE_DEMO_SHOP": "true",
            "FLASHSALE_DEMO_SHOP_SECRET": secret,
            "FLASHSALE_DEMO_SHOP_LOG": str(log),
            "FLASHSALE_PAYMENT_CHECKOUT_URL": "/demo-shop/checkout/",
            "FLASHSALE_PAYMENT_WINDOW_SECONDS": "900",
        },
        static_root=collected_static,
    )
    yield child, secret, log
    child.stop()


def test_a_winner_pays_through_the_demo_shop_and_its_receiver_hears_created_and_paid_once_each(
    page: Page, demo_shop_web: tuple[ChildProcess, str, Any]
) -> None:
    # Given the demo shop's receiver registered as make run's demo registers it
    web, secret, log = demo_shop_web
    endpoint_add(
        url=f"{web.url}/demo-shop/webhooks/",
        events=WebhookEventType.values,
        secret=secret,
        allow_private=True,
        payments=True,
    )
    make_user(username="jo")
    sale = make_sale(stock=5, pow_difficulty=4)
    page.goto(f"{web.url}/accounts/login/")
    page.get_by_label("Username").fill("jo")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.goto(f"{web.url}/sales/{sale.pk}/")

    # When they win, open the order and follow the pay link
    page.locator("[data-buy]").click()
    expect(page.locator("[data-result]")).to_contain_text("Order confirmed")
    order_id = page.locator("[data-result] [data-order-id]").inner_text()
    page.get_by_role("link", name="See your order", exact=True).click()
    page.wait_for_url(f"**/orders/{order_id}/")
    page.get_by_role("link", name="Pay $1.00").click()

    # Then they are on the shop's checkout, pay, and are back on the order, paid
    expect(page.get_by_role("heading", name="Demo checkout")).to_be_visible()
    screenshot(page, "18-demo-checkout")
    page.get_by_role("button", name="Pay $1.00").click()
    page.wait_for_url(f"**/orders/{order_id}/")
    expect(page.locator("[data-order-badge]")).to_have_text("Paid")
    screenshot(page, "19-paid")

    # And the shop's receiver got order.created and order.paid, each signed and each once
    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    wait_for(lambda: len(lines()) >= 2, what="two webhooks in the demo shop's log", timeout=60)
    received = lines()
    assert [(line["type"], line["order_id"]) for line in received] == [
        ("order.created", order_id),
        ("order.paid", order_id),
    ]
    assert all(line["signature"] == "verified" and not line["repeat"] for line in received)
    assert len({line["webhook_id"] for line in received}) == 2
