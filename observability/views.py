"""``GET /metrics``: the Prometheus scrape, for the monitoring network only.

Allowed: the loopback addresses (always), the networks in ``METRICS_ALLOWED_NETWORKS``, and a
request with ``Authorization: Bearer <METRICS_BEARER_TOKEN>`` when a token is set. Everyone
else gets 403. The address judged is the TCP peer (``REMOTE_ADDR``), never a forwarding
header: Prometheus scrapes the processes directly, and a header is the client's to forge.

``MetricsEndpointMiddleware`` answers the scrape ahead of every other middleware: Prometheus
finds each web and ws process by its address (DNS service discovery gives IPs, which
``ALLOWED_HOSTS`` cannot list), and a scrape needs no session, CSRF or HTTPS redirect. The
answer builds no URL from the Host header, so skipping its validation here is safe.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from prometheus_client.exposition import choose_encoder

from core.errors import Forbidden, MethodNotAllowed, error_json_response

# Importing core.metrics registers the per-process metrics this endpoint serves.
from core.metrics import scrape_allowed as metrics_scrape_allowed

from .collector import scrape_registry


def scrape_allowed(request: HttpRequest) -> bool:
    return metrics_scrape_allowed(
        peer=request.META.get("REMOTE_ADDR", ""), authorization=request.headers.get("Authorization", "")
    )


def metrics(request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        response = error_json_response(MethodNotAllowed(f"{request.method} is not allowed here; use GET."))
        response["Allow"] = "GET, HEAD"
        return response
    if not scrape_allowed(request):
        return error_json_response(
            Forbidden("Metrics are served to the monitoring network or with the scrape token only.")
        )
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(scrape_registry()), content_type=content_type)


class MetricsEndpointMiddleware:
    """First in ``MIDDLEWARE``: ``/metrics`` is answered here, every other path passes on
    after one string comparison."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info == "/metrics":
            return metrics(request)
        return self.get_response(request)
