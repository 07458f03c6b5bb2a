"""The fast tier: the funnel's rules and the clock, as pure functions, with no server.

``make test-fast`` runs this folder alone (``--confcutdir``: the suite's conftest, which
starts Redis and PostgreSQL, is not loaded). Every test here runs with sockets and threads
refused, so a rule that reached for the network or started a thread fails here first.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest


class ServerReached(AssertionError):
    """A fast test touched what only the real-server suite may: a socket or a thread."""


def _refuse(*_: Any, **__: Any) -> None:
    raise ServerReached("the fast tier opens no socket and starts no thread")


@pytest.fixture(autouse=True)
def no_sockets_or_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(socket.socket, "connect", _refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", _refuse)
    monkeypatch.setattr(socket.socket, "bind", _refuse)
    monkeypatch.setattr(threading.Thread, "start", _refuse)
    yield
