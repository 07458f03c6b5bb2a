"""Which peers may say who a request is for: loopback and TRUSTED_PROXY_NETWORKS only."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest
from django.test import RequestFactory, override_settings

from core.client_address import EdgeHeaders, client_ip, proxy_trusted
from core.logs import REQUEST_ID

FORWARDED = {
    "HTTP_X_FORWARDED_FOR": "198.51.100.7",
    "HTTP_X_FORWARDED_PROTO": "https",
    "HTTP_X_REQUEST_ID": "from-the-balancer-1",
}


def _seen(environ: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Call ``EdgeHeaders`` around an app that keeps what it was given; returns that environ
    and the answer's headers."""
    kept: dict[str, Any] = {}
    answered: list[tuple[str, str]] = []

    def app(given: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        kept.update(given)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        answered.extend(headers)

    with override_settings(ANTIBOT_CLIENT_IP_HEADER="X-Forwarded-For", TRUSTED_PROXY_NETWORKS=["10.1.0.0/16"]):
        assert list(EdgeHeaders(app)(environ, start_response)) == [b"ok"]
    return kept, answered


@pytest.mark.parametrize("peer", ["127.0.0.1", "10.1.2.3", "::1"])
def test_a_trusted_balancers_headers_and_request_id_are_kept(peer: str) -> None:
    kept, answered = _seen({"REMOTE_ADDR": peer, **FORWARDED})

    assert {name: kept[name] for name in FORWARDED} == FORWARDED
    assert ("X-Request-ID", "from-the-balancer-1") in answered
    assert REQUEST_ID.get() == "from-the-balancer-1"


def test_anyone_elses_forwarding_headers_are_dropped_and_a_new_request_id_made() -> None:
    kept, answered = _seen({"REMOTE_ADDR": "203.0.113.9", **FORWARDED})

    assert "HTTP_X_FORWARDED_FOR" not in kept and "HTTP_X_FORWARDED_PROTO" not in kept
    made = dict(answered)["X-Request-ID"]
    assert made != "from-the-balancer-1" and len(made) == 16
    assert kept["HTTP_X_REQUEST_ID"] == made


def test_a_malformed_request_id_from_the_balancer_is_replaced() -> None:
    kept, answered = _seen({"REMOTE_ADDR": "127.0.0.1", "HTTP_X_REQUEST_ID": "two\nlines"})

    assert dict(answered)["X-Request-ID"] == kept["HTTP_X_REQUEST_ID"] != "two\nlines"


def test_per_ip_limits_believe_the_header_from_a_trusted_balancer_only() -> None:
    factory = RequestFactory()
    from_balancer = factory.get("/", REMOTE_ADDR="10.1.9.9", HTTP_X_FORWARDED_FOR="198.51.100.7")
    from_anyone = factory.get("/", REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="198.51.100.7")
    with override_settings(ANTIBOT_CLIENT_IP_HEADER="X-Forwarded-For", TRUSTED_PROXY_NETWORKS=["10.1.0.0/16"]):
        assert client_ip(from_balancer) == "198.51.100.7"
        assert client_ip(from_anyone) == "203.0.113.9"
        assert proxy_trusted("::ffff:10.1.0.1") and not proxy_trusted("10.2.0.1")
