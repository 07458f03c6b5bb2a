"""Per-process Prometheus metric objects, updated where things happen.

Several processes serve one site, so prometheus_client runs in multiprocess mode when
``PROMETHEUS_MULTIPROC_DIR`` is set in the environment before the process starts (``make run``
and the compose file set it and empty the directory at start); ``/metrics`` then sums every
process's files. Stack-wide values (stock, buyers, backlog) are read at scrape time by
``observability.collector``, never kept here.
"""

from __future__ import annotations

import functools
import hmac
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from prometheus_client import Counter, Gauge, Histogram

from .client_address import IPNetwork, address_in, networks_parse

PURCHASE_REQUESTS = Counter(
    "flash_sale_requests",
    "Purchase answers, by sale, answer status (success, sold_out, rate_limited, ...) and transport (http, tcp).",
    ["sale", "status", "transport"],
)
PURCHASE_DURATION = Histogram(
    "flash_sale_processing_duration_seconds",
    "Time the purchase path spends in the server, from the request read to the answer built, by transport.",
    ["transport"],
    buckets=(0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 1.0),
)
WS_CONNECTIONS = Gauge(
    "flash_sale_ws_connections",
    "Open storefront WebSocket connections, summed over live processes.",
    multiprocess_mode="livesum",
)

TCP_CONNECTIONS = Gauge(
    "flash_sale_tcp_connections",
    "Open connections of the TCP front door, summed over live processes.",
    multiprocess_mode="livesum",
)

TRANSPORTS = ("http", "tcp")


_children: dict[tuple[int | None, str, str], Any] = {}
"""The labelled counters and histograms already asked for, by their labels: ``labels()``
takes a lock and checks its arguments on every call, a dict lookup does neither. Bounded as
the label set is (sales this process served, answer statuses, transports); the children are
prometheus_client's own, so multiprocess mode's per-process files are as before."""
_durations: dict[str, Any] = {}


def purchase_observed(*, sale_id: int | None, status: str, seconds: float, transport: str) -> None:
    """Count one purchase answer. ``sale_id`` None (an unknown sale) is labelled ``unknown``
    so random ids cannot grow the label set; ``transport`` is one of ``TRANSPORTS``."""
    key = (sale_id, status, transport)
    counter = _children.get(key)
    if counter is None:
        counter = _children[key] = PURCHASE_REQUESTS.labels(
            sale="unknown" if sale_id is None else str(sale_id), status=status.lower(), transport=transport
        )
    counter.inc()
    duration = _durations.get(transport)
    if duration is None:
        duration = _durations[transport] = PURCHASE_DURATION.labels(transport=transport)
    duration.observe(seconds)


@functools.cache
def _networks(cidrs: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    try:
        return networks_parse(cidrs, setting="METRICS_ALLOWED_NETWORKS")
    except ValueError as error:
        raise ImproperlyConfigured(str(error)) from None


def scrape_allowed(*, peer: str, authorization: str) -> bool:
    """Who may scrape a process's metrics, whatever serves them: ``Authorization: Bearer
    <METRICS_BEARER_TOKEN>`` when a token is set, the loopback addresses, and the networks in
    ``METRICS_ALLOWED_NETWORKS``. ``peer`` is the TCP peer's address, never a forwarding
    header's (a header is the client's to forge)."""
    token = settings.METRICS_BEARER_TOKEN
    if token:
        scheme, _, offered = authorization.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(offered.strip().encode(), token.encode()):
            return True
    return address_in(peer, _networks(tuple(settings.METRICS_ALLOWED_NETWORKS)))
