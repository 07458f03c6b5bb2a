"""Which connections the web process's per-address cap closes (core/connection_cap.py), with
no server: past the first ``limit`` of an address, by descriptor number; loopback counted;
a trusted balancer's network never."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from core.connection_cap import Connection, over_cap

BALANCER = (ipaddress.ip_network("10.0.0.0/8"),)
PEERS = st.sampled_from(["127.0.0.1", "127.0.0.2", "192.0.2.7", "10.1.2.3", "::ffff:10.9.9.9", "2001:db8::1"])


@given(st.lists(PEERS, max_size=60), st.integers(min_value=1, max_value=10))
def test_each_address_keeps_exactly_its_first_limit_connections(peers: list[str], limit: int) -> None:
    connections = [Connection(fd=fd, local_port=8000, peer=peer) for fd, peer in enumerate(peers, start=10)]
    closed = over_cap(connections, limit, BALANCER)
    closed_fds = {connection.fd for connection in closed}
    for peer in set(peers):
        held = sorted(connection.fd for connection in connections if connection.peer == peer)
        kept = [fd for fd in held if fd not in closed_fds]
        if peer in ("10.1.2.3", "::ffff:10.9.9.9"):  # The balancer's network (an IPv4-mapped address too).
            assert kept == held
        else:
            assert kept == held[:limit]


def test_loopback_is_capped_unless_a_trusted_network_names_it() -> None:
    connections = [Connection(fd=fd, local_port=8000, peer="127.0.0.1") for fd in range(5)]
    assert [connection.fd for connection in over_cap(connections, 2, BALANCER)] == [2, 3, 4]
    assert over_cap(connections, 2, (ipaddress.ip_network("127.0.0.0/8"),)) == []
