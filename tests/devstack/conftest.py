"""Fixtures of the devstack tests."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A directory of this test's own under /tmp, outside pytest's ``tmp_path``: when we are
    root, PostgreSQL runs as another user who must reach its data directory, and any pytest
    session of this user starting meanwhile makes pytest's base directory private again."""
    path = Path(tempfile.mkdtemp(prefix="flashsale-devstack-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)
