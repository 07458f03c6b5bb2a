"""Liveness, readiness and the PostgreSQL gauge, on real granian processes whose Redis or
PostgreSQL is an address where nothing listens."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from devstack.localservers import free_port
from devstack.procfile import LIVENESS_PATH, READINESS_PATH
from tests.processes import OPEN_ADMISSION, TEST_SHAPE, ChildProcess, child_env, start, wait_for_http

from .scraping import scrape


def _web(**env: str) -> ChildProcess:
    port = free_port()
    child = start("web", TEST_SHAPE.but(web_port=port, web_workers=1), child_env(**OPEN_ADMISSION, **env), port=port)
    wait_for_http(child, LIVENESS_PATH)
    return child


@pytest.fixture
def web_without_postgresql(django_db_setup: None) -> Iterator[ChildProcess]:
    child = _web(DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/flashsale")
    yield child
    child.stop()


@pytest.fixture
def web_without_redis(django_db_setup: None) -> Iterator[ChildProcess]:
    child = _web(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", REDIS_SOCKET_TIMEOUT="0.3")
    yield child
    child.stop()


def test_a_process_whose_redis_is_away_is_alive_and_not_ready(web_without_redis: ChildProcess) -> None:
    live = httpx.get(web_without_redis.url + LIVENESS_PATH, timeout=10)
    ready = httpx.get(web_without_redis.url + READINESS_PATH, timeout=10)
    alias = httpx.get(web_without_redis.url + "/healthz", timeout=10)

    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    assert ready.status_code == 503
    assert ready.json()["status"] == "UNAVAILABLE"
    assert ready.headers["Retry-After"] == "1"
    assert "redis" in ready.json()["detail"]
    assert alias.status_code == 503


def test_a_process_whose_postgresql_is_away_stays_ready_and_says_so_on_its_own_gauge(
    web_without_postgresql: ChildProcess,
) -> None:
    ready = httpx.get(web_without_postgresql.url + READINESS_PATH, timeout=10)
    metrics = scrape(web_without_postgresql.url)

    assert (ready.status_code, ready.json()) == (200, {"status": "ok"})
    assert metrics.value("flash_sale_postgresql_up") == 0


@pytest.mark.django_db(transaction=True)
def test_the_gauge_says_1_and_both_probes_answer_when_everything_is_up(web_server: ChildProcess) -> None:
    assert httpx.get(web_server.url + LIVENESS_PATH, timeout=10).status_code == 200
    assert httpx.get(web_server.url + READINESS_PATH, timeout=10).status_code == 200
    assert scrape(web_server.url).value("flash_sale_postgresql_up") == 1
