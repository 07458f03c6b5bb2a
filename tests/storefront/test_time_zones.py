"""The shop's time zone end to end, on a web process whose shop is in Shanghai, read by a
browser in New York: a sale scheduled at a wall time in the admin's form and with ``manage.py
flashsale init --starts-at`` starts at that instant; the API says it in ISO 8601 with an
offset; the product page shows it on the shopper's clock and on the shop's."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from playwright.sync_api import Browser, Page, expect
from pytest_django.fixtures import Settings

from sales.models import FlashSale
from sales.services import sale_update
from tests.factories import make_product
from tests.processes import OPEN_ADMISSION, ChildProcess, start_web

from .conftest import SLOW, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-for-tests-1"
SHOP = "Asia/Shanghai"
SHOPPER = "America/New_York"
# 11.11 at midnight in Shanghai, a year ahead of the suite's clock so the sale is upcoming.
WALL_DAY, WALL_TIME = "2027-11-11", "00:00:00"
INSTANT = datetime(2027, 11, 10, 16, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def shanghai_web(ws_server: ChildProcess, collected_static: Path) -> Iterator[ChildProcess]:
    """A web process of a shop in Shanghai."""
    child = start_web(
        workers=1,
        env={**OPEN_ADMISSION, "SHOP_TIME_ZONE": SHOP, "FLASHSALE_WS_URL": f"ws://127.0.0.1:{ws_server.port}"},
        static_root=collected_static,
    )
    yield child
    child.stop()


@pytest.fixture
def new_york_page(browser: Browser, shanghai_web: ChildProcess) -> Iterator[Page]:
    context = browser.new_context(
        base_url=shanghai_web.url, timezone_id=SHOPPER, locale="en-US", viewport={"width": 1100, "height": 900}
    )
    context.set_default_timeout(SLOW)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == [], "JavaScript errors on the page"


def _api_start(web: ChildProcess, sale_id: int) -> str:
    answer = httpx.get(f"{web.url}/api/sales/{sale_id}/", timeout=10)
    assert answer.status_code == 200
    start: str = answer.json()["starts_at"]
    return start


def test_a_wall_time_round_trips_through_the_form_the_command_the_api_and_the_page(
    new_york_page: Page, shanghai_web: ChildProcess, settings: Settings
) -> None:
    page = new_york_page
    get_user_model().objects.create_superuser("tz-boss", "tz-boss@example.com", PASSWORD)
    product = make_product(name="Singles Day Phone")

    # Given the operator on the admin's form, which names the shop's zone
    page.goto("/admin/login/?next=/admin/sales/flashsale/add/")
    page.locator("input[name=username]").fill("tz-boss")
    page.locator("input[name=password]").fill(PASSWORD)
    page.locator("input[type=submit]").click()
    page.wait_for_url("**/admin/sales/flashsale/add/")
    expect(page.get_by_role("heading", name=f"Window ({SHOP})")).to_be_visible()

    # When they schedule the sale at midnight on 11.11 on the shop's clock
    page.locator("select[name=product]").select_option(label=product.name)
    page.locator("input[name=price]").fill("1.00")
    page.locator("input[name=total_stock]").fill("10")
    page.locator("input[name=starts_at_0]").fill(WALL_DAY)
    page.locator("input[name=starts_at_1]").fill(WALL_TIME)
    page.locator("input[name=ends_at_0]").fill(WALL_DAY)
    page.locator("input[name=ends_at_1]").fill("01:00:00")
    page.locator("input[name=_save]").click()
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    screenshot(page, "tz-01-admin-saved")

    # Then it starts at that instant, and the API says so in UTC with its offset
    from_form = FlashSale.objects.get(product=product)
    assert from_form.starts_at == INSTANT
    assert _api_start(shanghai_web, from_form.pk) == "2027-11-10T16:00:00Z"

    # And the command, given the same wall time, schedules the same instant
    settings.SHOP_TIME_ZONE = SHOP
    call_command("flashsale", "init", product.slug, "5", "--starts-at", "2027-11-11 00:00", stdout=StringIO())
    from_command = FlashSale.objects.filter(product=product).exclude(pk=from_form.pk).get()
    assert from_command.starts_at == INSTANT
    assert _api_start(shanghai_web, from_command.pk) == "2027-11-10T16:00:00Z"

    # And the product page, read in New York, shows the start on both clocks
    for sale in (from_form, from_command):
        page.goto(f"/sales/{sale.pk}/")
        start = page.locator("[data-starts-at]")
        expect(start.locator("[data-time-local]")).to_have_text(f"Nov 10, 11:00:00 your time ({SHOPPER})")
        expect(start.locator("[data-time-shop]")).to_have_text(f"Nov 11, 00:00:00 shop time ({SHOP})")
    screenshot(page, "tz-02-sale-page-new-york")

    # And when the operator moves the start an hour later, the open page says the new one
    expect(page.locator("[data-connection]")).to_have_text("Live updates on")
    from_command.starts_at += timedelta(hours=1)
    from_command.ends_at += timedelta(hours=1)
    sale_update(sale=from_command)
    start = page.locator("[data-starts-at]")
    expect(start.locator("[data-time-local]")).to_have_text(f"Nov 10, 12:00:00 your time ({SHOPPER})")
    expect(start.locator("[data-time-shop]")).to_have_text(f"Nov 11, 01:00:00 shop time ({SHOP})")
    page.goto("/")
    card = page.locator(f'a[href="/sales/{from_command.pk}/"] time')
    expect(card.locator("[data-time-local]")).to_have_text(f"Nov 10, 12:00 your time ({SHOPPER})")
    expect(card.locator("[data-time-shop]")).to_have_text(f"Nov 11, 01:00 shop time ({SHOP})")


def test_a_shopper_in_the_shops_zone_reads_the_start_once(browser: Browser, shanghai_web: ChildProcess) -> None:
    # Given a sale at midnight on 11.11 in Shanghai, and a shopper there
    call_command(
        "flashsale", "init", "tz-local", "5", "--starts-at", "2027-11-11 00:00", "--tz", SHOP, stdout=StringIO()
    )
    sale = FlashSale.objects.get(product__slug="tz-local")
    context = browser.new_context(base_url=shanghai_web.url, timezone_id=SHOP, locale="en-US")
    context.set_default_timeout(SLOW)
    try:
        page = context.new_page()

        # When they open its page
        page.goto(f"/sales/{sale.pk}/")

        # Then the start shows once, on their clock, which is the shop's
        start = page.locator("[data-starts-at]")
        expect(start.locator("[data-time-local]")).to_have_text(f"Nov 11, 00:00:00 your time ({SHOP})")
        expect(start.locator("[data-time-shop]")).to_have_count(0)
    finally:
        context.close()
