"""Fixtures of the observability suite: a web server in prometheus_client's multiprocess mode."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import OPEN_ADMISSION, start_web

from .scraping import MetricsServer


@pytest.fixture
def metrics_server(tmp_path: Path, django_db_setup: None) -> Iterator[MetricsServer]:
    """granian with two worker processes sharing a fresh, empty multiprocess directory (set
    in the environment the server starts from, as prometheus_client's documentation asks)."""
    multiproc_dir = tmp_path / "prometheus"
    multiproc_dir.mkdir()
    web = start_web(
        workers=2,
        env={**OPEN_ADMISSION, "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir), "METRICS_CELERY_PING_SECONDS": "0.3"},
    )
    yield MetricsServer(web=web, multiproc_dir=multiproc_dir)
    web.stop()
