"""One table of what each transport answers for each error (core/errors.py), and no error
body spelled twice."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
from pathlib import Path

from core.errors import (
    TRANSPORT_ANSWERS,
    ApplicationError,
    RequestTimeout,
    ServerError,
    Unavailable,
    error_frame_body,
)
from devstack.loadbalancer import REQUEST_TIMEOUT_FILE, SERVER_LOST_FILE, error_response, unavailable_response

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (
    "core",
    "antibot",
    "accounts",
    "sales",
    "orders",
    "storefront",
    "observability",
    "operations",
    "tcpdoor",
    "wsdoor",
)


def _every_error() -> set[type[ApplicationError]]:
    for package in PACKAGES:
        for module in pkgutil.walk_packages([str(ROOT / package)], prefix=f"{package}."):
            if ".migrations" not in module.name and not module.name.endswith("__main__"):
                importlib.import_module(module.name)
    found: set[type[ApplicationError]] = set()
    waiting = [ApplicationError]
    while waiting:
        kind = waiting.pop()
        found.add(kind)
        waiting.extend(kind.__subclasses__())
    return found


def test_every_application_error_has_its_answer_on_every_transport() -> None:
    errors = _every_error()
    assert len(errors) > 10, "the project's errors were not all imported"
    for kind in errors:
        assert kind.code in TRANSPORT_ANSWERS, kind
        answer = TRANSPORT_ANSWERS[kind.code]
        assert 400 <= answer.http_status < 600, kind
        assert answer.close_code in {1011, 1013} or 4000 <= answer.close_code < 5000, kind


def test_a_dependency_away_is_one_answer_with_its_wait_on_each_transport() -> None:
    away = Unavailable()
    assert (away.http_status, away.close_code) == (503, 1013)
    assert away.headers == {"Retry-After": "1"}
    assert error_frame_body(away) == {**away.body(), "retry_after_ms": 1000}


def test_the_balancers_own_503_is_the_contracts() -> None:
    # HAProxy answers it when no web process is up; its file cannot import the body.
    head, _, body = unavailable_response().partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 503 ")
    assert json.loads(body) == Unavailable().body()
    assert f"Content-Length: {len(body.encode())}" in head.split("\r\n")


def test_the_balancers_own_408_is_the_contracts() -> None:
    # HAProxy answers it to a request not whole within its timeout http-request.
    head, _, body = error_response(REQUEST_TIMEOUT_FILE).partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 408 ")
    assert json.loads(body) == RequestTimeout().body()
    assert RequestTimeout().http_status == 408
    assert f"Content-Length: {len(body.encode())}" in head.split("\r\n")
    assert "Connection: close" in head.split("\r\n")


def test_the_balancers_own_answer_for_a_server_that_never_answered_is_the_contracts_503() -> None:
    # HAProxy answers it instead of its HTML 502 and 504: a server took the request and went away.
    head, _, body = error_response(SERVER_LOST_FILE).partition("\r\n\r\n")
    lines = head.split("\r\n")
    assert lines[0] == "HTTP/1.1 503 Service Unavailable"
    parsed = json.loads(body)
    assert set(parsed) == set(Unavailable().body()) and parsed["status"] == Unavailable.code
    assert f"Retry-After: {Unavailable().headers['Retry-After']}" in lines
    assert f"Content-Length: {len(body.encode())}" in lines
    assert "Content-Type: application/json" in lines


def test_no_error_body_is_spelled_outside_the_table() -> None:
    # The codes every transport answers for a bug or a dependency away are spelled once.
    spelled = re.compile("[\"'](" + "|".join((ServerError.code, Unavailable.code)) + ")[\"']")
    offenders = []
    for package in (*PACKAGES, "naive_shop", "flashsale_project", "devstack"):
        for path in (ROOT / package).rglob("*.py"):
            if path == ROOT / "core" / "errors.py":
                continue
            if spelled.search(path.read_text(encoding="utf-8")):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
