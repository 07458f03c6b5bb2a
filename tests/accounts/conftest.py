"""The real servers the accounts suites talk to, besides the session's web and TCP doors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.processes import OPEN_ADMISSION, ChildProcess, start_tcp, start_web


@pytest.fixture(scope="session")
def trusted_tcp_server(django_db_setup: None) -> Iterator[ChildProcess]:
    """The TCP door run with --trust-user-id (a gateway names the shopper), admission limits off."""
    child = start_tcp(env=OPEN_ADMISSION, trust_user_id=True)
    yield child
    child.stop()


@pytest.fixture
def admin_server(django_db_setup: None) -> Iterator[ChildProcess]:
    """A web process of the test's own for the admin's writes. A transactional test's flush
    recreates the content types under new ids, and the admin logs each change under the id
    its process cached: a process that outlives a flush logs under a stale one."""
    child = start_web(workers=1, env=OPEN_ADMISSION)
    yield child
    child.stop()
