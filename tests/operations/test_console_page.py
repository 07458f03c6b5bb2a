"""The live console in a real browser (Debian's chromium) against granian, uvicorn and
Redis: a staff member watches a sale's numbers move during a burst of purchases, with no
reload; a shopper is not let in."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import Browser, Page, expect

from tests.factories import auth, make_sale, make_shoppers, make_user
from tests.processes import OPEN_ADMISSION, ChildProcess, start_web
from tests.storefront.conftest import SLOW, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-for-tests-1"


@pytest.fixture(scope="module")
def console_web(ws_server: ChildProcess, collected_static: Path) -> Iterator[ChildProcess]:
    child = start_web(
        env={**OPEN_ADMISSION, "FLASHSALE_WS_URL": f"ws://127.0.0.1:{ws_server.port}"}, static_root=collected_static
    )
    yield child
    child.stop()


@pytest.fixture
def console_page(browser: Browser, console_web: ChildProcess) -> Iterator[Page]:
    context = browser.new_context(base_url=console_web.url, viewport={"width": 1280, "height": 1000})
    context.set_default_timeout(SLOW)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == [], "JavaScript errors on the page"


def admin_log_in(page: Page, username: str, *, then: str) -> None:
    page.goto(f"/admin/login/?next={then}")
    page.locator("input[name=username]").fill(username)
    page.locator("input[name=password]").fill(PASSWORD)
    page.locator("input[type=submit]").click()


def test_staff_watch_the_numbers_move_during_a_burst_without_a_reload(
    console_page: Page, console_web: ChildProcess
) -> None:
    page = console_page
    # Given a live sale of 20 units and a staff member on its console, reached from the sale's page
    get_user_model().objects.create_superuser("operator", "operator@example.com", PASSWORD)
    sale = make_sale(stock=20)
    shoppers = make_shoppers(60)
    admin_log_in(page, "operator", then=f"/admin/sales/flashsale/{sale.pk}/change/")
    page.locator("[data-console-link]").click()
    page.wait_for_url(f"**/admin/sales/flashsale/{sale.pk}/console/")
    expect(page.locator("[data-connection]")).to_have_text("Live")
    expect(page.locator('[data-figure="stock"]')).to_have_text("20")
    expect(page.locator('[data-figure="status"]')).to_have_text("Live")
    page.evaluate(
        """() => {
          window.sameDocument = true;
          window.seen = {won: [], to_redis: [], sold_out: []};
          for (const name of Object.keys(window.seen)) {
            const element = document.querySelector(`[data-figure="${name}"]`);
            new MutationObserver(() => window.seen[name].push(element.textContent))
              .observe(element, {childList: true, characterData: true, subtree: true});
          }
        }"""
    )

    # When 60 shoppers press Buy at once, twice each
    def buy(token: str) -> list[int]:
        with httpx.Client(base_url=console_web.url, headers=auth(token), timeout=30) as client:
            return [client.post(f"/api/sales/{sale.pk}/purchase/", json={}).status_code for _ in range(2)]

    with ThreadPoolExecutor(20) as pool:
        answers = [code for codes in pool.map(buy, [token for _, token in shoppers]) for code in codes]
    assert answers.count(201) == 20

    # Then the console shows the stock fallen to zero, the sale sold out and the burst's rates
    expect(page.locator('[data-figure="stock"]')).to_have_text("0")
    expect(page.locator('[data-figure="status"]')).to_have_text("Sold out")
    expect(page.locator('[data-figure="buyers"]')).to_have_text("20")
    page.wait_for_function("() => window.seen.won.some((text) => parseFloat(text) > 0)")
    page.wait_for_function("() => window.seen.to_redis.some((text) => parseFloat(text) > 0)")
    page.wait_for_function("() => window.seen.sold_out.some((text) => parseFloat(text) > 0)")
    expect(page.locator('[data-figure="p99"]')).to_have_text(re.compile(r"^\d"))
    expect(page.locator('[data-figure="orders_stored"]')).to_have_text(re.compile(r"^\d+$"))
    assert page.evaluate("window.sameDocument === true")
    # And the stock chart has drawn its curve
    assert page.locator('[data-chart="stock"] canvas').count() == 1
    screenshot(page, "console-01-burst")


def test_a_shopper_is_not_let_into_the_console(console_page: Page) -> None:
    sale = make_sale(stock=5)
    make_user(username="curious", password=PASSWORD)

    console_page.goto("/accounts/login/")
    console_page.get_by_label("Username").fill("curious")
    console_page.get_by_label("Password").fill(PASSWORD)
    console_page.get_by_role("button", name="Log in").click()
    console_page.goto(f"/admin/sales/flashsale/{sale.pk}/console/")

    console_page.wait_for_url(re.compile(r"/admin/login/"))
    expect(console_page.locator("[data-console]")).to_have_count(0)
