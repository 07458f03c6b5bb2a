"""Fixtures of the console feed's tests: real ws processes (uvicorn, as make run runs it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.processes import OPEN_ADMISSION, ChildProcess, start_ws


@pytest.fixture(scope="session")
def console_ws(django_db_setup: None) -> Iterator[ChildProcess]:
    child = start_ws(env=OPEN_ADMISSION)
    yield child
    child.stop()


@pytest.fixture(scope="session")
def second_console_ws(django_db_setup: None) -> Iterator[ChildProcess]:
    """Another ws process: a console on either hears the same points."""
    child = start_ws(env=OPEN_ADMISSION)
    yield child
    child.stop()
