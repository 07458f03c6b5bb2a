"""The contract's error answers whatever goes wrong: every path under /api/ that no route
takes is a JSON 404 (with DEBUG on too), and Redis or PostgreSQL away is 503 UNAVAILABLE with
Retry-After on every /api/ endpoint of a real server, never a 500 or an HTML page."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from django.test import Client
from pytest_django.fixtures import Settings

from devstack.localservers import free_port
from tests.factories import auth, make_sale, make_shopper
from tests.processes import TEST_SHAPE, Child, child_env, start


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/sales/abc/"),
        ("get", "/api/sales/-1/"),
        ("get", "/api/sales/1/nothing/"),
        ("post", "/api/sales/abc/purchase/"),
        ("post", "/api/auth/register"),  # no slash: no redirect that drops a POST body
        ("get", "/api/orders/not/an/order/"),
        ("delete", "/api/nowhere"),
    ],
)
def test_unrouted_api_paths_answer_the_contracts_404(
    client: Client, settings: Settings, debug: bool, method: str, path: str
) -> None:
    settings.DEBUG = debug

    response = getattr(client, method)(path)

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"status": "NOT_FOUND", "detail": f"Nothing at {path}."}


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return False
    return True


@pytest.fixture(params=["postgresql", "redis"])
def server_without(request: pytest.FixtureRequest) -> Iterator[tuple[str, Child]]:
    """A granian server with DEBUG on (its HTML error pages would show) whose PostgreSQL or
    Redis (sale data, cache and sessions) is a port nobody listens on."""
    dead = free_port()
    away = (
        {"DATABASE_URL": f"postgresql://postgres@127.0.0.1:{dead}/flashsale"}
        if request.param == "postgresql"
        else {"REDIS_URL": f"redis://127.0.0.1:{dead}/0", "CACHE_URL": f"redis://127.0.0.1:{dead}/2"}
    )
    port = free_port()
    env = child_env(DEBUG="true", **away)
    web = start("web", TEST_SHAPE.but(web_port=port, web_workers=1), env, port=port)
    try:
        web.wait_until(lambda: _answers(f"{web.url}/healthz"), what="answer at all", timeout=60)
        yield request.param, web
    finally:
        web.stop()


@pytest.mark.django_db(transaction=True)
def test_a_dependency_away_answers_503_json_with_retry_after_on_every_api_endpoint(
    server_without: tuple[str, Child],
) -> None:
    away, web = server_without
    sale = make_sale(warm=False)  # in PostgreSQL (the test's), not in the server's Redis
    _, token = make_shopper()
    calls = [
        ("GET", "/api/sales/", None),
        ("GET", f"/api/sales/{sale.pk}/", None),
        ("POST", "/api/auth/register/", {"username": "newcomer", "password": "correct-horse-42"}),
        ("POST", "/api/auth/token/", {"username": "someone", "password": "pw-for-tests-1"}),
        ("GET", "/api/orders/", None),
        ("POST", f"/api/sales/{sale.pk}/challenge/", None),
        ("POST", f"/api/sales/{sale.pk}/purchase/", {}),
    ]

    with httpx.Client(base_url=web.url, headers=auth(token), timeout=30) as http:
        answers = {path: http.request(method, path, json=body) for method, path, body in calls}

    for path, answer in answers.items():
        assert answer.status_code == 503, (away, path, answer.status_code, answer.text[:300])
        assert answer.headers["Content-Type"] == "application/json", (away, path)
        assert answer.json()["status"] == "UNAVAILABLE", (away, path)
        assert int(answer.headers["Retry-After"]) >= 1, (away, path)
    assert "Traceback" not in web.log.read_text(errors="replace")
