"""Logs an operator can search: JSON lines with the request id the answer's header carries,
the order id at the win and at the drain, and the servers' access lines, from real granian,
uvicorn and Celery processes started with LOG_FORMAT=json and ACCESS_LOG=true."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devstack.localservers import free_port
from flashsale_project.settings.environment import redis_db_url
from tests.clients import purchase
from tests.factories import make_sale, make_shoppers
from tests.polling import wait_for
from tests.processes import OPEN_ADMISSION, TEST_SHAPE, ChildProcess, child_env, start, start_worker, wait_for_http

pytestmark = pytest.mark.django_db(transaction=True)

JSON_LOGS = {**OPEN_ADMISSION, "LOG_FORMAT": "json", "LOG_LEVEL": "INFO"}


def json_lines(child: ChildProcess) -> list[dict[str, Any]]:
    """Every line of the child's log that is a JSON object (a server's start-up banner,
    printed before logging is set up, is not)."""
    found = []
    for line in child.log.read_text(errors="replace").splitlines():
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        if isinstance(parsed, dict):
            found.append(parsed)
    return found


@pytest.fixture(scope="module")
def logged(django_db_setup: None) -> Iterator[tuple[ChildProcess, ChildProcess]]:
    """A web and a ws process logging JSON with access lines, on a broker database of their own."""
    env = child_env(**JSON_LOGS, CELERY_BROKER_URL=redis_db_url(os.environ["REDIS_URL"], 8))
    web_port, ws_port = free_port(), free_port()
    web = start("web", TEST_SHAPE.but(web_port=web_port, web_workers=1, access_log=True), env, port=web_port)
    ws = start("ws", TEST_SHAPE.but(ws_port=ws_port, access_log=True), env, port=ws_port)
    wait_for_http(web)
    wait_for_http(ws, "/livez")
    yield web, ws
    web.stop()
    ws.stop()


def test_a_win_is_followed_by_its_order_id_from_the_answer_to_the_drain(
    logged: tuple[ChildProcess, ChildProcess],
) -> None:
    web, _ = logged
    sale = make_sale(stock=2)
    [(user_id, token)] = make_shoppers(1)

    won = purchase(web, sale.pk, token, **{"X-Request-ID": "balancer-id-0001"})
    refused = purchase(web, sale.pk, token)  # ALREADY_PURCHASED: a refusal logs no line
    order_id = won.json()["order_id"]
    worker = start_worker(name="log-worker", CELERY_BROKER_URL=redis_db_url(os.environ["REDIS_URL"], 8), **JSON_LOGS)
    try:
        wait_for(
            lambda: any(line.get("event") == "order drained" for line in json_lines(worker)), what="the drain's line"
        )
        drained = [line for line in json_lines(worker) if line.get("event") == "order drained"]
    finally:
        worker.stop()
    wins = [line for line in json_lines(web) if line.get("event") == "order won" and line["sale_id"] == sale.pk]

    assert (won.status_code, refused.status_code) == (201, 409)
    assert won.headers["X-Request-ID"] == "balancer-id-0001"  # the hot path's answer carries it
    assert len(wins) == 1
    assert wins[0] | {"timestamp": "-"} == {
        "event": "order won",
        "level": "info",
        "logger": "sales.purchase",
        "order_id": order_id,
        "sale_id": sale.pk,
        "user_id": user_id,
        "request_id": "balancer-id-0001",
        "timestamp": "-",
    }
    assert [(line["order_id"], line["sale_id"], line["user_id"]) for line in drained] == [(order_id, sale.pk, user_id)]


def test_the_web_access_line_is_json_with_the_answers_request_id(logged: tuple[ChildProcess, ChildProcess]) -> None:
    web, _ = logged
    listed = httpx.get(f"{web.url}/api/sales/?probe=access", headers={"X-Request-ID": "balancer-id-0002"}, timeout=10)
    made = httpx.get(f"{web.url}/api/sales/?probe=made", timeout=10)

    def access(path_query: str) -> list[dict[str, Any]]:
        return [
            line
            for line in json_lines(web)
            if line.get("event") == "access"
            and line.get("path") == "/api/sales/"
            and line.get("query_string") == path_query
        ]

    wait_for(lambda: bool(access("probe=access") and access("probe=made")), what="the access lines")
    [line] = access("probe=access")
    assert listed.headers["X-Request-ID"] == "balancer-id-0002"
    assert (line["method"], line["status"], line["request_id"], line["level"]) == (
        "GET",
        200,
        "balancer-id-0002",
        "info",
    )
    assert isinstance(line["dt_ms"], float)
    # Without a balancer the app makes an id, and the answer and the server's line carry it.
    assert len(made.headers["X-Request-ID"]) == 16
    assert access("probe=made")[0]["request_id"] == made.headers["X-Request-ID"]


def test_the_ws_access_line_is_json(logged: tuple[ChildProcess, ChildProcess]) -> None:
    _, ws = logged
    assert httpx.get(f"{ws.url}/livez?probe=ws", timeout=10).status_code == 200

    def access() -> list[dict[str, Any]]:
        return [
            line for line in json_lines(ws) if line.get("event") == "access" and "probe=ws" in str(line.get("path"))
        ]

    wait_for(lambda: bool(access()), what="the ws access line")
    [line] = access()
    assert (line["method"], line["status"], line["logger"]) == ("GET", 200, "uvicorn.access")
