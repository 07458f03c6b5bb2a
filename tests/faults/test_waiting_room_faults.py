"""The waiting room through faults (issue 22, docs/reliability.md): a crowd joins a queue-mode
sale's line on ``make run``'s stack while the web process is SIGKILLed, or while Redis is
SIGKILLed and restarted from its append-only file. Afterwards every place a shopper was
answered (201 or 200 with a number) is still theirs, in the line and read back through the
script; the line's numbers are exactly 1..joined (unique, gap-free, none given twice); the
counter did not go back across the Redis restart; and a pass let in still buys. On a Redis Cluster, a queue-mode
sale's line lives in the sale's slot, and shoppers join and buy there."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis

from core.redis_store import inventory_redis
from devstack.localservers import LocalRedisCluster
from sales import keys
from sales.models import Admission
from sales.selectors import sale_line_counts
from tests.factories import auth, make_sale, make_shoppers
from tests.polling import wait_for
from tests.processes import ChildProcess

from .stack import JoinResult, Stack, first_answer_after, join_crowd, record

SHOPPERS = 400
STOCK = 50
SPREAD_S = 10.0  # shoppers arrive over this long; the fault lands once a third have a place
SERVING_RATE = 5  # places a second: a turn is 300 places (60 s), so no turn passes during a case
RECOVERY_BOUND_S = 120.0
REFUSED_WHILE_DOWN = 30
"""Joins answered 503 before Redis is started again."""


def _line_under_fault(
    stack: Stack, case: str, inject: Callable[[int], dict[str, Any]], *, watch: list[JoinResult] | None = None
) -> dict[str, Any]:
    """A live queue-mode sale, a crowd joining it, ``inject`` run once a third of the crowd
    has been answered a place (``watch`` gets the crowd's answers, for ``inject`` to wait
    on); the line judged, and the measurements recorded."""
    sale_id = stack.sale(f"fault-{case.replace('_', '-')}", STOCK, "--admission", "queue",
                         "--serving-rate", str(SERVING_RATE))  # fmt: skip
    shoppers = stack.shoppers(SHOPPERS)
    joined = JoinResult()
    if watch is not None:
        watch.append(joined)
    crowd = threading.Thread(
        target=join_crowd,
        args=(stack.web_url, sale_id, shoppers),
        kwargs={"spread": SPREAD_S, "deadline_s": SPREAD_S + 150, "result": joined},
    )
    crowd.start()
    wait_for(lambda: len(joined.places) >= SHOPPERS // 3, what="a third of the crowd placed", timeout=120)
    placed_before = len(joined.places)
    # Injected from the main thread: a server it starts again dies with the thread that
    # started it (PR_SET_PDEATHSIG, devstack.children).
    fault = inject(sale_id)
    crowd.join(timeout=300)
    assert not crowd.is_alive(), "the crowd did not finish"
    at = fault.pop("at")
    answered_again = first_answer_after(joined, at)
    line = _line_judged(stack, sale_id, joined, dict(shoppers))
    figures = record(
        case,
        shoppers=SHOPPERS,
        placed=len(joined.places),
        placed_before_the_fault=placed_before,
        joins_run_whose_answer_was_lost=joined.heard_again,
        answered_places_lost=line["lost"],
        line_numbers=line["joined"],
        numbers_gap_free=line["gap_free"],
        numbers_answered_to_two_shoppers=line["answered_twice"],
        read_back_through_the_script_differs=line["read_back_differs"],
        served_after=line["served"],
        passes_that_bought_after=line["bought"],
        answered_again_after_s=None if answered_again is None else round(answered_again - at, 2),
        seen_during_fault=dict(
            joined.statuses(at, answered_again if answered_again and answered_again > at else at + 1)
        ),
        answers_outside_the_contract=joined.bad[:5],
        **fault,
    )
    assert figures["answered_places_lost"] == 0, figures
    assert figures["numbers_gap_free"], figures
    assert figures["numbers_answered_to_two_shoppers"] == 0, figures
    assert figures["read_back_through_the_script_differs"] == 0, figures
    assert figures["placed"] == SHOPPERS, figures
    assert figures["passes_that_bought_after"] == 2, figures
    assert joined.bad == [], figures
    assert answered_again is not None and answered_again - at < RECOVERY_BOUND_S, figures
    return figures


def _line_judged(stack: Stack, sale_id: int, joined: JoinResult, tokens: dict[int, str]) -> dict[str, Any]:
    """The line as Redis holds it against what the crowd heard; each placed shopper's place
    read back through the script (no pass: ``join.lua`` answers); two let in buy with their
    passes."""
    client: Any = stack.redis_client()
    try:
        line = {int(user): int(number) for user, number in client.hgetall(keys.line_key(sale_id)).items()}
        state = client.hgetall(keys.line_state_key(sale_id))
    finally:
        client.close()
    numbers = int(state.get("joined", 0))
    heard = list(joined.places.values())
    read_back: dict[int, dict[str, Any]] = {}
    with httpx.Client(base_url=stack.web_url, timeout=30) as http:
        for user in joined.places:
            read_back[user] = http.get(f"/api/sales/{sale_id}/queue/", headers=auth(tokens[user])).json()
        admitted = sorted(
            (user for user, place in read_back.items() if place.get("status") == "admitted"),
            key=lambda user: joined.places[user],
        )
        bought = sum(
            http.post(
                f"/api/sales/{sale_id}/purchase/", json={"pass": joined.passes[user]}, headers=auth(tokens[user])
            ).status_code
            == 201
            for user in admitted[-2:]
        )
    return {
        "lost": sum(line.get(user) != number for user, number in joined.places.items()),
        "joined": numbers,
        "gap_free": sorted(line.values()) == list(range(1, numbers + 1)),
        "answered_twice": len(heard) - len(set(heard)),
        "read_back_differs": sum(place.get("number") != joined.places[user] for user, place in read_back.items()),
        "served": float(state.get("served", 0)),
        "bought": bought,
    }


def test_a_web_process_sigkilled_while_a_crowd_joins_loses_no_place(stack: Stack) -> None:
    # Clients see refused connections until the supervisor's new web answers; a join the
    # script ran before the kill is the shopper's place when they ask again.
    _line_under_fault(stack, "queue_web_sigkill", lambda sale_id: stack.kill("web"))


def test_redis_sigkilled_mid_join_and_restarted_from_its_append_only_file_keeps_the_line(stack: Stack) -> None:
    # Joins answer 503 with Retry-After while Redis is away; the line, its numbers and its
    # counter come back from the append-only file, and the next number follows the last.
    joins: list[JoinResult] = []

    def inject(sale_id: int) -> dict[str, Any]:
        client = stack.redis_client()
        served_before = float(client.hget(keys.line_state_key(sale_id), "served") or 0)
        client.close()
        at = time.monotonic()
        stack.redis.kill()
        # Down until the crowd has felt it, however fast this machine restarts Redis.
        [joined] = joins
        wait_for(lambda: joined.statuses(at)["503 UNAVAILABLE"] >= REFUSED_WHILE_DOWN, what="joins refused", timeout=60)
        stack.redis.start()
        return {"at": at, "redis_down_s": round(time.monotonic() - at, 2), "served_before_the_kill": served_before}

    figures = _line_under_fault(stack, "queue_redis_sigkill", inject, watch=joins)
    assert figures["served_after"] >= figures["served_before_the_kill"], figures


@pytest.mark.django_db(transaction=True)
def test_a_queue_mode_sale_on_a_redis_cluster_keeps_its_line_in_its_slot(
    on_cluster: LocalRedisCluster, cluster_web_server: ChildProcess
) -> None:
    # Given a queue-mode sale on the cluster, and 20 shoppers joining it through a web server
    # whose sale data is the cluster
    sale = make_sale(admission=Admission.QUEUE, stock=5, serving_rate=20)
    shoppers = make_shoppers(20)
    places = {}
    with httpx.Client(base_url=cluster_web_server.url, timeout=30) as http:
        for user, token in shoppers:
            joined = http.post(f"/api/sales/{sale.pk}/queue/", json={}, headers=auth(token))
            assert joined.status_code == 201, joined.text
            places[user] = joined.json()

        # When the first five buy once let in
        bought = {}
        for user, token in shoppers[:5]:

            def let_in(token: str = token, user: int = user) -> bool:
                headers = {**auth(token), "Queue-Pass": places[user]["pass"]}
                return bool(http.get(f"/api/sales/{sale.pk}/queue/", headers=headers).json()["status"] == "admitted")

            wait_for(let_in, what="a turn", timeout=30)
            answer = http.post(
                f"/api/sales/{sale.pk}/purchase/", json={"pass": places[user]["pass"]}, headers=auth(token)
            )
            bought[user] = answer.status_code

    # Then they bought, the numbers are 1..20, and the line's keys sit in the sale's slot on
    # its master and nowhere else
    assert set(bought.values()) == {201}
    assert sorted(place["number"] for place in places.values()) == list(range(1, 21))
    master = on_cluster.master_of(keys.meta_key(sale.pk))
    cluster = inventory_redis()
    slot = cluster.keyslot(keys.meta_key(sale.pk))  # type: ignore[union-attr]
    line_keys = {keys.line_key(sale.pk), keys.line_state_key(sale.pk)}
    assert {cluster.keyslot(key) for key in line_keys} == {slot}  # type: ignore[union-attr]
    for node in on_cluster.nodes:
        with redis.Redis(host="127.0.0.1", port=node.port, decode_responses=True) as client:
            held = set(client.keys(keys.sale_key_pattern(sale.pk)))  # KEYS answers a node's own keys
        assert (line_keys <= held) is (node is master), (node.port, held)
        if node is not master:
            assert held == set(), (node.port, held)
    # ... and the operator's count of the line runs there too, in the same slot
    counts = sale_line_counts(sale.pk)
    assert counts is not None
    assert (counts.joined, counts.admitted_unused + counts.abandoned + 5) == (20, counts.admitted)
