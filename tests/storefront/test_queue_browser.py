"""The waiting room in a real browser (Debian's chromium, driven by Playwright) against the real
stack: two shoppers join a queue-mode sale's line from their own browsers, each sees their
place and their wait, the line moves, and the first in line is let in and buys first.

Nothing here waits a fixed time: each step waits (generously) for the state it needs, and
nothing measures how long a state took to come.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.utils import timezone
from playwright.sync_api import Browser, BrowserContext, Page, expect

from antibot.proof_of_work import solve
from sales.models import Admission, FlashSale
from sales.services import sale_update
from tests.factories import auth, make_sale, make_shopper, make_user
from tests.polling import wait_for
from tests.processes import OPEN_ADMISSION, ChildProcess, start_web

from .conftest import SLOW, Stack, screenshot
from .test_browser import BUY_TURNED_ON_AT, log_in, move_start, open_sale, same_document

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def patient_expectations() -> Iterator[None]:
    """A state here may wait for the line to move several places: every expectation waits as
    long as the slowest step of the storefront's tests may take."""
    expect.set_options(timeout=SLOW)
    yield
    expect.set_options(timeout=5_000)  # Playwright's own default, for the other modules.


@dataclass(frozen=True)
class Joined:
    """A shopper who joined through the API: their number, token and pass."""

    number: int
    token: str
    queue_pass: str


def join_through_the_api(web_url: str, sale: FlashSale) -> Joined:
    """Another shopper joins the line with an API token, solving the proof of work in Python."""
    _, token = make_shopper()
    with httpx.Client(base_url=web_url, headers=auth(token), timeout=30) as client:
        body: dict[str, str] = {}
        if sale.pow_difficulty:
            challenge = client.post(f"/api/sales/{sale.pk}/challenge/").json()
            body = {
                "challenge": challenge["challenge"],
                "solution": solve(challenge["challenge"], challenge["difficulty"]),
            }
        answer = client.post(f"/api/sales/{sale.pk}/queue/", json=body)
    assert answer.status_code == 201, answer.text
    return Joined(answer.json()["number"], token, answer.json()["pass"])


def numbers(joined: list[Joined]) -> list[int]:
    return [shopper.number for shopper in joined]


def buy_in_turn(web_url: str, sale: FlashSale, shopper: Joined) -> None:
    """Buy with the pass as soon as the sale opens and the line lets the shopper in (a client
    following NOT_YOUR_TURN's Retry-After would wait longer)."""
    answers: list[dict[str, Any]] = []

    def bought() -> bool:
        answer = httpx.post(
            f"{web_url}/api/sales/{sale.pk}/purchase/",
            json={"pass": shopper.queue_pass},
            headers=auth(shopper.token),
            timeout=30,
        )
        answers.append(answer.json())
        return answers[-1]["status"] not in ("NOT_STARTED", "NOT_YOUR_TURN")

    wait_for(bought, what="the shopper's turn", timeout=SLOW / 1000, interval=0.1)
    assert answers[-1]["status"] == "SUCCESS", answers[-1]


class Shoppers:
    """Shoppers each logged in in a browser of their own, on one web process."""

    def __init__(self, browser: Browser, base_url: str) -> None:
        self.browser = browser
        self.base_url = base_url
        self.contexts: list[BrowserContext] = []
        self.errors: list[str] = []

    def page(self, username: str) -> Page:
        make_user(username=username)
        context = self.browser.new_context(base_url=self.base_url, viewport={"width": 1100, "height": 900})
        context.set_default_timeout(SLOW)
        self.contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: self.errors.append(f"{username}: {error}"))
        log_in(page, username)
        return page

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.fixture
def shoppers(browser: Browser, storefront_stack: Stack) -> Iterator[Shoppers]:
    """Any JavaScript error on a shopper's page fails the test."""
    crowd = Shoppers(browser, storefront_stack.url)
    yield crowd
    crowd.close()
    assert crowd.errors == [], "JavaScript errors on the pages"


# What a screen reader hears: every change of the waiting room's live region.
HEARD = """() => {
    const node = document.querySelector("[data-queue-status]");
    window.heard = [];
    new MutationObserver(() => window.heard.push(node.textContent)).observe(
        node, {childList: true, characterData: true, subtree: true});
}"""
# The nearest live region around the wait, if any (the wait changes every second).
LIVE_AROUND_THE_WAIT = """() => {
    const region = document.querySelector("[data-queue-eta]").closest("[aria-live], [role=status]");
    return region !== null && region.getAttribute("aria-live") !== "off";
}"""


def join_in_the_browser(page: Page) -> None:
    expect(page.locator("[data-queue-status]")).to_have_text(
        "Join the line to get your number. Shoppers are let in by number, in order."
    )
    page.get_by_role("button", name="Join the line").click()


def test_two_shoppers_see_their_places_the_line_moves_and_the_first_in_line_buys_first(
    shoppers: Shoppers, storefront_stack: Stack
) -> None:
    # Given a queue-mode sale opening in an hour, its line open already, letting in one place
    # a second and asking the join for a proof of work
    ivy, jay = shoppers.page("ivy"), shoppers.page("jay")
    sale = make_sale(
        stock=5,
        starts_in=3600,
        admission=Admission.QUEUE,
        serving_rate=1,
        pre_queue_opens_at=timezone.now() - timedelta(seconds=1),
        pow_difficulty=8,
    )
    # And three shoppers in the line before Ivy
    assert numbers([join_through_the_api(storefront_stack.url, sale) for _ in range(3)]) == [1, 2, 3]

    # When Ivy joins from her browser
    open_sale(ivy, sale)
    ivy.evaluate(HEARD)
    expect(ivy.locator("[data-buy]")).to_be_hidden()
    screenshot(ivy, "16-queue-join")
    join_in_the_browser(ivy)

    # Then she sees her place, who is ahead of her and her wait, and Buy waits for her turn
    expect(ivy.locator("[data-queue-position]")).to_have_text("4")
    expect(ivy.locator("[data-queue-ahead]")).to_have_text("3")
    expect(ivy.locator("[data-queue-status]")).to_have_text(
        "You are number 4. The line starts moving when the sale opens."
    )
    expect(ivy.locator("[data-queue-eta]")).to_have_text(re.compile(r"^about \d+ (h|min|s)"))
    expect(ivy.locator("[data-buy]")).to_be_disabled()

    # When five more shoppers join, then Jay from his browser
    assert numbers([join_through_the_api(storefront_stack.url, sale) for _ in range(5)]) == [5, 6, 7, 8, 9]
    open_sale(jay, sale)
    join_in_the_browser(jay)

    # Then Jay sees his own place, behind all nine, and the line's size on both pages
    expect(jay.locator("[data-queue-position]")).to_have_text("10")
    expect(jay.locator("[data-queue-ahead]")).to_have_text("9")
    for page in (ivy, jay):
        expect(page.locator("[data-queue-line]")).to_have_text("0 let in · 10 waiting · 1 a second")
    # And a reload keeps his place: no second number, no Join button
    jay.reload()
    expect(jay.locator("[data-connection]")).to_have_text("Live updates on")
    expect(jay.locator("[data-queue-position]")).to_have_text("10")
    expect(jay.locator("[data-join]")).to_be_hidden()
    jay.evaluate("window.sameDocument = true")
    screenshot(jay, "17-queue-pre-queue")
    for page in (ivy, jay):
        page.evaluate(BUY_TURNED_ON_AT)

    # When the sale opens: the operator moves its start to a few seconds from now
    move_start(sale, seconds_from_now=3)

    # Then the line moves on both pages: places are let in, fewer are ahead, the waits count down
    for page in (ivy, jay):
        expect(page.locator("[data-queue-line]")).to_have_text(re.compile(r"^[1-9]\d* let in"))
    expect(ivy.locator("[data-queue-ahead]")).to_have_text(re.compile(r"^[0-2]$"))
    wait = jay.locator("[data-queue-eta]")
    expect(wait).to_have_text(re.compile(r"^about \d+ s$"))
    first_wait = wait.inner_text()
    expect(wait).not_to_have_text(first_wait)
    expect(jay.locator("[data-queue-status]")).to_have_text(
        "You are in the line, at place 10. Buy turns on when your turn comes."
    )
    screenshot(jay, "18-queue-waiting")

    # And Ivy is let in first: her Buy turns on and she buys
    ivy_buy = ivy.locator("[data-buy]")
    expect(ivy_buy).to_be_enabled()
    expect(ivy.locator("[data-queue-status]")).to_have_text("It's your turn: buy now.")
    screenshot(ivy, "19-queue-your-turn")
    ivy_buy.click()
    expect(ivy.locator("[data-result]")).to_contain_text("Order confirmed")
    screenshot(ivy, "20-queue-bought")

    # And then Jay, in his turn
    jay_buy = jay.locator("[data-buy]")
    expect(jay_buy).to_be_enabled()
    jay_buy.click()
    expect(jay.locator("[data-result]")).to_contain_text("Order confirmed")

    # And Ivy's Buy turned on before Jay's did: while she was let in, he still waited
    ivy_on, jay_on = ivy.evaluate("window.buyTurnedOnAt"), jay.evaluate("window.buyTurnedOnAt")
    assert ivy_on < jay_on
    assert same_document(ivy) and same_document(jay)

    # And a screen reader heard Ivy's status once per change of state, while her wait, which
    # changed every second, is in no live region
    heard = ivy.evaluate("window.heard")
    assert heard[0] == "Joining the line..."
    assert heard[-2:] == ["It's your turn: buy now.", "You have this sale's unit."]
    assert len(heard) <= 6, heard
    assert all(before != after for before, after in itertools.pairwise(heard)), heard
    assert ivy.evaluate(LIVE_AROUND_THE_WAIT) is False


def test_a_shopper_waiting_in_the_line_hears_at_once_that_it_sold_out(
    shoppers: Shoppers, storefront_stack: Stack
) -> None:
    # Given a queue-mode sale of one unit, its line open before the start, one shopper in it
    # before Kim, who waits on the sale's page
    kim = shoppers.page("kim")
    sale = make_sale(
        stock=1,
        starts_in=3600,
        admission=Admission.QUEUE,
        serving_rate=1,
        pre_queue_opens_at=timezone.now() - timedelta(seconds=1),
    )
    first = join_through_the_api(storefront_stack.url, sale)
    open_sale(kim, sale)
    join_in_the_browser(kim)
    expect(kim.locator("[data-queue-position]")).to_have_text("2")

    # When the sale opens and the first in line buys the only unit
    move_start(sale, seconds_from_now=2)
    buy_in_turn(storefront_stack.url, sale, first)

    # Then Kim's page says so by itself, stops waiting and turns nothing on
    expect(kim.locator("[data-queue-status]")).to_have_text("Sold out: the line has closed.")
    expect(kim.locator("[data-status]")).to_have_text("Sold out")
    expect(kim.locator("[data-queue-place]")).to_be_hidden()
    expect(kim.locator("[data-join]")).to_be_hidden()
    buy = kim.locator("[data-buy]")
    expect(buy).to_have_text("Sold out")
    expect(buy).to_be_disabled()
    assert same_document(kim)
    screenshot(kim, "21-queue-sold-out")


TURN_SECONDS = 2


@pytest.fixture
def short_turns_web(storefront_stack: Stack, collected_static: Any) -> Iterator[ChildProcess]:
    """A web process whose turns last two seconds' serving."""
    child = start_web(
        workers=1,
        env={
            **OPEN_ADMISSION,
            "FLASHSALE_QUEUE_TURN_SECONDS": str(TURN_SECONDS),
            "FLASHSALE_WS_URL": storefront_stack.ws_url,
        },
        static_root=collected_static,
    )
    yield child
    child.stop()


def test_a_turn_that_passed_says_so_and_the_shopper_joins_again_at_the_back(
    browser: Browser, short_turns_web: ChildProcess
) -> None:
    # Given Lee first in the line of a queue-mode sale letting in five places a second, with
    # twelve shoppers behind him and turns of two seconds' serving
    crowd = Shoppers(browser, short_turns_web.url)
    try:
        lee = crowd.page("lee")
        sale = make_sale(
            stock=50,
            starts_in=3600,
            admission=Admission.QUEUE,
            serving_rate=5,
            pre_queue_opens_at=timezone.now() - timedelta(seconds=1),
        )
        open_sale(lee, sale)
        join_in_the_browser(lee)
        expect(lee.locator("[data-queue-position]")).to_have_text("1")
        assert numbers([join_through_the_api(short_turns_web.url, sale) for _ in range(12)]) == list(range(2, 14))

        # When the sale opens and Lee lets his turn go by
        move_start(sale, seconds_from_now=1)

        # Then his page says the turn passed and offers to join again
        status = lee.locator("[data-queue-status]")
        expect(status).to_have_text("Your turn passed. Join the line again for a new place at the back.")
        expect(lee.locator("[data-buy]")).to_be_hidden()
        screenshot(lee, "22-queue-turn-passed")

        # And joining again gives him a new place at the back, whose turn comes and buys
        lee.get_by_role("button", name="Join the line again").click()
        expect(lee.locator("[data-queue-position]")).to_have_text("14")
        expect(lee.locator("[data-buy]")).to_be_enabled()
        lee.locator("[data-buy]").click()
        expect(lee.locator("[data-result]")).to_contain_text("Order confirmed")
    finally:
        crowd.close()
    assert crowd.errors == []


def test_a_page_open_when_the_operator_switches_the_sale_to_queue_mode_shows_the_line(
    shoppers: Shoppers,
) -> None:
    # Given a shopper on the page of a sale that admits directly and opens in an hour
    max_ = shoppers.page("max")
    sale = make_sale(stock=5, starts_in=3600)
    open_sale(max_, sale)
    expect(max_.locator("[data-queue]")).to_be_hidden()
    expect(max_.locator("[data-buy]")).to_be_visible()

    # When the operator switches it to queue mode, its line open from now
    sale.admission = Admission.QUEUE
    sale.serving_rate = 1
    sale.pre_queue_opens_at = timezone.now() - timedelta(seconds=1)
    sale_update(sale=sale)

    # Then the page shows the waiting room by itself, and the shopper joins the line
    expect(max_.locator("[data-queue]")).to_be_visible()
    expect(max_.locator("[data-buy]")).to_be_hidden()
    join_in_the_browser(max_)
    expect(max_.locator("[data-queue-position]")).to_have_text("1")
    assert same_document(max_)


def test_the_pages_arithmetic_of_a_place_follows_the_contract(browser: Browser, storefront_stack: Stack) -> None:
    # Places ahead are position - served - 1, the wait (position - served) / rate, counted
    # down since the line was heard, and the progress runs from the join to the turn
    context = browser.new_context(base_url=storefront_stack.url)
    try:
        page = context.new_page()
        page.goto("/")
        got = page.evaluate(
            """async () => {
                const room = await import("/static/storefront/waiting-room.js");
                const place = {position: 42, toTurnAtJoin: 40};
                const at = (served, rate, since = 0, untilStart = 0) => room.standing(
                    {place, line: {served, rate}, sinceLineSeconds: since, untilStartSeconds: untilStart});
                return {
                    waiting: at(24, 2), later: at(24, 2, 3), opening: at(0, 2, 0, 60), stopped: at(24, 0),
                    next: at(41, 2), in: at(42, 2), past: at(50, 2),
                    waits: [0, 12.2, 185, 3725].map(room.formatWait),
                };
            }"""
        )
    finally:
        context.close()
    assert got["waiting"] == {"ahead": 17, "admitted": False, "eta": 9, "progress": 1 - 18 / 40}
    assert got["later"]["eta"] == 6
    assert (got["opening"]["ahead"], got["opening"]["eta"], got["opening"]["progress"]) == (41, 81, 0)
    assert (got["stopped"]["eta"], got["next"]["ahead"], got["next"]["eta"]) == (None, 0, 0.5)
    assert got["in"] == got["past"] == {"ahead": 0, "admitted": True, "eta": 0, "progress": 1}
    assert got["waits"] == ["0 s", "13 s", "3 min 05 s", "1 h 02 min"]
