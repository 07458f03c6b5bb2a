"""The multi-host suite's stack: one topology for the whole package (starting it costs most of
a minute), on hosts made as network namespaces, which needs root on Linux.

Where namespaces cannot be made, the suite is skipped with the reason, or fails with it when
``FLASHSALE_REQUIRE_NETNS=1`` (CI sets it: there the suite must run, never skip quietly).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from devstack.netns import refusal

from .topology import Topology, topology_running

REQUIRED = "FLASHSALE_REQUIRE_NETNS"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "hosts: the production topology as hosts in network namespaces (root)")


def namespaces_or_why() -> None:
    """Return when this machine can make the hosts; otherwise skip, or fail under CI's flag."""
    why = refusal()
    if why is None:
        return
    message = f"the multi-host suite (tests/hosts) cannot run here: {why}"
    if os.environ.get(REQUIRED) == "1":
        pytest.fail(f"{message}; {REQUIRED}=1 requires it (CI)", pytrace=False)
    pytest.skip(f"{message} (set {REQUIRED}=1 to make this a failure)")


@pytest.fixture(scope="package")
def topology() -> Iterator[Topology]:
    namespaces_or_why()
    with topology_running() as running:
        yield running
