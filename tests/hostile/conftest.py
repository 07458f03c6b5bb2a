"""Servers for the hostile-client suite: granian as ``make run`` runs it, with the deadlines
for headers and bodies shortened so that a case takes seconds, not the shipped five."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from tests.processes import OPEN_ADMISSION, ChildProcess, start_web

BODY_TIMEOUT_SECONDS = 2.0
HEADER_TIMEOUT_MS = 2000
# Admission windows off, but the shipped cap on bodies per address (its default) left on.
SHORT_DEADLINES = {
    **{name: value for name, value in OPEN_ADMISSION.items() if name != "WEB_BODIES_PER_IP"},
    "WEB_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT_SECONDS),
    # The connection cap has its own fixture (capped_web): these cases hold more connections
    # from one address than it allows, to see what the deadlines do with each.
    "WEB_MAX_CONNECTIONS_PER_IP": "0",
}

_sources = itertools.count(10)


@pytest.fixture(scope="module")
def slow_web(django_db_setup: None) -> Iterator[ChildProcess]:
    """make run's web process (2 workers x 8 threads) with 2 s deadlines for headers and bodies."""
    child = start_web(env=SHORT_DEADLINES, header_timeout_ms=HEADER_TIMEOUT_MS)
    yield child
    child.stop()


SMALL_THREADS = 4
SMALL_CAP = 2


@pytest.fixture(scope="module")
def small_web(django_db_setup: None) -> Iterator[ChildProcess]:
    """One worker with four threads, an address allowed two bodies at once: few enough that a
    handful of slow bodies would hold every thread without the cap."""
    child = start_web(
        workers=1,
        threads=SMALL_THREADS,
        env={**SHORT_DEADLINES, "WEB_BODIES_PER_IP": str(SMALL_CAP)},
        header_timeout_ms=HEADER_TIMEOUT_MS,
    )
    yield child
    child.stop()


CAP = 8
# A peer the cap does not count: a balancer of this deployment (TRUSTED_PROXY_NETWORKS).
BALANCER = "127.0.0.250"


@pytest.fixture(scope="module")
def capped_web(django_db_setup: None) -> Iterator[ChildProcess]:
    """make run's web process (2 workers) allowing an address eight connections per worker,
    swept every 0.2 s, with 127.0.0.250 a trusted balancer."""
    env = {
        **OPEN_ADMISSION,
        "WEB_MAX_CONNECTIONS_PER_IP": str(CAP),
        "WEB_CONNECTION_SWEEP_SECONDS": "0.2",
        "TRUSTED_PROXY_NETWORKS": f"{BALANCER}/32",
    }
    child = start_web(env=env, header_timeout_ms=HEADER_TIMEOUT_MS)
    yield child
    child.stop()


@pytest.fixture
def source() -> str:
    """A loopback address of this test's own: a slow body a test leaves behind still counts
    for its address until its connection closes, which must not reach the next test."""
    return f"127.0.0.{next(_sources)}"
