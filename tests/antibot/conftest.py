from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.processes import OPEN_ADMISSION, ChildProcess, start_web


@pytest.fixture(scope="module")
def open_server(django_db_setup: None) -> Iterator[ChildProcess]:
    """granian with per-user and per-IP limits off (the token bucket is per sale)."""
    child = start_web(env=OPEN_ADMISSION)
    yield child
    child.stop()


# Long: a test's calls must fall in one window, which are fixed spans of the clock.
GUARDED_WINDOW_SECONDS = 60


@pytest.fixture(scope="module")
def guarded_server(django_db_setup: None) -> Iterator[ChildProcess]:
    """granian behind a (pretend) trusted proxy that sets X-Real-IP, with tight windows:
    3 calls per user and 5 per IP on a sale per minute. One worker process: the windows are
    counted in each process (docs/funnel.md), so one process makes the counts exact."""
    child = start_web(
        workers=1,
        env={
            "ANTIBOT_USER_LIMIT": "3",
            "ANTIBOT_IP_LIMIT": "5",
            "ANTIBOT_RATE_WINDOW_SECONDS": str(GUARDED_WINDOW_SECONDS),
            "ANTIBOT_CLIENT_IP_HEADER": "X-Real-IP",
        },
    )
    yield child
    child.stop()
