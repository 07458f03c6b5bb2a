"""The multi-host suite's stack: one topology for the whole package (starting it costs most of
a minute), on hosts made as network namespaces, which needs root on Linux.

The suite runs or fails, here and under CI alike: it is never skipped. Where namespaces cannot
be made, every test of it fails with the reason and the way to leave it out knowingly
(``make test ARGS="--ignore=tests/hosts"``), so that a run without it says so in its command.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.netns import refusal

from .topology import Topology, topology_running


def namespaces_or_fail() -> None:
    """Return when this machine can make the hosts; otherwise fail with why and what to do."""
    why = refusal()
    if why is not None:
        pytest.fail(
            f"the multi-host suite (tests/hosts) cannot run here: {why}. Run `make test` as root on "
            'Linux, or leave the suite out knowingly with make test ARGS="--ignore=tests/hosts"',
            pytrace=False,
        )


@pytest.fixture(scope="package")
def topology() -> Iterator[Topology]:
    namespaces_or_fail()
    with topology_running() as running:
        yield running
