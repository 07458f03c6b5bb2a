"""The edge as the compose stack runs it, on loopback: HAProxy with the configuration
devstack/loadbalancer.py writes and a certificate ``make certs`` makes, in front of a granian
web process, a uvicorn ws process and the TCP door, each on the production settings. Clients
speak TLS with Python's ssl, trusting that certificate alone. A shopper's address is a
loopback address of its own (127.0.0.0/8 is all loopback), so the balancer connects from
127.0.0.1 and forwards for another."""

from __future__ import annotations

import json
import os
import random
import socket
import ssl
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from devstack import probes
from devstack.certs import certificates_write
from devstack.loadbalancer import HSTS_SECONDS, LocalHaproxy
from devstack.localservers import free_port
from devstack.procfile import READINESS_PATH
from flashsale_project.settings.environment import redis_db_url
from tests.clients import Browser
from tests.factories import make_sale, make_shoppers
from tests.polling import wait_for
from tests.processes import OPEN_ADMISSION, TEST_SHAPE, ChildProcess, child_env, start, wait_for_http

pytestmark = pytest.mark.django_db(transaction=True)

PRODUCTION = {
    **OPEN_ADMISSION,
    "DJANGO_SETTINGS_MODULE": "flashsale_project.settings.production",
    "ALLOWED_HOSTS": "127.0.0.1,localhost,shop.test",
    "BEHIND_TLS_PROXY": "true",
    "ANTIBOT_CLIENT_IP_HEADER": "X-Forwarded-For",
    "ANTIBOT_TRUSTED_PROXY_COUNT": "1",
    "TCP_PROXY_PROTOCOL": "true",
    "LOGIN_THROTTLE_IP": "2/min",
    "WS_MAX_CONNECTIONS_PER_IP": "1",
    "TCP_MAX_CONNECTIONS_PER_IP": "1",
}


@dataclass
class Edge:
    balancer: LocalHaproxy
    tls: ssl.SSLContext

    def https(self, *, source: str = "127.0.0.1") -> httpx.Client:
        """A client over TLS; its writes carry the page's Origin, as a browser's do (Django's
        CSRF check over HTTPS asks for it)."""
        transport = httpx.HTTPTransport(verify=self.tls, local_address=source)
        return httpx.Client(
            base_url=self.balancer.https_url,
            transport=transport,
            timeout=30,
            headers={"Origin": self.balancer.https_url},
        )


def _shopper_addresses() -> tuple[str, str]:
    """Two loopback addresses no other test of the run uses (the throttles live in Redis)."""
    base = f"127.{random.randint(10, 250)}.{random.randint(0, 250)}"
    return f"{base}.2", f"{base}.3"


@pytest.fixture(scope="module")
def edge(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    pair = certificates_write(tmp_path_factory.mktemp("tls"))
    env = child_env(
        **PRODUCTION,
        SECRET_KEY=settings.SECRET_KEY,  # the tests' tokens verify there
        CELERY_BROKER_URL=redis_db_url(os.environ["REDIS_URL"], 7),
    )
    web_port, ws_port, tcp_port = free_port(), free_port(), free_port()
    web = start("web", TEST_SHAPE.but(web_port=web_port, web_workers=1), env, port=web_port)
    ws = start("ws", TEST_SHAPE.but(ws_port=ws_port), env, port=ws_port)
    tcp = start("tcp", TEST_SHAPE.but(tcp_port=tcp_port), env, port=tcp_port)
    children: list[ChildProcess] = [web, ws, tcp]
    for child in (web, ws):
        wait_for_http(child, READINESS_PATH)
    tcp.wait_until(lambda: probes.tcp_answers(tcp_port), what="answer a PING frame", timeout=30)
    balancer = LocalHaproxy(
        config_dir=tmp_path_factory.mktemp("haproxy"),
        port=free_port(),
        web_ports=(web_port,),
        ws_ports=(ws_port,),
        tls_port=free_port(),
        certificate=pair.certificate,
        tcp_port=free_port(),
        tcp_ports=(tcp_port,),
    ).start()
    tls = ssl.create_default_context(cafile=str(pair.certificate))
    found = Edge(balancer=balancer, tls=tls)
    with found.https() as client:
        wait_for(lambda: client.get(READINESS_PATH).status_code == 200, what="web in rotation behind HAProxy")
    yield found
    balancer.stop()
    for child in children:
        child.stop()


def test_plain_http_is_redirected_to_https_on_the_same_host(edge: Edge) -> None:
    answer = httpx.get(f"{edge.balancer.url}/sales/1/?x=1", headers={"Host": "shop.test"}, timeout=10)

    assert answer.status_code == 301
    assert answer.headers["Location"] == "https://shop.test/sales/1/?x=1"
    assert "Strict-Transport-Security" not in answer.headers


def test_https_answers_carry_hsts_and_a_request_id(edge: Edge) -> None:
    with edge.https() as client:
        page = client.get("/")
        again = client.get("/")

    assert page.status_code == 200
    assert page.headers["Strict-Transport-Security"] == f"max-age={HSTS_SECONDS}"
    assert len(page.headers["X-Request-ID"]) >= 16
    assert page.headers["X-Request-ID"] != again.headers["X-Request-ID"]


def test_a_purchase_over_https_wins(edge: Edge) -> None:
    sale = make_sale(stock=3)
    [(_, token)] = make_shoppers(1)
    with edge.https() as client:
        bought = client.post(f"/api/sales/{sale.pk}/purchase/", json={}, headers={"Authorization": f"Token {token}"})

    assert bought.status_code == 201, bought.text
    assert bought.json()["status"] == "SUCCESS"
    # The balancer's id, believed from the balancer, is the answer's on the hot path too.
    assert len(bought.headers["X-Request-ID"]) >= 16


def test_a_shopper_signs_in_with_secure_cookies_and_the_page_opens_a_wss_socket(edge: Edge) -> None:
    sale = make_sale(stock=3)
    username = f"tls{random.randint(0, 10**9)}"
    with edge.https() as client:
        registered = client.post("/api/auth/register/", json={"username": username, "password": "a-long-pass-phrase"})
        assert registered.status_code == 201, registered.text
    browser = Browser(edge.balancer.https_url)
    browser.http = edge.https()
    try:
        login_page = browser.http.get("/accounts/login/")
        assert "Secure" in login_page.headers["Set-Cookie"] and "csrftoken" in login_page.headers["Set-Cookie"]
        answer = browser.submit("/accounts/login/", username=username, password="a-long-pass-phrase")
        assert answer.status_code == 302, answer.text[:500]
        assert any("sessionid" in line and "Secure" in line for line in answer.headers.get_list("Set-Cookie"))
        page = browser.http.get(f"/sales/{sale.pk}/")
        bought = browser.http.post(f"/api/sales/{sale.pk}/purchase/", json={}, headers=browser.session_headers())
    finally:
        browser.close()

    assert f"wss://127.0.0.1:{edge.balancer.tls_port}/ws/sales/{sale.pk}/" in page.text
    assert bought.status_code == 201, bought.text


def test_the_live_socket_goes_over_wss(edge: Edge) -> None:
    sale = make_sale(stock=4)
    url = f"wss://127.0.0.1:{edge.balancer.tls_port}/ws/sales/{sale.pk}/"
    origin = Origin(edge.balancer.https_url)
    with connect(url, ssl=edge.tls, origin=origin, open_timeout=30) as sock:
        hello = json.loads(sock.recv(timeout=30))

    assert (hello["type"], hello["remaining_stock"]) == ("hello", 4)


def test_the_login_throttle_counts_each_shopper_behind_the_balancer_not_the_balancer(edge: Edge) -> None:
    first, second = _shopper_addresses()
    body = {"username": f"nobody{random.randint(0, 10**9)}", "password": "wrong"}
    with edge.https(source=first) as shopper, edge.https(source=second) as neighbour:
        answers = [shopper.post("/api/auth/token/", json=body).status_code for _ in range(3)]
        other = neighbour.post("/api/auth/token/", json=body)

    assert answers == [400, 400, 429]
    assert other.status_code == 400


def test_the_socket_cap_per_address_counts_each_shopper_behind_the_balancer(edge: Edge) -> None:
    first, second = _shopper_addresses()
    sale = make_sale(stock=4)
    url = f"wss://127.0.0.1:{edge.balancer.tls_port}/ws/sales/{sale.pk}/"
    origin = Origin(edge.balancer.https_url)

    def open_socket(source: str) -> ClientConnection:
        return connect(url, ssl=edge.tls, origin=origin, open_timeout=30, source_address=(source, 0))

    with open_socket(first) as held, open_socket(second) as neighbour:
        assert json.loads(held.recv(timeout=30))["type"] == "hello"
        assert json.loads(neighbour.recv(timeout=30))["type"] == "hello"
        with open_socket(first) as extra, pytest.raises(ConnectionClosed) as closed:
            while True:
                extra.recv(timeout=30)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013


def _tcp_ping(port: int, source: str) -> tuple[int, dict]:
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as sock:
        sock.sendall(bytes.fromhex("04000000027b7d"))
        head = b""
        while len(head) < 5:
            chunk = sock.recv(5 - len(head))
            if not chunk:
                raise ConnectionError("closed")
            head += chunk
        kind, length = struct.unpack(">BI", head)
        body = b""
        while len(body) < length:
            body += sock.recv(length - len(body))
        if kind == 0x04:
            # Held open while the next connection from the same address arrives.
            _held.append(sock.dup())
        return kind, json.loads(body)


_held: list[socket.socket] = []


def test_the_tcp_door_counts_each_shopper_through_the_proxy_protocol(edge: Edge) -> None:
    first, second = _shopper_addresses()
    try:
        answered = _tcp_ping(edge.balancer.tcp_port, first)
        refused = _tcp_ping(edge.balancer.tcp_port, first)
        neighbour = _tcp_ping(edge.balancer.tcp_port, second)
    finally:
        for sock in _held:
            sock.close()
        _held.clear()

    assert answered[0] == 0x04
    assert refused[0] == 0x7F and f"too many connections from {first}" in refused[1]["error"]
    assert neighbour[0] == 0x04


def test_the_certificate_is_the_one_make_certs_writes(tmp_path: Path) -> None:
    pair = certificates_write(tmp_path, hosts=("shop.test",))
    again = certificates_write(tmp_path, hosts=("shop.test",))

    assert pair == again and pair.certificate.read_bytes() == again.certificate.read_bytes()
    assert pair.key.name == pair.certificate.name + ".key"  # HAProxy loads it by that name
    assert oct(tmp_path.stat().st_mode & 0o777) == "0o700"
    context = ssl.create_default_context(cafile=str(pair.certificate))
    assert context.cert_store_stats()["x509_ca"] == 1
