"""What the operator sees of a queue-mode sale's line (docs/observability.md, "The waiting
room"): its length, the serving counter and rate, the admitted places not used yet and the
abandoned ones, the same in ``/metrics`` and in the admin's live panel, counted by one
read-only script call on real Redis."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

import pytest
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper

from core.process_state import forget_process_state
from core.redis_store import inventory_redis
from sales import inventory, keys, line
from sales.models import Admission, FlashSale
from sales.selectors import sale_line_counts
from sales.services import sale_update
from tests.factories import auth, make_sale, make_shoppers
from tests.polling import wait_for

from .scraping import Scrape

pytestmark = pytest.mark.django_db

TURN_SECONDS = 2
LINE_GAUGES = (
    "flash_sale_queue_joined",
    "flash_sale_queue_waiting",
    "flash_sale_queue_served",
    "flash_sale_queue_admitted",
    "flash_sale_queue_admitted_unused",
    "flash_sale_queue_abandoned",
    "flash_sale_queue_rate_per_second",
    "flash_sale_queue_window_open",
)


@pytest.fixture(autouse=True)
def short_turns(settings: SettingsWrapper) -> None:
    """A turn of two seconds' serving, and no Celery worker to ping during a scrape."""
    settings.FLASHSALE_QUEUE_TURN_SECONDS = TURN_SECONDS
    settings.METRICS_CELERY_PING_SECONDS = 0


def _join(client: Client, sale_id: int, token: str) -> dict[str, Any]:
    answer = client.post(f"/api/sales/{sale_id}/queue/", "{}", content_type="application/json", headers=auth(token))
    assert answer.status_code == 201, answer.content
    return dict(answer.json())


def _buy(client: Client, sale_id: int, token: str, queue_pass: str) -> None:
    """Buy once the shopper's turn has come."""

    def admitted() -> bool:
        place = client.get(f"/api/sales/{sale_id}/queue/", headers={**auth(token), "Queue-Pass": queue_pass})
        return bool(place.json()["status"] == "admitted")

    wait_for(admitted, what="the shopper's turn", timeout=30)
    answer = client.post(
        f"/api/sales/{sale_id}/purchase/",
        {"pass": queue_pass},
        content_type="application/json",
        headers=auth(token),
    )
    assert answer.status_code == 201, answer.content


def _scrape(client: Client) -> Scrape:
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 200
    return Scrape.parse(response.content.decode())


def _stop_the_line(sale: FlashSale, *, serving_rate: int, served: float) -> None:
    """End the sale now and stand its counter at ``served``: nothing moves it after the end,
    so every count is exact however long the test takes."""
    sale.ends_at = timezone.now()
    sale.serving_rate = serving_rate
    sale_update(sale=sale)
    meta = inventory.sale_meta(sale.pk)
    assert meta is not None
    inventory_redis().hset(keys.line_state_key(sale.pk), mapping={"served": served, "at_ms": meta.ends_at_ms})


def test_the_lines_counts_are_exact_in_metrics_and_in_the_admin(client: Client, admin_client: Client) -> None:
    # Given 40 shoppers in a queue-mode sale's line, in order, and the 3rd, 15th and 20th
    # bought (the 20th's unit then went back: a purchase all the same)
    sale = make_sale(admission=Admission.QUEUE, stock=10, serving_rate=100)
    shoppers = make_shoppers(40)
    passes = [_join(client, sale.pk, token)["pass"] for _, token in shoppers]
    for number in (3, 15, 20):
        _buy(client, sale.pk, shoppers[number - 1][1], passes[number - 1])
    user_20 = shoppers[19][0]
    assert inventory.unit_release(
        sale_id=sale.pk, user_id=user_20, order_id=inventory.sale_buyers(sale.pk)[user_20]
    ).returned

    # When the line stands at 25 served, 5 a second (a turn: 5 x 2 s = 10 places)
    _stop_the_line(sale, serving_rate=5, served=25.0)
    scraped = _scrape(client)
    page = admin_client.get(f"/admin/sales/flashsale/{sale.pk}/change/").content.decode()

    # Then 15 wait (26-40); 25 were let in: 1-15 had their turn pass (15 just: 25 - 15 is a
    # turn), 13 of them without a purchase; 16-25 are still in their turn, 9 not bought yet
    label = str(sale.pk)
    assert {name: scraped.value(name, sale=label) for name in LINE_GAUGES} == {
        "flash_sale_queue_joined": 40,
        "flash_sale_queue_waiting": 15,
        "flash_sale_queue_served": 25.0,
        "flash_sale_queue_admitted": 25,
        "flash_sale_queue_admitted_unused": 9,
        "flash_sale_queue_abandoned": 13,
        "flash_sale_queue_rate_per_second": 5,
        "flash_sale_queue_window_open": 0,
    }
    assert all(scraped.types[name] == "gauge" for name in LINE_GAUGES)
    # ... and the admin's live panel shows the same line, with the joins the processes counted
    for row in (
        "<th>Line: numbers given</th><td>40</td>",
        "<th>Line: waiting (still to be let in)</th><td>15</td>",
        "<th>Line: serving counter</th><td>25.0 (still: the window is closed; measured 0/s)</td>",
        "<th>Line: admitted</th><td>25</td>",
        "<th>Line: admitted, not bought, turn not passed</th><td>9</td>",
        "<th>Line: abandoned (turn passed, no purchase)</th><td>13</td>",
    ):
        assert row in page, row
    assert "<th>Joins: new places</th>" in page


@pytest.mark.parametrize(
    ("serving_rate", "served"),
    [
        (4, 17.0),  # the turn's edge (9) and the counter inside the pre-queue
        (4, 40.0),  # the whole pre-queue's turn passed (edge 32)
        (20, 35.0),  # the whole pre-queue let in and in its turn (a turn of 40 places)
    ],
)
def test_a_shuffled_pre_queue_is_counted_by_position_not_by_number(
    client: Client, serving_rate: int, served: float
) -> None:
    # Given 30 shoppers in a shuffled pre-queue, the sale started, 10 more who joined after
    # the start, and some of the pre-queue bought
    sale = make_sale(
        admission=Admission.QUEUE,
        stock=20,
        serving_rate=100,
        starts_in=3600,
        pre_queue_opens_at=timezone.now() - timedelta(seconds=1),
        shuffle_pre_queue=True,
    )
    shoppers = make_shoppers(40)
    passes = [_join(client, sale.pk, token)["pass"] for _, token in shoppers[:30]]
    sale.starts_at = timezone.now()
    sale_update(sale=sale)
    forget_process_state()  # This process's model of the sale: read again, started.
    passes += [_join(client, sale.pk, token)["pass"] for _, token in shoppers[30:]]
    # (six numbers within the first 17 whose shuffled place is not, whose purchases counted
    # by number would land on the other side of the counter; three whose place is)
    seed = inventory.line_state(sale.pk)["seed"]
    places = {n: line.position(seed=seed, pre_queue=30, number=n) for n in range(1, 31)}
    moved_back = [n for n in range(1, 18) if places[n] > 17]
    kept = [n for n in range(1, 31) if places[n] <= 17]
    assert moved_back
    for number in [*moved_back[:6], *kept[:3], 31, 35]:
        _buy(client, sale.pk, shoppers[number - 1][1], passes[number - 1])

    # When the line stands still at ``served``
    _stop_the_line(sale, serving_rate=serving_rate, served=served)
    counts = sale_line_counts(sale.pk)

    # Then the counts are those of each shopper's place worked out one by one, by position
    state = inventory.line_state(sale.pk)
    assert int(state["pre_queue"]) == 30
    bought = set(inventory.sale_buyers(sale.pk))
    expected = {"unused": 0, "abandoned": 0}
    line_hash = cast(dict[str, str], inventory_redis().hgetall(keys.line_key(sale.pk)))
    for user, held in line_hash.items():
        position = line.position(seed=seed, pre_queue=30, number=int(held))
        if position > served or int(user) in bought:
            continue
        passed = line.turn_passed(
            position_in_line=position, served=served, rate=float(serving_rate), turn_seconds=TURN_SECONDS
        )
        expected["abandoned" if passed else "unused"] += 1
    assert counts is not None
    admitted = min(40, int(served))
    assert (counts.joined, counts.admitted, counts.waiting) == (40, admitted, 40 - admitted)
    assert {"unused": counts.admitted_unused, "abandoned": counts.abandoned} == expected


def test_a_line_of_100000_places_and_5000_holders_is_counted_in_one_call(client: Client) -> None:
    # Given a line of 100,000 places (written straight into Redis as join.lua would), 60,000
    # let in at 10 a second (a turn of 20 places), and 5,000 holders spread along it
    sale = make_sale(admission=Admission.QUEUE, stock=10_000, serving_rate=10)
    users = list(range(1, 100_001))
    holders = users[::20]
    redis = inventory_redis()
    with redis.pipeline(transaction=False) as pipe:
        for first in range(0, len(users), 10_000):
            pipe.hset(keys.line_key(sale.pk), mapping={user: user for user in users[first : first + 10_000]})
        pipe.hset(keys.buyers_key(sale.pk), mapping={user: f"order-{user}" for user in holders})
        pipe.decrby(keys.stock_key(sale.pk), len(holders))
        pipe.hset(keys.line_state_key(sale.pk), "joined", len(users))
        pipe.execute()

    # When the line stands at 60,000.5 served
    _stop_the_line(sale, serving_rate=10, served=60_000.5)
    counts = sale_line_counts(sale.pk)

    # Then places 1-59,980 had their turn pass (2,999 of their holders bought), 59,981-60,000
    # are in their turn (one holder: 59,981, 19.5 places short of a turn behind the counter)
    assert counts is not None
    assert (counts.joined, counts.admitted, counts.waiting) == (100_000, 60_000, 40_000)
    assert counts.abandoned == 59_980 - 2_999
    assert counts.admitted_unused == 20 - 1


def test_a_line_with_no_rate_stands_still_while_stock_is_left_and_the_gauges_say_so(client: Client) -> None:
    # Given a live queue-mode sale whose rate is auto from the units left, but whose crowd
    # factor is 0 (an operator's slip): nothing lets the line in
    sale = make_sale(admission=Admission.QUEUE, stock=10, serving_rate=None, crowd_factor=0)
    for _, token in make_shoppers(12):
        assert _join(client, sale.pk, token)["status"] == "waiting"

    # When Prometheus scrapes twice
    first, second = _scrape(client), _scrape(client)

    # Then twelve wait, nobody is let in, the window is open and the stock is all there: the
    # inputs of FlashSaleQueueStalled (deploy/prometheus/alerts.yml)
    label = str(sale.pk)
    for scraped in (first, second):
        assert scraped.value("flash_sale_queue_waiting", sale=label) == 12
        assert scraped.value("flash_sale_queue_admitted", sale=label) == 0
        assert scraped.value("flash_sale_queue_rate_per_second", sale=label) == 0
        assert scraped.value("flash_sale_queue_window_open", sale=label) == 1
        assert scraped.value("flash_sale_stock_remaining", sale=label) == 10


def test_a_direct_sale_has_no_line_in_metrics_or_in_the_admin(client: Client, admin_client: Client) -> None:
    sale = make_sale(stock=5)
    scraped = _scrape(client)
    page = admin_client.get(f"/admin/sales/flashsale/{sale.pk}/change/").content.decode()
    assert scraped.value("flash_sale_stock_remaining", sale=str(sale.pk)) == 5
    assert scraped.series("flash_sale_queue_waiting") == {}
    assert sale_line_counts(sale.pk) is None
    assert "Line:" not in page
