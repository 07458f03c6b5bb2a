"""Connections per address on the web process (core/connection_cap.py): one address holds at
most ``WEB_MAX_CONNECTIONS_PER_IP`` per worker for longer than a sweep, whatever it sends,
while every other address, and a trusted balancer, is served."""

from __future__ import annotations

import socket
import time

import pytest

from tests.polling import wait_for
from tests.processes import ChildProcess

from .conftest import BALANCER, CAP, HEADER_TIMEOUT_MS
from .raw import Raw, head

pytestmark = pytest.mark.django_db(transaction=True)

WORKERS = 2  # capped_web's
HELD_MAX = CAP * WORKERS


def _port(server: ChildProcess) -> int:
    return int(server.url.rsplit(":", 1)[1])


def _still_open(raw: Raw) -> bool:
    """The server has not closed this connection (a read would wait, not end)."""
    raw.sock.setblocking(False)
    try:
        return raw.sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except ConnectionError:
        return False
    finally:
        raw.sock.setblocking(True)


def _open_count(raws: list[Raw]) -> int:
    return sum(_still_open(raw) for raw in raws)


def test_one_address_keeps_at_most_the_cap_whatever_its_connections_send(capped_web: ChildProcess, source: str) -> None:
    # Given one address opening 200 connections: half send nothing, half a header block they never finish
    port = _port(capped_web)
    raws = [Raw(port, source=source) for _ in range(200)]
    try:
        for raw in raws[100:]:
            raw.send(b"POST /api/auth/token/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        began = time.monotonic()

        # Then within a few sweeps, long before the header timeout could close any, it holds at most the cap per worker
        wait_for(lambda: _open_count(raws) <= HELD_MAX, what=f"at most {HELD_MAX} connections left", timeout=5)
        assert time.monotonic() - began < HEADER_TIMEOUT_MS / 1000, "closed by the header timeout, not the cap"
        kept = [raw for raw in raws[:100] if _still_open(raw)]
        assert CAP <= _open_count(raws) <= HELD_MAX

        # And another address is answered meanwhile
        with Raw(port, source="127.0.0.249") as other:
            other.send(head("GET", "/healthz", port))
            answer = other.answer()
        assert answer is not None and answer.status == 200

        # And a connection the address kept is still served
        if kept:
            kept[0].send(head("GET", "/healthz", port))
            answer = kept[0].answer()
            assert answer is not None and answer.status == 200
    finally:
        for raw in raws:
            raw.close()


def test_an_address_under_the_cap_keeps_every_connection(capped_web: ChildProcess, source: str) -> None:
    # Given one address holding as many idle connections as one worker allows
    port = _port(capped_web)
    raws = [Raw(port, source=source) for _ in range(CAP)]
    try:
        # When several sweeps have run
        time.sleep(1.0)

        # Then none was closed, and each is served
        assert _open_count(raws) == CAP
        raws[-1].send(head("GET", "/healthz", port))
        answer = raws[-1].answer()
        assert answer is not None and answer.status == 200
    finally:
        for raw in raws:
            raw.close()


def test_a_trusted_balancer_is_not_capped(capped_web: ChildProcess) -> None:
    # Given the balancer (TRUSTED_PROXY_NETWORKS) holding five times the cap per worker
    port = _port(capped_web)
    raws = [Raw(port, source=BALANCER) for _ in range(HELD_MAX * 5)]
    try:
        # When several sweeps have run
        time.sleep(1.0)

        # Then every connection is still open: the balancer caps its clients itself
        assert _open_count(raws) == len(raws)
    finally:
        for raw in raws:
            raw.close()
