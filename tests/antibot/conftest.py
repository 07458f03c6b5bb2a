from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.processes import OPEN_ADMISSION, ChildProcess, start_web


@pytest.fixture(scope="module")
def open_server(django_db_setup: None) -> Iterator[ChildProcess]:
    """granian with per-user and per-IP limits off (the token bucket is per sale)."""
    child = start_web(env=OPEN_ADMISSION)
    yield child
    child.stop()


# A test's calls must fall in one window, which are fixed spans of the clock: ten seconds
# leave room for them, and keep a test that waits out a window short.
GUARDED_WINDOW_SECONDS = 10


def window_fresh(*, needed_s: float = 3.0) -> None:
    """Wait for the next window when less than ``needed_s`` is left of this one, so the
    calls that follow are counted together."""
    left = GUARDED_WINDOW_SECONDS - time.time() % GUARDED_WINDOW_SECONDS
    if left < needed_s:
        time.sleep(left + 0.05)


@pytest.fixture(scope="module")
def guarded_server(django_db_setup: None) -> Iterator[ChildProcess]:
    """granian behind a (pretend) trusted proxy that sets X-Real-IP, with tight windows:
    3 calls per user and 5 per IP on a sale per ten seconds. One worker process: the windows are
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
