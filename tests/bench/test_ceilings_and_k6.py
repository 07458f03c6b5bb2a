"""The benchmark's baselines and its k6 script (issue 27), against real servers: the WSGI
ceiling on the web process's own command line, the TLV ceiling over a real socket, and the
k6 stampede against the real web server with tokens from ``manage.py flashsale shoppers``.
Nothing here is timed."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import call_command

from bench.ceiling_app import BODY
from bench.k6 import SCRIPT, k6_binary
from bench.stack import CEILING_APP
from devstack import probes
from devstack.children import Child, spawn
from devstack.localservers import free_port
from devstack.procfile import WSGI_APP, Shape, command
from sales import inventory
from tcpdoor.frames import HEADER, HEADER_SIZE, MessageType, json_frame
from tests.factories import make_sale
from tests.processes import LOG_DIR, ROOT


@pytest.fixture
def ceiling_web() -> Iterator[Child]:
    port = free_port()
    child = spawn(
        "web",
        command("web", Shape().but(web_port=port, web_workers=1, web_app=CEILING_APP)),
        env={"PATH": "/usr/bin:/bin"},
        cwd=ROOT,
        log=LOG_DIR / f"ceiling-web-{port}.log",
        port=port,
    )
    child.wait_until(lambda: probes.port_open(port), what=f"listen on {port}", timeout=30)
    yield child
    child.stop()


@pytest.fixture
def tlv_ceiling() -> Iterator[Child]:
    port = free_port()
    child = spawn(
        "tlv-ceiling",
        [sys.executable, "-m", "bench.tlv_ceiling", "--port", str(port)],
        env={"PATH": "/usr/bin:/bin"},
        cwd=ROOT,
        log=LOG_DIR / f"tlv-ceiling-{port}.log",
        port=port,
    )
    child.wait_until(lambda: probes.port_open(port), what=f"listen on {port}", timeout=30)
    yield child
    child.stop()


def test_the_wsgi_ceiling_is_the_web_command_line_with_only_the_app_differing() -> None:
    shipped, ceiling = command("web", Shape()), command("web", Shape().but(web_app=CEILING_APP))

    assert ceiling[:-1] == shipped[:-1]
    assert (shipped[-1], ceiling[-1]) == (WSGI_APP, CEILING_APP)


def test_the_wsgi_ceiling_answers_its_fixed_body_to_a_purchase_shaped_post(ceiling_web: Child) -> None:
    # Given no Django at all behind granian (the child's environment names no settings)
    request = urllib.request.Request(
        f"http://127.0.0.1:{ceiling_web.port}/api/sales/1/purchase/",
        data=b'{"challenge": "c", "solution": "s"}',
        headers={"Authorization": "Bearer t", "Content-Type": "application/json"},
    )

    with urllib.request.urlopen(request, timeout=10) as response:
        status, content_type, body = response.status, response.headers["Content-Type"], response.read()

    assert (status, content_type, body) == (200, "application/json", BODY)
    assert json.loads(body)["status"] == "OK"


def _read_frame(sock: socket.socket) -> tuple[int, bytes]:
    def exactly(size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    kind, length = HEADER.unpack(exactly(HEADER_SIZE))
    return kind, exactly(length)


def test_the_tlv_ceiling_answers_each_frame_of_a_pipelined_burst_with_the_fixed_frame(tlv_ceiling: Child) -> None:
    with socket.create_connection(("127.0.0.1", tlv_ceiling.port), timeout=10) as sock:
        # Given three frames in one write, as a pipelining client sends them
        attempt = json_frame(MessageType.ATTEMPT_PURCHASE, {"product_id": 1, "token": "t"})
        sock.sendall(attempt + json_frame(MessageType.PING, {}) + attempt)

        answers = [_read_frame(sock) for _ in range(3)]

    assert [kind for kind, _ in answers] == [
        MessageType.ATTEMPT_PURCHASE,
        MessageType.PING,
        MessageType.ATTEMPT_PURCHASE,
    ]
    assert {json.loads(payload)["status"] for _, payload in answers} == {"SOLD_OUT"}


def test_the_tlv_ceiling_refuses_a_broken_frame_as_the_door_does(tlv_ceiling: Child) -> None:
    with socket.create_connection(("127.0.0.1", tlv_ceiling.port), timeout=10) as sock:
        sock.sendall(HEADER.pack(0x55, 2) + b"{}")

        kind, payload = _read_frame(sock)
        closed = sock.recv(1)

    assert (kind, json.loads(payload)["status"], closed) == (MessageType.ERROR, "ERROR", b"")


def test_the_k6_script_parses() -> None:
    inspected = subprocess.run(
        [k6_binary(), "inspect", "-e", "SALE_ID=1", "-e", f"SHOPPERS={SCRIPT}", str(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["scenarios"]["stampede"]["executor"] == "shared-iterations"


@pytest.mark.django_db(transaction=True)
def test_the_k6_stampede_sells_exactly_the_stock_with_tokens_from_manage_py(web_server: Child, tmp_path: Path) -> None:
    # Given two units, and three shoppers made by the operator's tool
    sale = make_sale(stock=2)
    out = io.StringIO()
    call_command("flashsale", "shoppers", "3", "--json", stdout=out)
    shoppers = tmp_path / "shoppers.json"
    shoppers.write_text(out.getvalue(), encoding="utf-8")

    # When k6 has each of them press Buy twice over three connections
    argv = [sys.executable, "-m", "bench.k6", "--url", web_server.url, "--sale", str(sale.pk)]
    argv += ["--shoppers", str(shoppers), "--vus", "3", "--iterations", "6", "--json"]
    run = subprocess.run(
        argv,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    # Then two won, the other four presses heard "sold out" or "already bought", nothing else
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(run.stdout)
    assert (result["requests"], result["statuses"], result["socket_errors"]) == (6, {"201": 2, "409": 4}, {})
    assert len(inventory.sale_buyers(sale.pk)) == 2
