"""A purchase burst against the real server (granian, two worker processes, prometheus_client
multiprocess mode), then ``/metrics`` scraped the way Prometheus does: exact counts per
answer summed over the processes, the stock gauges read from Redis, the histogram counted,
and the order backlog draining once a real Celery worker runs."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from orders.tasks import drain_sale_orders
from tests.factories import make_sale, make_shoppers
from tests.processes import ChildProcess

from .scraping import MetricsServer, Scrape

pytestmark = pytest.mark.django_db(transaction=True)

REQUESTS = "flash_sale_requests_total"
DURATION_COUNT = "flash_sale_processing_duration_seconds_count"


def _queries(scrape: Scrape) -> float:
    """SQL statements run by every process so far (django-prometheus's database wrapper)."""
    return scrape.value("django_db_execute_total", alias="default", vendor="postgresql") or 0


def _burst(base_url: str, sale_id: int, tokens: list[str]) -> Counter[str]:
    """Every token tries once, all at the same moment, each on its own connection (so the
    kernel spreads them over the server's worker processes). Returns answers by status."""
    gate = threading.Barrier(len(tokens))

    def attempt(token: str) -> str:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            gate.wait()
            response = client.post(
                f"/api/sales/{sale_id}/purchase/", json={}, headers={"Authorization": f"Token {token}"}
            )
            return str(response.json()["status"])

    with ThreadPoolExecutor(max_workers=len(tokens)) as pool:
        return Counter(pool.map(attempt, tokens))


def _spread_over_two_processes(server: MetricsServer, sale_id: int, tokens: list[str], batch: int = 8) -> int:
    """Buy on ``sale_id`` in concurrent batches until two worker processes have each answered
    at least one purchase of it. Returns how many purchases were sent."""
    sent = 0
    while len(server.per_process(REQUESTS, sale=str(sale_id), status="success", transport="http")) < 2:
        assert sent + batch <= len(tokens), "every purchase landed on one worker process"
        answers = _burst(server.url, sale_id, tokens[sent : sent + batch])
        assert answers == Counter({"SUCCESS": batch})
        sent += batch
    return sent


def test_a_burst_shows_exact_counts_summed_over_processes_the_stock_gauges_and_the_histogram(
    metrics_server: MetricsServer,
) -> None:
    # Given a sale of 5 units, 12 shoppers, and a big sale to prove two processes answer
    # (stock-aware admission off: this test counts SOLD_OUT answers, not the crowd's 429s)
    sale = make_sale(stock=5, crowd_factor=0)
    crowd = [token for _, token in make_shoppers(12)]
    spread_sale = make_sale(stock=1000)
    spreaders = [token for _, token in make_shoppers(160)]
    first = metrics_server.scrape()
    before = metrics_server.scrape()
    scrape_queries = _queries(before) - _queries(first)  # what one scrape itself runs

    # When the 12 shoppers press Buy at once, and purchases continue until both workers served
    answers = _burst(metrics_server.url, sale.pk, crowd)
    spread = _spread_over_two_processes(metrics_server, spread_sale.pk, spreaders)
    after = metrics_server.scrape()

    # Then the answers were 5 wins and 7 sold out, and the scrape says exactly that
    assert answers == Counter({"SUCCESS": 5, "SOLD_OUT": 7})
    sale_label = str(sale.pk)
    by_status = {
        dict(labels)["status"]: value
        for labels, value in after.series(REQUESTS).items()
        if ("sale", sale_label) in labels
    }
    assert by_status == {"success": 5.0, "sold_out": 7.0}
    # ... summed over the worker processes: each wrote its own file, the scrape adds them up
    per_process = metrics_server.per_process(REQUESTS, sale=str(spread_sale.pk), status="success", transport="http")
    assert len(per_process) == 2
    assert all(value > 0 for value in per_process.values())
    served = after.value(REQUESTS, sale=str(spread_sale.pk), status="success", transport="http")
    assert served == sum(per_process.values()) == spread
    # ... the histogram counted every purchase answer once, all within its top bucket
    counted = (after.value(DURATION_COUNT, transport="http") or 0) - (
        before.value(DURATION_COUNT, transport="http") or 0
    )
    assert counted == 12 + spread
    assert after.value("flash_sale_processing_duration_seconds_bucket", le="+Inf", transport="http") == after.value(
        DURATION_COUNT, transport="http"
    )
    # ... the burst ran no SQL query in any process: only the previous scrape's own show up
    assert scrape_queries > 0
    assert _queries(after) - _queries(before) == scrape_queries
    # ... and the gauges read from Redis show the stock, buyers and waiting orders (no worker yet)
    assert after.value("flash_sale_stock_remaining", sale=sale_label) == 0
    assert after.value("flash_sale_stock_total", sale=sale_label) == 5
    assert after.value("flash_sale_buyers", sale=sale_label) == 5
    assert after.value("flash_sale_order_backlog", sale=sale_label) == 5
    assert after.value("flash_sale_orders_persisted", sale=sale_label) == 0
    assert after.value("flash_sale_stock_remaining", sale=str(spread_sale.pk)) == 1000 - spread
    assert after.value("flash_sale_invariant_violations_total", sale=sale_label, invariant="I1") == 0
    # (the workers that answer a ping: none of this test's, but the suite's shared workers on
    # the same broker answer too, so only its presence is this test's to check)
    workers = after.value("flash_sale_celery_workers")
    assert workers is not None and workers >= 0
    assert after.value("flash_sale_scrape_source_up", source="redis") == 1


def _scrape_until(server: MetricsServer, condition, *, timeout: float = 60.0) -> Scrape:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        result = server.scrape()
        if condition(result) or time.monotonic() > deadline:
            return result
        time.sleep(0.3)


def test_the_backlog_counts_won_orders_until_a_worker_drains_them_into_postgresql(
    metrics_server: MetricsServer, celery_worker: ChildProcess
) -> None:
    # Given a sale of 3 units sold out by 4 shoppers at once, with a live Celery worker
    # (stock-aware admission off: the fourth must hear SOLD_OUT, not the crowd's 429)
    sale = make_sale(stock=3, crowd_factor=0)
    label = str(sale.pk)
    answers = _burst(metrics_server.url, sale.pk, [token for _, token in make_shoppers(4)])
    assert answers == Counter({"SUCCESS": 3, "SOLD_OUT": 1})

    # (the wins' kick may have drained some already: every won order is either waiting or
    # stored. A scrape taken while that drain is between its COMMIT and its XACK reads an
    # order on both sides, or on neither: PostgreSQL is read before Redis; so scrape until
    # no batch is half-way.)
    def waiting_or_stored(scrape: Scrape) -> float:
        return (scrape.value("flash_sale_order_backlog", sale=label) or 0) + (
            scrape.value("flash_sale_orders_persisted", sale=label) or 0
        )

    first = _scrape_until(metrics_server, lambda s: waiting_or_stored(s) == 3)
    assert waiting_or_stored(first) == 3

    # When the drain runs, as beat's tick runs it
    drain_sale_orders.delay(sale.pk)
    # (a solo-pool worker answers the scrape's ping between tasks, so one scrape may miss it)
    drained = _scrape_until(
        metrics_server,
        lambda s: (
            s.value("flash_sale_order_backlog", sale=label) == 0 and (s.value("flash_sale_celery_workers") or 0) >= 1
        ),
    )

    # Then nothing waits, PostgreSQL holds one order per buyer, and the worker answers pings
    assert drained.value("flash_sale_order_backlog", sale=label) == 0
    assert drained.value("flash_sale_orders_persisted", sale=label) == 3
    assert drained.value("flash_sale_buyers", sale=label) == 3
    # (at least this test's: the suite's shared workers, on the same broker, answer too)
    assert (drained.value("flash_sale_celery_workers") or 0) >= 1


def test_the_scrape_answers_the_address_prometheus_discovered_which_allowed_hosts_does_not_list(
    metrics_server: MetricsServer,
) -> None:
    # Prometheus's DNS discovery scrapes a container by its IP: that is the Host it sends
    discovered = {"Host": "172.18.0.5:8000"}
    assert httpx.get(f"{metrics_server.url}/metrics", headers=discovered).status_code == 200
    # ... while the rest of the site still refuses hosts it does not serve
    assert httpx.get(f"{metrics_server.url}/api/sales/", headers=discovered).status_code == 400
