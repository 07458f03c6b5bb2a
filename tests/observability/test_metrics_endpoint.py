"""``/metrics`` in this process (Django's test client, real Redis and PostgreSQL): who may
scrape it, and what the stack-wide collector reads when invariants break, repairs happen or
Redis is away."""

from __future__ import annotations

import pytest
from django.test import Client
from pytest_django.fixtures import Settings as SettingsWrapper

from core.redis_store import inventory_redis
from devstack.localservers import free_port
from orders.models import Order
from orders.reconciliation import sale_reconcile
from sales import keys
from tests.factories import auth, make_sale, make_shoppers

from .scraping import Scrape

pytestmark = pytest.mark.django_db

OUTSIDER = "203.0.113.9"  # TEST-NET-3: never loopback, never in a default allow list


@pytest.fixture(autouse=True)
def no_worker_ping(settings: SettingsWrapper) -> None:
    """No Celery worker runs in these tests; the ping's wait would only slow each scrape."""
    settings.METRICS_CELERY_PING_SECONDS = 0


def _get(client: Client, remote_addr: str = "127.0.0.1", **headers: str):  # type: ignore[no-untyped-def]
    return client.get("/metrics", REMOTE_ADDR=remote_addr, headers=headers)


def _scrape(client: Client) -> Scrape:
    response = _get(client)
    assert response.status_code == 200
    return Scrape.parse(response.content.decode())


def _buy(client: Client, sale_id: int, token: str) -> str:
    response = client.post(
        f"/api/sales/{sale_id}/purchase/", "{}", content_type="application/json", headers=auth(token)
    )
    return str(response.json()["status"])


# --- Who may scrape ---------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
def test_loopback_may_always_scrape(client: Client, address: str) -> None:
    response = _get(client, address)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert b"# TYPE flash_sale_ws_connections gauge" in response.content


def test_anyone_else_gets_403_with_the_error_body(client: Client) -> None:
    response = _get(client, OUTSIDER)
    assert response.status_code == 403
    assert response.json()["status"] == "FORBIDDEN"
    assert b"flash_sale" not in response.content


def test_a_forwarding_header_does_not_make_an_outsider_local(client: Client) -> None:
    response = _get(client, OUTSIDER, **{"X-Forwarded-For": "127.0.0.1", "X-Real-IP": "127.0.0.1"})
    assert response.status_code == 403


def test_addresses_in_the_allowed_networks_may_scrape(client: Client, settings: SettingsWrapper) -> None:
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8", "203.0.113.0/24"]
    assert _get(client, OUTSIDER).status_code == 200
    assert _get(client, "10.1.2.3").status_code == 200
    assert _get(client, "198.51.100.1").status_code == 403


def test_the_bearer_token_opens_it_from_anywhere_and_nothing_else_does(
    client: Client, settings: SettingsWrapper
) -> None:
    settings.METRICS_BEARER_TOKEN = "scrape-secret-1"
    assert _get(client, OUTSIDER, Authorization="Bearer scrape-secret-1").status_code == 200
    assert _get(client, OUTSIDER, Authorization="bearer scrape-secret-1").status_code == 200
    assert _get(client, OUTSIDER, Authorization="Bearer scrape-secret-2").status_code == 403
    assert _get(client, OUTSIDER, Authorization="Token scrape-secret-1").status_code == 403
    assert _get(client, OUTSIDER, Authorization="Bearer ").status_code == 403
    assert _get(client, OUTSIDER).status_code == 403


def test_no_token_configured_means_no_token_is_accepted(client: Client, settings: SettingsWrapper) -> None:
    settings.METRICS_BEARER_TOKEN = ""
    assert _get(client, OUTSIDER, Authorization="Bearer ").status_code == 403


def test_only_get_and_head_are_answered(client: Client) -> None:
    response = client.post("/metrics", REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"


def test_prometheus_asking_for_openmetrics_gets_openmetrics(client: Client) -> None:
    response = _get(client, Accept="application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.rstrip().endswith(b"# EOF")


# --- What the stack-wide collector reads --------------------------------------------------------


def test_a_broken_i1_shows_in_the_gauges_and_in_the_violation_counter_after_reconciliation(client: Client) -> None:
    # Given a sale of 3 with one unit sold, whose stock counter someone then overwrote
    sale = make_sale(stock=3)
    (_, token), *_ = make_shoppers(1)
    assert _buy(client, sale.pk, token) == "SUCCESS"
    inventory_redis().set(keys.stock_key(sale.pk), 5)

    # When reconciliation runs and Prometheus scrapes
    report = sale_reconcile(sale_id=sale.pk)
    scraped = _scrape(client)

    # Then the gauges show the break (5 + 1 != 3) and the I1 counter counted it once
    label = str(sale.pk)
    assert report.i1_holds is False
    assert scraped.value("flash_sale_stock_remaining", sale=label) == 5
    assert scraped.value("flash_sale_buyers", sale=label) == 1
    assert scraped.value("flash_sale_stock_total", sale=label) == 3
    assert scraped.value("flash_sale_invariant_violations_total", sale=label, invariant="I1") == 1
    assert scraped.value("flash_sale_invariant_violations_total", sale=label, invariant="I2") == 0
    assert scraped.types["flash_sale_invariant_violations"] == "counter"


def test_orders_recreated_by_the_reconciler_are_counted_as_repairs(client: Client) -> None:
    # Given two wins whose stream entries were lost before any worker read them
    sale = make_sale(stock=5)
    for _, token in make_shoppers(2):
        assert _buy(client, sale.pk, token) == "SUCCESS"
    inventory_redis().delete(keys.orders_stream_key(sale.pk))

    # When reconciliation recreates them from the buyers hash
    report = sale_reconcile(sale_id=sale.pk)
    scraped = _scrape(client)

    # Then PostgreSQL has both, nothing waits, and the repairs counter says 2
    label = str(sale.pk)
    assert len(report.repaired) == 2
    assert Order.objects.filter(sale_id=sale.pk).count() == 2
    assert scraped.value("flash_sale_reconcile_repairs_total", sale=label) == 2
    assert scraped.value("flash_sale_orders_persisted", sale=label) == 2
    assert scraped.value("flash_sale_order_backlog", sale=label) == 0
    assert scraped.value("flash_sale_buyers", sale=label) == 2
    assert scraped.types["flash_sale_reconcile_repairs"] == "counter"


def test_a_sale_not_loaded_into_redis_is_not_reported(client: Client) -> None:
    sale = make_sale(stock=5, warm=False)
    scraped = _scrape(client)
    assert scraped.series("flash_sale_stock_remaining") == {}
    assert str(sale.pk) not in {value for labels in scraped.series("flash_sale_buyers") for _, value in labels}


def test_redis_away_still_serves_the_process_metrics_and_says_which_source_failed(
    client: Client, settings: SettingsWrapper
) -> None:
    # Given a watched sale, and then inventory Redis on a port nothing listens on
    make_sale(stock=5)
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    inventory_redis.cache_clear()
    try:
        # When Prometheus scrapes
        scraped = _scrape(client)
    finally:
        inventory_redis.cache_clear()

    # Then the answer is still 200 with this process's metrics, and says Redis failed
    assert scraped.value("flash_sale_scrape_source_up", source="redis") == 0
    assert scraped.value("flash_sale_scrape_source_up", source="postgresql") == 1
    assert scraped.series("flash_sale_stock_remaining") == {}
    assert scraped.types["flash_sale_ws_connections"] == "gauge"


def test_with_no_sale_watched_redis_is_still_asked(client: Client, settings: SettingsWrapper) -> None:
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    inventory_redis.cache_clear()
    try:
        scraped = _scrape(client)
    finally:
        inventory_redis.cache_clear()
    assert scraped.value("flash_sale_scrape_source_up", source="redis") == 0


def test_the_stack_collector_can_be_left_out(client: Client, settings: SettingsWrapper) -> None:
    settings.METRICS_STACK_COLLECTOR = False
    make_sale(stock=5)
    scraped = _scrape(client)
    assert "flash_sale_stock_remaining" not in scraped.types
    assert "flash_sale_scrape_source_up" not in scraped.types
    assert scraped.types["flash_sale_requests"] == "counter"


# --- django-prometheus --------------------------------------------------------------------------


def test_database_and_cache_metrics_come_from_the_wrapped_backends(client: Client) -> None:
    sale = make_sale(stock=5)
    (_, token), *_ = make_shoppers(1)
    before = _scrape(client)
    assert _buy(client, sale.pk, token) == "SUCCESS"
    for _ in range(2):  # The sale's detail reads the sale through the cache: a miss, then a hit.
        assert client.get(f"/api/sales/{sale.pk}/").status_code == 200
    after = _scrape(client)
    hits = "django_cache_get_hits_total"
    assert (after.value(hits, backend="redis") or 0) - (before.value(hits, backend="redis") or 0) >= 1
    assert (after.value("django_db_execute_total", alias="default", vendor="postgresql") or 0) > 0


def test_the_http_middleware_is_off_by_default_and_can_be_turned_on(client: Client, settings: SettingsWrapper) -> None:
    assert not any("django_prometheus" in name for name in settings.MIDDLEWARE)
    settings.MIDDLEWARE = [
        "django_prometheus.middleware.PrometheusBeforeMiddleware",
        *settings.MIDDLEWARE,
        "django_prometheus.middleware.PrometheusAfterMiddleware",
    ]
    assert client.get("/api/sales/").status_code == 200
    scraped = _scrape(client)
    by_view = "django_http_responses_total_by_status_view_method_total"
    assert (scraped.value(by_view, status="200", view="api-sales", method="GET") or 0) >= 1
