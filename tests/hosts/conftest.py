"""The multi-host suite's stack: one topology for the whole package (starting it costs most of
a minute), on hosts made as network namespaces, which needs root on Linux.

Where namespaces cannot be made, the suite is skipped with the reason (``-ra`` prints it in
the summary of ``make test``), or fails with it under CI: when ``CI`` is set (as CI services
set it) or ``FLASHSALE_REQUIRE_NETNS=1`` (``.ci/run`` sets it), the suite must run, never
skip quietly.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from devstack.netns import refusal

from .topology import Topology, topology_running

REQUIRED = "FLASHSALE_REQUIRE_NETNS"


def required() -> bool:
    """CI's: the suite must run here (``CI`` set to anything but 0/false, or the explicit flag)."""
    ci = os.environ.get("CI", "").strip().lower()
    return os.environ.get(REQUIRED) == "1" or ci not in ("", "0", "false", "no")


def namespaces_or_why() -> None:
    """Return when this machine can make the hosts; otherwise skip, or fail under CI's flag."""
    why = refusal()
    if why is None:
        return
    message = f"the multi-host suite (tests/hosts) cannot run here: {why}"
    if required():
        pytest.fail(f"{message}; under CI (CI or {REQUIRED}=1 set) it must run", pytrace=False)
    pytest.skip(f"{message} (under CI, with CI or {REQUIRED}=1 set, this is a failure)")


@pytest.fixture(scope="package")
def topology() -> Iterator[Topology]:
    namespaces_or_why()
    with topology_running() as running:
        yield running
