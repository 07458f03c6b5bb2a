from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.processes import ChildProcess, start_worker
from tests.salelog import LOG_QUEUE


@pytest.fixture(scope="session")
def log_worker(django_db_setup: None) -> Iterator[ChildProcess]:
    """A real Celery worker for the log builder's passes these tests send, on a queue of their
    own: a pass still queued when a test ends can only meet these tests' sales, which build
    safely alongside it."""
    child = start_worker(name="log-worker", queue=LOG_QUEUE)
    yield child
    child.stop()
