"""The waiting room through the real server: a queue-mode sale gives every arrival a place,
lets them in by number at its serving rate, and refuses a purchase without its turn
(docs/design.md, "The waiting room")."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.utils import timezone
from redis.commands.core import Script

from core.redis_store import inventory_redis
from sales import inventory, keys, line
from sales.models import Admission
from sales.services import sale_update
from tests.clients import purchase
from tests.factories import auth, make_sale, make_shoppers
from tests.polling import wait_for
from tests.processes import OPEN_ADMISSION, ChildProcess, start_web

pytestmark = pytest.mark.django_db(transaction=True)

TURN_SECONDS = 2
LINE_LUA = Path(inventory.__file__).resolve().parent / "lua" / "line.lua"


@pytest.fixture(scope="module")
def line_server(django_db_setup: None) -> Iterator[ChildProcess]:
    """granian as make run runs it, windows off, a turn of two seconds' serving."""
    child = start_web(env={**OPEN_ADMISSION, "FLASHSALE_QUEUE_TURN_SECONDS": str(TURN_SECONDS)})
    yield child
    child.stop()


def _join(server: ChildProcess, sale_id: int, token: str, body: bytes = b"{}") -> httpx.Response:
    return httpx.post(
        f"{server.url}/api/sales/{sale_id}/queue/",
        content=body,
        headers={**auth(token), "Content-Type": "application/json"},
        timeout=30,
    )


def _place(server: ChildProcess, sale_id: int, token: str, queue_pass: str | None = None) -> httpx.Response:
    headers = {**auth(token), **({"Queue-Pass": queue_pass} if queue_pass else {})}
    return httpx.get(f"{server.url}/api/sales/{sale_id}/queue/", headers=headers, timeout=30)


def _queued_sale(**fields: Any) -> Any:
    return make_sale(admission=Admission.QUEUE, **fields)


def test_a_shopper_joins_once_and_hears_the_same_place_again(line_server: ChildProcess) -> None:
    sale = _queued_sale(stock=5, serving_rate=1, starts_in=-1)
    (_, token), *_ = make_shoppers(1)

    joined = _join(line_server, sale.pk, token)
    again = _join(line_server, sale.pk, token)
    read_here = _place(line_server, sale.pk, token, joined.json()["pass"])
    read_there = _place(line_server, sale.pk, token)

    assert joined.status_code == 201
    assert again.status_code == read_here.status_code == read_there.status_code == 200
    body = joined.json()
    assert set(body) == {
        "number", "position", "ahead", "served", "eta_seconds", "rate_per_second", "pass", "status", "receipt"
    }  # fmt: skip
    assert all("receipt" not in other.json() for other in (again, read_here, read_there))
    assert body["number"] == body["position"] == 1
    for other in (again.json(), read_here.json(), read_there.json()):
        assert (other["number"], other["pass"]) == (1, body["pass"])


def test_numbers_are_unique_gap_free_and_in_arrival_order(line_server: ChildProcess) -> None:
    # Given 300 shoppers joining at once over 30 connections
    sale = _queued_sale(stock=5, serving_rate=1, starts_in=3600)
    shoppers = make_shoppers(300)

    async def crowd() -> list[int]:
        limits = httpx.Limits(max_connections=30)
        async with httpx.AsyncClient(base_url=line_server.url, limits=limits, timeout=30) as client:
            answers = await asyncio.gather(
                *(
                    client.post(f"/api/sales/{sale.pk}/queue/", content=b"{}", headers=auth(token))
                    for _, token in shoppers
                )
            )
        assert {answer.status_code for answer in answers} == {201}
        return [answer.json()["number"] for answer in answers]

    numbers = asyncio.run(crowd())

    # Then every one has a place, none shared, none skipped, and the line says so
    assert sorted(numbers) == list(range(1, 301))
    assert inventory_redis().hget(keys.line_state_key(sale.pk), "joined") == "300"
    assert len(inventory_redis().hgetall(keys.line_key(sale.pk))) == 300  # type: ignore[arg-type]


def test_a_purchase_waits_for_its_turn_then_wins(line_server: ChildProcess) -> None:
    # Given a line let in at two places a second, and the fifth shopper in it
    sale = _queued_sale(stock=10, serving_rate=2, starts_in=1)
    shoppers = make_shoppers(5)
    passes = [_join(line_server, sale.pk, token).json()["pass"] for _, token in shoppers]
    _, fifth = shoppers[-1]

    def started() -> bool:
        return _place(line_server, sale.pk, fifth, passes[-1]).json()["status"] != "pre_queue"

    wait_for(started, what="the sale's start", timeout=30, interval=0.1)
    early = purchase(line_server, sale.pk, fifth, {"pass": passes[-1]})

    # Then before the counter reaches them they hear NOT_YOUR_TURN with a wait
    assert early.status_code == 409
    assert early.json()["status"] == "NOT_YOUR_TURN"
    assert int(early.headers["Retry-After"]) >= 1

    # And once it has, they buy
    seen: list[dict[str, Any]] = []

    def admitted() -> bool:
        seen.append(_place(line_server, sale.pk, fifth, passes[-1]).json())
        return seen[-1]["status"] == "admitted"

    try:
        wait_for(admitted, what="the fifth place's turn", timeout=30, interval=0.1)
    except AssertionError as error:
        raise AssertionError(f"{error}; last heard {seen[-1]}") from None
    assert purchase(line_server, sale.pk, fifth, {"pass": passes[-1]}).status_code == 201


@pytest.mark.parametrize(
    ("pass_of", "reason"),
    [
        ("nobody", "missing"),
        ("forged", "forged"),
        ("another sale", "wrong sale"),
        ("another shopper", "wrong user"),
    ],
)
def test_a_purchase_without_a_good_pass_is_refused_and_changes_nothing(
    line_server: ChildProcess, pass_of: str, reason: str
) -> None:
    sale = _queued_sale(stock=5, serving_rate=100)
    other = _queued_sale(stock=5, serving_rate=100)
    (_, token), (_, stranger) = make_shoppers(2)
    mine = _join(line_server, sale.pk, token).json()["pass"]
    body = {
        "nobody": {},
        "forged": {"pass": mine[:-2] + ("AA" if not mine.endswith("AA") else "BB")},
        "another sale": {"pass": _join(line_server, other.pk, token).json()["pass"]},
        "another shopper": {"pass": _join(line_server, sale.pk, stranger).json()["pass"]},
    }[pass_of]

    answer = purchase(line_server, sale.pk, token, body)

    assert answer.status_code == 403
    assert answer.json()["status"] == "QUEUE_PASS_INVALID"
    assert answer.json()["detail"].startswith(reason)
    assert inventory.sale_counts(sale.pk).remaining == 5


def test_a_turn_not_used_passes_and_the_shopper_may_join_again_at_the_back(line_server: ChildProcess) -> None:
    # Given 60 shoppers in a line let in at 20 a second, and the first one, who does not buy
    sale = _queued_sale(stock=100, serving_rate=20, starts_in=3600)
    shoppers = make_shoppers(60)
    passes = [_join(line_server, sale.pk, token).json()["pass"] for _, token in shoppers]
    sale.starts_at = timezone.now()
    sale_update(sale=sale)
    _, first = shoppers[0]

    # When the line moves on past their turn (20 places a second for 2 s)
    def passed() -> bool:
        return _place(line_server, sale.pk, first).json()["status"] == "turn_passed"

    wait_for(passed, what="the first turn to pass", timeout=30, interval=0.1)
    late = purchase(line_server, sale.pk, first, {"pass": passes[0]})
    rejoined = _join(line_server, sale.pk, first)

    # Then their pass no longer buys, and joining again puts them at the back
    assert late.status_code == 403
    assert late.json()["detail"].startswith("expired")
    assert rejoined.status_code == 201
    assert rejoined.json()["number"] == 61
    # And the old pass stays refused (its turn passed; the line holds a newer place of theirs)
    old = purchase(line_server, sale.pk, first, {"pass": passes[0]}).json()
    assert old["status"] == "QUEUE_PASS_INVALID"
    assert old["detail"].startswith(("expired", "stale"))


def test_a_buyer_needs_no_place_and_hears_their_order(line_server: ChildProcess) -> None:
    sale = _queued_sale(stock=5, serving_rate=100)
    (_, token), *_ = make_shoppers(1)
    queue_pass = _join(line_server, sale.pk, token).json()["pass"]
    wait_for(lambda: _place(line_server, sale.pk, token, queue_pass).json()["status"] == "admitted", what="a turn")
    won = purchase(line_server, sale.pk, token, {"pass": queue_pass}).json()

    again = _join(line_server, sale.pk, token)

    assert (again.status_code, again.json()["status"]) == (409, "ALREADY_PURCHASED")
    assert again.json()["order_id"] == won["order_id"]


def test_a_line_that_is_not_open_or_not_needed_says_so(line_server: ChildProcess) -> None:
    direct = make_sale(stock=5)
    later = _queued_sale(stock=5, starts_in=3600, pre_queue_opens_at=timezone.now() + timedelta(seconds=600))
    sold = _queued_sale(stock=1, serving_rate=100)
    (_, token), (_, buyer) = make_shoppers(2)
    won = _join(line_server, sold.pk, buyer).json()["pass"]
    wait_for(lambda: _place(line_server, sold.pk, buyer, won).json()["status"] == "admitted", what="a turn")
    assert purchase(line_server, sold.pk, buyer, {"pass": won}).status_code == 201

    not_queued = _join(line_server, direct.pk, token)
    not_open = _join(line_server, later.pk, token)
    sold_out = _join(line_server, sold.pk, token)

    assert (not_queued.status_code, not_queued.json()["status"]) == (409, "SALE_NOT_QUEUED")
    assert (not_open.status_code, not_open.json()["status"]) == (409, "QUEUE_NOT_OPEN")
    assert 590 <= int(not_open.headers["Retry-After"]) <= 601
    assert (sold_out.status_code, sold_out.json()["status"]) == (409, "SOLD_OUT")


def test_a_shuffled_pre_queue_is_ordered_by_the_seed_it_committed_to(line_server: ChildProcess) -> None:
    # Given a sale whose pre-queue opened early and is shuffled at the start
    sale = _queued_sale(
        stock=5,
        serving_rate=1,
        starts_in=3600,
        pre_queue_opens_at=timezone.now() - timedelta(seconds=1),
        shuffle_pre_queue=True,
    )
    shoppers = make_shoppers(40)
    early = [_join(line_server, sale.pk, token).json() for _, token in shoppers]
    assert {place["status"] for place in early} == {"pre_queue"}
    commitment = inventory.sale_meta(sale.pk).shuffle_commitment  # type: ignore[union-attr]
    published = httpx.get(f"{line_server.url}/api/sales/{sale.pk}/", timeout=30).json()
    assert (published["shuffle_commitment"], published["shuffle_seed"]) == (commitment, "")

    # When the sale starts
    sale.starts_at = timezone.now()
    sale_update(sale=sale)

    def ordered() -> bool:
        return _place(line_server, sale.pk, shoppers[0][1]).json()["status"] != "pre_queue"

    wait_for(ordered, what="the start", timeout=30, interval=0.1)
    places = {
        place["number"]: _place(line_server, sale.pk, token).json()["position"]
        for place, (_, token) in zip(early, shoppers, strict=True)
    }

    # Then the order is the seed's permutation, and the seed is the one committed to
    seed = inventory.line_state(sale.pk)["seed"]
    assert hashlib.sha256(seed.encode()).hexdigest() == commitment
    revealed = httpx.get(f"{line_server.url}/api/sales/{sale.pk}/", timeout=30).json()
    assert (revealed["shuffle_commitment"], revealed["shuffle_seed"]) == (commitment, seed)
    assert sorted(places.values()) == list(range(1, 41))
    assert places == {number: line.position(seed=seed, pre_queue=40, number=number) for number in places}
    assert list(places.values()) != sorted(places.values())


def test_the_scripts_permutation_is_the_one_anyone_can_compute() -> None:
    # purchase.lua and join.lua place a shuffled pre-queue with line.lua; sales/line.py (and
    # any verifier) with Python. A probe after line.lua returns its answer for each number.
    probe = Script(
        None,  # type: ignore[arg-type]
        LINE_LUA.read_bytes()
        + b"local out = {} for n = 1, tonumber(ARGV[2]) do out[n] = line_position(ARGV[1], tonumber(ARGV[2]), n) end"
        + b" return out",
    )
    lua = probe([], ["d" * 64, 257], client=inventory_redis())
    assert lua == [line.position(seed="d" * 64, pre_queue=257, number=n) for n in range(1, 258)]


def test_the_admission_mode_reaches_a_loaded_sale_within_seconds(line_server: ChildProcess) -> None:
    sale = make_sale(stock=5)
    (_, token), *_ = make_shoppers(1)
    assert _join(line_server, sale.pk, token).json()["status"] == "SALE_NOT_QUEUED"

    sale.admission = Admission.QUEUE
    sale.serving_rate = 10
    sale_update(sale=sale)

    wait_for(lambda: _join(line_server, sale.pk, token).status_code in (200, 201), what="queue mode", timeout=10)
    assert purchase(line_server, sale.pk, token).json()["status"] == "QUEUE_PASS_INVALID"


def test_the_measured_rate_is_never_above_the_serving_rate_from_the_first_window_on(line_server: ChildProcess) -> None:
    # Given a line served at 10 a second that opened long before anyone came: its first
    # advance lets up to a second's arrivals straight in (the counter steps to joined + 10)
    rate = 10
    sale = _queued_sale(stock=5, serving_rate=rate, starts_in=-30)
    shoppers = make_shoppers(61)

    async def crowd(tokens: list[str]) -> None:
        async with httpx.AsyncClient(base_url=line_server.url, timeout=30) as client:
            answers = await asyncio.gather(
                *(client.post(f"/api/sales/{sale.pk}/queue/", content=b"{}", headers=auth(token)) for token in tokens)
            )
        assert {answer.status_code for answer in answers} == {201}

    # When 60 join at once, and one more once the first window (two seconds) has closed
    asyncio.run(crowd([token for _, token in shoppers[:60]]))
    state = inventory_redis().hgetall(keys.line_state_key(sale.pk))
    opened_at = int(state["window_at_ms"])  # type: ignore[index]

    def redis_ms() -> int:
        seconds, micros = inventory_redis().time()
        return seconds * 1000 + micros // 1000

    wait_for(lambda: redis_ms() - opened_at > 2100, what="the first window to pass", timeout=10)
    asyncio.run(crowd([shoppers[60][1]]))

    # Then the rate measured over it is the serving rate at most: the step into the empty
    # line is not counted as serving (counted, it read 15 a second here)
    state = inventory_redis().hgetall(keys.line_state_key(sale.pk))
    measured = float(state["measured"])  # type: ignore[index]
    assert 0 < measured <= rate + 0.01, state
