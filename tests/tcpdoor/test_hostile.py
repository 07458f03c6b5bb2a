"""Hostile and broken input against the real TCP door: each case gets the contract's answer,
never a crash or a hang, and none holds up the other connections."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import time
from collections.abc import Iterator

import psutil
import pytest

from sales import inventory
from tests.clients import Wire, frame, tcp_ask
from tests.factories import make_sale, make_shoppers
from tests.polling import wait_for
from tests.processes import OPEN_ADMISSION, ChildProcess, start_tcp

pytestmark = pytest.mark.django_db(transaction=True)

ATTEMPT, CHALLENGE, STATUS, PING, ERROR = 0x01, 0x02, 0x03, 0x04, 0x7F
# Short limits so each case ends quickly; what they bound is the same at production's values.
STRICT = {
    **OPEN_ADMISSION,
    "TCP_MAX_FRAME_BYTES": "1024",
    "TCP_FRAME_TIMEOUT_SECONDS": "1",
    "TCP_IDLE_TIMEOUT_SECONDS": "2",
    "TCP_WRITE_TIMEOUT_SECONDS": "1",
    "TCP_MAX_CONNECTIONS_PER_IP": "8",
    "TCP_MAX_IN_FLIGHT": "16",
}


@pytest.fixture(scope="module")
def strict_tcp(django_db_setup: None) -> Iterator[ChildProcess]:
    child = start_tcp(env=STRICT)
    yield child
    child.stop()


def _still_serves(server: ChildProcess) -> None:
    assert tcp_ask(server, PING, {}) == {"status": "OK"}


def test_invalid_json_or_utf8_answers_error_and_the_connection_stays_usable(strict_tcp: ChildProcess) -> None:
    deep = b"[" * 510 + b"]" * 510
    with Wire(strict_tcp.port) as wire:
        not_json = wire.ask(ATTEMPT, b'{"product_id": "x", ')
        not_utf8 = wire.ask(ATTEMPT, b'{"product_id": "\xff\xfe"}')
        not_object = wire.ask(ATTEMPT, b'["product_id"]')
        nested = wire.ask(ATTEMPT, deep)
        huge_number = wire.ask(STATUS, b'{"product_id": ' + b"9" * 900 + b"}")
        empty = wire.ask(CHALLENGE, b"")
        lone_surrogate = wire.ask(ATTEMPT, b'{"product_id": 1, "token": "t", "solution": "\\ud800"}')
        # ... and the same connection still answers
        pong = wire.ask(PING, {})

    assert not_json == {"status": "ERROR", "error": "invalid json"}
    assert not_utf8 == {"status": "ERROR", "error": "invalid utf-8"}
    assert not_object["status"] == "ERROR"
    assert nested["status"] == "ERROR"
    assert huge_number["status"] in {"ERROR", "NOT_FOUND"}
    assert empty == {"status": "ERROR", "error": "invalid json"}
    assert lone_surrogate["status"] == "UNAUTHENTICATED"  # The token is checked first; no crash.
    assert pong == {"status": "OK"}


def test_a_length_over_the_maximum_answers_error_and_closes_before_reading_the_payload(
    strict_tcp: ChildProcess,
) -> None:
    with Wire(strict_tcp.port) as wire:
        wire.send(struct.pack(">BI", ATTEMPT, 1025))  # one byte over, and no payload sent at all
        kind, body = wire.read()
        assert wire.closed_by_server()

    assert kind == ERROR
    assert body["status"] == "ERROR"
    assert "1025" in body["error"] and "1024" in body["error"]
    _still_serves(strict_tcp)


def test_an_unknown_type_answers_error_and_closes(strict_tcp: ChildProcess) -> None:
    with Wire(strict_tcp.port) as wire:
        assert wire.ask(PING, {}) == {"status": "OK"}
        wire.send(frame(0x42, b"{}"))
        kind, body = wire.read()
        assert wire.closed_by_server()

    assert (kind, body) == (ERROR, {"status": "ERROR", "error": "unknown message type 0x42"})


def test_a_truncated_frame_is_timed_out(strict_tcp: ChildProcess) -> None:
    with Wire(strict_tcp.port) as wire:
        wire.send(frame(PING, b"{}")[:-1])  # the header, and all but the last byte
        kind, body = wire.read()
        assert wire.closed_by_server()

    assert kind == ERROR
    assert body["error"].startswith("timed out")


def test_a_sender_dribbling_one_byte_at_a_time_is_timed_out_too(strict_tcp: ChildProcess) -> None:
    # Each byte arrives before any per-byte timeout would fire; the frame as a whole never does.
    wanted = frame(ATTEMPT, json.dumps({"product_id": 1, "token": "x" * 200}).encode())
    closed = False
    with Wire(strict_tcp.port) as wire:
        for byte in wanted[:-1]:
            try:
                wire.send(bytes([byte]))
            except OSError:
                closed = True
                break
            time.sleep(0.05)
        if not closed:
            kind, body = wire.read()
            assert (kind, body["error"][:9]) == (ERROR, "timed out")
            assert wire.closed_by_server()


def test_an_idle_connection_is_closed(strict_tcp: ChildProcess) -> None:
    with Wire(strict_tcp.port) as wire:
        assert wire.ask(PING, {}) == {"status": "OK"}
        kind, body = wire.read()  # nothing sent: the server speaks first, once, then closes
        assert wire.closed_by_server()

    assert kind == ERROR
    assert body["error"].startswith("idle")


def test_connections_per_address_are_capped_and_freed_on_close(strict_tcp: ChildProcess) -> None:
    held = [Wire(strict_tcp.port) for _ in range(8)]
    try:
        for wire in held:
            assert wire.ask(PING, {}) == {"status": "OK"}
        with Wire(strict_tcp.port) as refused:
            kind, body = refused.read()
            assert refused.closed_by_server()
        assert kind == ERROR and body["error"].startswith("too many connections from 127.0.0.1")
        held.pop().close()
        wait_for(lambda: _answers_ping(strict_tcp.port), what="a freed place", timeout=10)
    finally:
        for wire in held:
            wire.close()


def test_connections_in_all_are_capped(django_db_setup: None) -> None:
    server = start_tcp(env={**OPEN_ADMISSION, "TCP_MAX_CONNECTIONS": "2"})
    try:
        with Wire(server.port) as one, Wire(server.port) as two:
            assert one.ask(PING, {}) == two.ask(PING, {}) == {"status": "OK"}
            with Wire(server.port) as third:
                kind, body = third.read()
                assert third.closed_by_server()
        assert (kind, body) == (ERROR, {"status": "ERROR", "error": "too many connections: the door holds 2"})
        wait_for(lambda: _answers_ping(server.port), what="a freed place", timeout=10)
    finally:
        server.stop()


def _answers_ping(port: int) -> bool:
    try:
        with Wire(port) as wire:
            return wire.ask(PING, {}) == {"status": "OK"}
    except (OSError, AssertionError):
        return False


def test_a_client_that_stops_reading_is_cut_off_and_holds_up_no_one(strict_tcp: ChildProcess) -> None:
    # Given a client that pipelines PINGs and never reads an answer
    sale = make_sale(stock=10)
    process = psutil.Process(strict_tcp.pid)
    rss_before = process.memory_info().rss
    hog = socket.create_connection(("127.0.0.1", strict_tcp.port))
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    hog.settimeout(0.2)
    ping = frame(PING, b"{}")
    sent = 0
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                sent += hog.send(ping * 512)
            except TimeoutError:
                break  # The server stopped reading it: its buffers and ours are full.
        # Then another client is answered meanwhile, purchases included
        (_, token), *_ = make_shoppers(1)
        assert tcp_ask(strict_tcp, STATUS, {"product_id": sale.pk})["remaining_stock"] == 10
        assert tcp_ask(strict_tcp, ATTEMPT, {"product_id": sale.pk, "token": token})["status"] == "SUCCESS"
        # And after the write timeout the server hangs up on it
        wait_for(lambda: _hung_up(hog), what="the server to cut the reader off", timeout=15)
    finally:
        hog.close()
    # And what it sent did not pile up in the server: it stopped reading long before
    assert sent < 50 * 1024 * 1024
    assert process.memory_info().rss - rss_before < 32 * 1024 * 1024
    _still_serves(strict_tcp)


def _hung_up(sock: socket.socket) -> bool:
    try:
        sock.send(b"\x04")
    except (BrokenPipeError, ConnectionResetError):
        return True
    except TimeoutError:
        return False
    try:
        while True:
            if not sock.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_pipelined_frames_are_answered_in_request_order(strict_tcp: ChildProcess) -> None:
    # Given frames that answer at once (ping, bad JSON) or after Redis calls (status, wins by
    # fifteen different shoppers, which finish in any order), all sent in one write
    sale = make_sale(stock=100)
    shoppers = make_shoppers(15)
    frames: list[tuple[int, bytes]] = []
    expected: list[tuple[int, str]] = []
    who: dict[int, int] = {}  # position -> user id
    for round_number in range(3):
        for user_id, token in shoppers[round_number * 5 : round_number * 5 + 5]:
            who[len(frames)] = user_id
            frames.append((ATTEMPT, json.dumps({"product_id": sale.pk, "token": token}).encode()))
            expected.append((ATTEMPT, "SUCCESS"))
        frames.append((STATUS, json.dumps({"product_id": sale.pk}).encode()))
        expected.append((STATUS, "OK"))
        frames.append((PING, b"{}"))
        expected.append((PING, "OK"))
        frames.append((ATTEMPT, b"not json"))
        expected.append((ATTEMPT, "ERROR"))

    with Wire(strict_tcp.port) as wire:
        wire.send(b"".join(frame(kind, payload) for kind, payload in frames))
        answers = [wire.read() for _ in frames]

    # Then each answer is in its frame's place: the kinds, and each win the order of the
    # shopper whose frame stood there
    assert [(kind, body["status"]) for kind, body in answers] == expected
    buyers = inventory.sale_buyers(sale.pk)
    assert {position: answers[position][1]["order_id"] for position in who} == {
        position: buyers[user_id] for position, user_id in who.items()
    }


def test_sigterm_answers_what_is_in_flight_then_closes_and_exits(django_db_setup: None) -> None:
    # Given a door of its own, and 20 attempts that each need Redis sent in one write
    server = start_tcp(env=OPEN_ADMISSION)
    try:
        sale = make_sale(stock=100)
        shoppers = [token for _, token in make_shoppers(20)]
        with Wire(server.port) as wire:
            wire.send(b"".join(frame(ATTEMPT, json.dumps({"product_id": sale.pk, "token": t}).encode())
                               for t in shoppers))  # fmt: skip
            first = wire.read()  # the server has read them

            # When it is told to stop
            os.kill(server.pid, signal.SIGTERM)

            # Then every attempt is answered, then the connection closes
            rest = [wire.read() for _ in shoppers[1:]]
            assert wire.closed_by_server()
        assert [body["status"] for _, body in [first, *rest]] == ["SUCCESS"] * 20
        assert server.process.wait(timeout=30) == 0
        assert "tcp door: stopped." in server.log.read_text()
        with pytest.raises(OSError):
            Wire(server.port, timeout=2)
    finally:
        server.stop()
