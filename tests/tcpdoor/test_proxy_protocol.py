"""The PROXY protocol v2 header the TCP door reads from a trusted balancer: parsed as HAProxy
sends it, refused when it is not one, and read by a real door only with TCP_PROXY_PROTOCOL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tcpdoor.proxy_protocol import SIGNATURE, ProxyHeaderError, proxy_header_parse, proxy_header_v2
from tests.clients import Wire
from tests.processes import ChildProcess, start_tcp

PING = bytes.fromhex("04000000027b7d")


def test_an_ipv4_and_an_ipv6_header_name_the_client_and_their_length() -> None:
    four = proxy_header_v2("203.0.113.7", 51000, "10.0.0.2", 8002)
    six = proxy_header_v2("2001:db8::7", 51000, "2001:db8::2", 8002)

    assert proxy_header_parse(four + PING) == proxy_header_parse(four)
    parsed = proxy_header_parse(four + PING)
    assert parsed is not None and (parsed.source, parsed.length) == ("203.0.113.7", len(four))
    parsed = proxy_header_parse(six)
    assert parsed is not None and (parsed.source, parsed.length) == ("2001:db8::7", 16 + 36)


def test_a_header_arriving_in_pieces_waits_for_the_rest() -> None:
    header = proxy_header_v2("203.0.113.7", 1, "10.0.0.2", 2)
    for cut in (1, 11, 12, 15, 16, len(header) - 1):
        assert proxy_header_parse(header[:cut]) is None


def test_a_local_command_keeps_the_peer_as_the_client() -> None:
    local = SIGNATURE + bytes([0x20, 0x00, 0x00, 0x00])
    parsed = proxy_header_parse(local)
    assert parsed is not None and (parsed.source, parsed.length) == (None, 16)


@pytest.mark.parametrize(
    "data",
    [
        b"\r\n\r\nnot-a-header....",
        SIGNATURE + bytes([0x10, 0x11, 0x00, 0x0C]) + bytes(12),  # version 1
        SIGNATURE + bytes([0x2F, 0x11, 0x00, 0x0C]) + bytes(12),  # unknown command
        SIGNATURE + bytes([0x21, 0x11, 0xFF, 0xFF]),  # a block too long
    ],
)
def test_bytes_that_are_not_a_header_are_refused(data: bytes) -> None:
    with pytest.raises(ProxyHeaderError):
        proxy_header_parse(data)


@pytest.fixture(scope="module")
def proxied_door(django_db_setup: None) -> Iterator[ChildProcess]:
    child = start_tcp(env={"TCP_PROXY_PROTOCOL": "true", "TCP_MAX_CONNECTIONS_PER_IP": "1"})
    yield child
    child.stop()


def test_a_door_behind_a_balancer_counts_the_client_the_header_names(proxied_door: ChildProcess) -> None:
    port = int(proxied_door.url.rsplit(":", 1)[1])
    with Wire(port) as first, Wire(port) as second, Wire(port) as plain:
        first.send(proxy_header_v2("198.51.100.1", 1, "127.0.0.1", port))
        first.send(PING)
        assert first.read()[0] == 0x04
        second.send(proxy_header_v2("198.51.100.1", 2, "127.0.0.1", port) + PING)
        refused = second.read()
        plain.send(PING)  # no header from a trusted peer: the peer is the client
        assert plain.read()[0] == 0x04

    assert refused[0] == 0x7F and "too many connections from 198.51.100.1" in refused[1]["error"]
