"""Connections one address may hold open on a web process (``WEB_MAX_CONNECTIONS_PER_IP``),
as the TCP door and the socket cap theirs (docs/design.md, "Slow clients and bodies").

granian accepts connections in its own runtime: it has no per-address limit, and a WSGI
application sees requests, not connections. But the sockets it accepted are descriptors of
this process, so a daemon thread here can see them: every ``WEB_CONNECTION_SWEEP_SECONDS`` it
lists ``/proc/self/fd``, groups the TCP connections accepted on this process's listening
ports by peer address, and shuts down (``shutdown(SHUT_RDWR)``, which granian sees as the
client leaving and answers by closing its side) the ones an address holds over the cap, the
most recently numbered first. An address over the cap thus keeps at most the cap for longer
than one sweep, whatever it sends or does not send.

No request pays for it: the thread never touches a request, and a sweep of a process holding
fewer descriptors than the cap (no address can be over it) ends after one directory listing.
Peers inside ``TRUSTED_PROXY_NETWORKS`` (the balancer in front, which caps addresses itself:
devstack/loadbalancer.py) are not counted; loopback is, because under ``make run`` nothing
stands in front of the web process and a hostile client on the same machine is loopback too.
Linux only (``/proc``); elsewhere the thread logs that it cannot run and stops.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings

from .client_address import IPNetwork, address_in, networks_parse

logger = logging.getLogger(__name__)

FD_DIR = "/proc/self/fd"
_INET = (socket.AF_INET, socket.AF_INET6)


@dataclass(frozen=True)
class Connection:
    fd: int
    local_port: int
    peer: str


def _inspect(fd: int) -> tuple[int, str | None] | None:
    """(local port, peer address) of a TCP socket, peer None for a listener; None for any
    other descriptor. The descriptor is borrowed (``detach``), never closed."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return None
    try:
        if sock.family not in _INET or sock.type != socket.SOCK_STREAM:
            return None
        port = sock.getsockname()[1]
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            return port, None
        return port, sock.getpeername()[0]
    except OSError:  # Closed meanwhile, or not connected.
        return None
    finally:
        sock.detach()


def accepted_connections(fds: Iterable[int]) -> list[Connection]:
    """The TCP connections among ``fds`` whose local port is one this process listens on."""
    listening: set[int] = set()
    connected: list[Connection] = []
    for fd in fds:
        found = _inspect(fd)
        if found is None:
            continue
        port, peer = found
        if peer is None:
            listening.add(port)
        else:
            connected.append(Connection(fd, port, peer))
    return [connection for connection in connected if connection.local_port in listening]


def over_cap(connections: Iterable[Connection], limit: int, exempt: tuple[IPNetwork, ...]) -> list[Connection]:
    """The connections past the first ``limit`` of each address (by descriptor number), other
    than those of exempt peers."""
    by_peer: dict[str, list[Connection]] = {}
    for connection in connections:
        by_peer.setdefault(connection.peer, []).append(connection)
    excess: list[Connection] = []
    for peer, held in by_peer.items():
        if len(held) <= limit or address_in(peer, exempt, loopback=False):
            continue
        excess.extend(sorted(held, key=lambda connection: connection.fd)[limit:])
    return excess


def _shut(fd: int) -> bool:
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return False
    try:
        sock.shutdown(socket.SHUT_RDWR)
        return True
    except OSError:
        return False
    finally:
        sock.detach()


class ConnectionCap:
    """The sweeping thread of one process (``start`` once; a forked child starts its own)."""

    def __init__(self, limit: int, interval: float, exempt: tuple[IPNetwork, ...]) -> None:
        self.limit = limit
        self.interval = interval
        self.exempt = exempt
        self._pid = 0

    def sweep(self) -> int:
        """One pass: shuts what is over the cap, returns how many connections it shut."""
        names = os.listdir(FD_DIR)
        if len(names) <= self.limit:
            return 0
        excess = over_cap(accepted_connections(int(name) for name in names), self.limit, self.exempt)
        shut = sum(_shut(connection.fd) for connection in excess)
        if shut:
            peers = sorted({connection.peer for connection in excess})
            logger.warning(
                "closed %d connections over WEB_MAX_CONNECTIONS_PER_IP=%d from %s",
                shut,
                self.limit,
                ", ".join(peers[:5]) + (f" and {len(peers) - 5} more" if len(peers) > 5 else ""),
            )
        return shut

    def start(self) -> None:
        if self.limit <= 0 or self._pid == os.getpid():
            return
        if not os.path.isdir(FD_DIR):
            logger.warning("WEB_MAX_CONNECTIONS_PER_IP is not enforced here: %s is missing", FD_DIR)
            return
        self._pid = os.getpid()
        logger.info(
            "at most %d connections per address on this worker (WEB_MAX_CONNECTIONS_PER_IP), swept every %g s",
            self.limit,
            self.interval,
        )
        threading.Thread(target=self._run, name="connection-cap", daemon=True).start()

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            try:
                self.sweep()
            except Exception:  # A sweep that fails must not end the cap for good.
                logger.exception("connection sweep failed")


def from_settings() -> ConnectionCap:
    """The cap of this process's settings (the web process's; started by its WSGI module)."""
    exempt = networks_parse(settings.TRUSTED_PROXY_NETWORKS, setting="TRUSTED_PROXY_NETWORKS")
    return ConnectionCap(settings.WEB_MAX_CONNECTIONS_PER_IP, settings.WEB_CONNECTION_SWEEP_SECONDS, exempt)
