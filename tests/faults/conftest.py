"""One ``make run`` stack for the whole fault suite (starting one costs a minute), on servers
the cases may kill; stopped with Ctrl-C as a person would."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.localservers import free_port

from .stack import Stack, launch


@pytest.fixture(scope="package")
def stack() -> Iterator[Stack]:
    # Outside pytest's tmp_path: as root, PostgreSQL runs as another user who must reach it.
    scratch = Path(tempfile.mkdtemp(prefix="flashsale-faults-"))
    scratch.chmod(0o755)
    running = launch(scratch, web_port=free_port(), ws_port=free_port())
    try:
        yield running
    finally:
        running.console.interrupt()
        running.postgres.stop()
        running.redis.stop()
        shutil.rmtree(scratch, ignore_errors=True)
