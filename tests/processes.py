"""The project's own processes, started for real with ``make run``'s command lines
(``devstack.procfile``): granian serving the WSGI app, uvicorn serving the ASGI app, Celery
workers and beat. Each listens on 127.0.0.1 only, on a free port, and is stopped by the
fixture that started it. Their logs go to ``artifacts/logs/``.

A Celery worker that outlives one test (the session's, a module's) is a ``SharedWorker``: it
takes tasks only while a test that asked for it runs, and is idle before that test's
database is flushed (``SharedWorker.working``).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from celery import Celery
from django.db import connection

from devstack import probes
from devstack.children import Child, spawn
from devstack.localservers import LocalRedisCluster, free_port
from devstack.procfile import Shape, command
from flashsale_project.settings.environment import redis_db_url
from tests.polling import wait_for

ROOT = Path(__file__).resolve().parent.parent
LOG_DIR = ROOT / "artifacts" / "logs"

# Servers shared by many tests answer every caller: admission limits off unless a test asks
# (every test speaks from 127.0.0.1, so a per-address limit would count them all as one).
OPEN_ADMISSION = {"ANTIBOT_USER_LIMIT": "0", "ANTIBOT_IP_LIMIT": "0", "WEB_BODIES_PER_IP": "0"}
# make run's shape; each start_* chooses ports and sizes.
TEST_SHAPE = Shape()

# The tests' name for a started process.
ChildProcess = Child


def tests_database_url() -> str:
    """The URL of the test database pytest-django created (children must use it too)."""
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgresql://{db['USER']}{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@contextlib.contextmanager
def buyer_row_locked(user_id: int) -> Iterator[None]:
    """The user's row locked by a connection of this test for the duration: a drain stops at
    that buyer's order (its foreign-key check locks the row too) and commits nothing from
    there on, until the block ends."""
    with psycopg.connect(tests_database_url()) as holder:
        holder.execute("SELECT 1 FROM auth_user WHERE id = %s FOR UPDATE", [user_id])
        yield


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "flashsale_project.settings.test",
            "DATABASE_URL": tests_database_url(),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def start(name: str, shape: Shape, env: dict[str, str], *, port: int = 0, label: str | None = None) -> Child:
    """Process ``name`` of the procfile in ``shape``, its log under artifacts/logs/."""
    label = label or name
    log = LOG_DIR / f"{label}-{os.getpid()}-{port or int(time.time() * 1000)}.log"
    return spawn(label, command(name, shape), env=env, cwd=ROOT, log=log, port=port)


def wait_for_http(child: Child, path: str = "/api/sales/", *, timeout: float = 30.0) -> None:
    child.wait_until(lambda: probes.http_ok(child.url + path), what=f"answer {path}", timeout=timeout)


def start_web(
    *,
    workers: int = 2,
    env: dict[str, str] | None = None,
    static_root: Path | None = None,
    threads: int = TEST_SHAPE.web_threads,
    header_timeout_ms: int = TEST_SHAPE.web_header_timeout_ms,
) -> Child:
    """granian serving the WSGI app; with ``static_root`` (a collectstatic output) it also
    serves ``/static/`` as ``make run`` does."""
    port = free_port()
    shape = TEST_SHAPE.but(
        web_port=port,
        web_workers=workers,
        web_threads=threads,
        web_header_timeout_ms=header_timeout_ms,
        static_root=static_root,
    )
    child = start("web", shape, child_env(**(env or {})), port=port)
    wait_for_http(child)
    return child


def start_ws(*, env: dict[str, str] | None = None) -> Child:
    """uvicorn serving the ASGI app (the WebSockets), as ``make run`` runs it."""
    port = free_port()
    child = start("ws", TEST_SHAPE.but(ws_port=port), child_env(**(env or {})), port=port)
    wait_for_http(child, "/healthz")
    return child


def start_tcp(*, env: dict[str, str] | None = None, trust_user_id: bool = False, metrics_port: int = 0) -> Child:
    """The TCP front door (``manage.py tcpserver``) as ``make run`` runs it, ready once it
    answers a PING frame; with ``metrics_port``, as a container runs it (its own /metrics)."""
    port = free_port()
    shape = TEST_SHAPE.but(tcp_port=port, tcp_trust_user_id=trust_user_id, tcp_metrics_port=metrics_port)
    child = start("tcp", shape, child_env(**(env or {})), port=port)
    child.wait_until(lambda: probes.tcp_answers(port), what="answer a PING frame", timeout=30)
    return child


def start_worker(*, name: str = "worker", queue: str = "celery", pool: str = "solo", **env: str) -> Child:
    """A Celery worker, by default in one process (``--pool solo``: SIGKILL leaves no orphan
    behind). ``queue`` other than Celery's default keeps the session's shared worker out of a
    test. ``env`` may point it at another broker (``CELERY_BROKER_URL``, ``REDIS_URL``)."""
    node = f"{name}-{os.getpid()}-{int(time.time() * 1000)}@127.0.0.1"
    shape = TEST_SHAPE.but(
        worker_node=node,
        worker_pool=pool,
        worker_concurrency=1 if pool == "solo" else TEST_SHAPE.worker_concurrency,
        worker_queues=(queue,),
        worker_cluster_events=False,
    )
    child = start("worker", shape, child_env(**env), label=name)
    child.env["NODE"] = node
    wait_for_worker(child)
    return child


def wait_for_worker(child: Child, *, timeout: float = 30.0) -> None:
    node = child.env["NODE"]
    broker = probes.broker_url(child.env)
    child.wait_until(lambda: probes.celery_answers(broker, node, timeout=0.5), what="answer a ping", timeout=timeout)


@pytest.fixture(scope="session")
def web_server(django_db_setup: None, django_db_blocker: object) -> Iterator[Child]:
    """granian serving the WSGI app with two worker processes, admission limits off."""
    child = start_web(env=OPEN_ADMISSION)
    yield child
    child.stop()


@pytest.fixture(scope="session")
def tcp_server(django_db_setup: None) -> Iterator[Child]:
    """The TCP front door in authenticated mode, admission limits off."""
    child = start_tcp(env=OPEN_ADMISSION)
    yield child
    child.stop()


# A solo worker answers a control message only between tasks: a drain of thousands of
# orders may keep it from answering this long.
WORKER_ANSWERS_WITHIN = 120.0


class SharedWorker:
    """A Celery worker started once for many tests, which works only for the test that asked
    for it (``working``).

    Between such tests it consumes nothing: the drain tasks the servers kick for other tests'
    wins wait in its queue, and are dropped when the next test that asks for it begins. Before
    that test's end it stops consuming and waits until it holds no task, so nothing it does
    overlaps what comes after: above all the flush of a transactional test's database.
    TRUNCATE takes its tables' locks one after another. A drain's transaction holds the
    orders table (its insert) and then locks rows of the sale and user tables (the foreign-key
    checks), a confirmation's holds the orders table and reads the others: begun before the
    flush, either can wait for a table TRUNCATE already holds while TRUNCATE waits for the
    orders table, which PostgreSQL ends as a deadlock.
    """

    def __init__(self, child: Child, *, queue: str = "celery") -> None:
        self.child = child
        self.queue = queue
        self.node = child.env["NODE"]
        self.broker_url = probes.broker_url(child.env)
        self.control = Celery(f"tests-control-{child.name}", broker=self.broker_url, set_as_current=False).control

    @contextlib.contextmanager
    def working(self) -> Iterator[Child]:
        """The worker consuming its queue for the duration, idle and consuming nothing after."""
        self.resume()
        try:
            yield self.child
        finally:
            self.pause()

    def resume(self) -> None:
        """Drop what waits in the queue (kicked for tests that did not ask for a worker), then
        consume it."""
        with redis.Redis.from_url(self.broker_url) as broker:
            broker.delete(self.queue)
        self._tell("add_consumer")

    def pause(self) -> None:
        """Stop consuming, then wait until the worker holds no task (one it had received with
        a countdown runs first). Tasks sent meanwhile wait in the queue."""
        if self.child.process.poll() is not None:
            return  # A dead worker starts no transaction.
        self._tell("cancel_consumer")
        wait_for(self._holds_nothing, what=f"{self.node} to finish its tasks", timeout=WORKER_ANSWERS_WITHIN)

    def settle(self) -> None:
        """Return once the worker has run every task sent to it so far and holds none (what
        those tasks sent in turn included), still consuming."""
        while True:
            self.pause()
            if not self.queued():
                break
            self._tell("add_consumer")
            wait_for(lambda: not self.queued(), what=f"{self.node} to take its queue", timeout=WORKER_ANSWERS_WITHIN)
        self._tell("add_consumer")

    def queued(self) -> int:
        """Tasks waiting in the queue, taken by no worker yet (kombu keeps a queue on Redis as
        a list of that name)."""
        with redis.Redis.from_url(self.broker_url) as broker:
            return int(broker.llen(self.queue))

    def _tell(self, command: str) -> None:
        replies = self.control.broadcast(
            command,
            arguments={"queue": self.queue},
            destination=[self.node],
            reply=True,
            timeout=WORKER_ANSWERS_WITHIN,
        )
        if not any(self.node in reply for reply in replies or []):
            raise AssertionError(f"{self.node} did not answer {command}:\n{self.child.log_tail()}")

    def _holds_nothing(self) -> bool:
        # Checked in the order a task moves (scheduled, reserved, active): with nothing
        # arriving, what is empty once stays empty.
        inspect = self.control.inspect(destination=[self.node], timeout=1.0)
        for held in (inspect.scheduled, inspect.reserved, inspect.active):
            if (held() or {}).get(self.node) != []:
                return False
        return True

    def stop(self) -> None:
        self.control.app.close()
        self.child.stop()


def start_shared_worker(**env: str) -> SharedWorker:
    """A worker for many tests (``SharedWorker``), consuming nothing until one asks."""
    shared = SharedWorker(start_worker(**env))
    shared.pause()
    return shared


@pytest.fixture(scope="session")
def shared_celery_worker(django_db_setup: None) -> Iterator[SharedWorker]:
    shared = start_shared_worker()
    yield shared
    shared.stop()


@pytest.fixture
def celery_worker(shared_celery_worker: SharedWorker) -> Iterator[Child]:
    """The session's worker, draining and confirming for this test alone."""
    with shared_celery_worker.working() as child:
        yield child


def cluster_env(cluster: LocalRedisCluster) -> dict[str, str]:
    """Processes with their sale data on ``cluster``, and a broker database of their own
    (db 4 of the session's Redis): their drain tasks go to their own worker."""
    return {
        "REDIS_CLUSTER_URLS": cluster.urls_setting,
        "CELERY_BROKER_URL": redis_db_url(os.environ["REDIS_URL"], 4),
        **OPEN_ADMISSION,
    }


@pytest.fixture(scope="session")
def cluster_web_server(django_db_setup: None, redis_cluster: LocalRedisCluster) -> Iterator[Child]:
    """granian as ``web_server``, its sale data on the session's Redis Cluster."""
    child = start_web(env=cluster_env(redis_cluster))
    yield child
    child.stop()


@pytest.fixture(scope="session")
def shared_cluster_celery_worker(django_db_setup: None, redis_cluster: LocalRedisCluster) -> Iterator[SharedWorker]:
    shared = start_shared_worker(name="cluster-worker", **cluster_env(redis_cluster))
    yield shared
    shared.stop()


@pytest.fixture
def cluster_celery_worker(shared_cluster_celery_worker: SharedWorker) -> Iterator[Child]:
    """A Celery worker draining sales kept on the session's Redis Cluster, for this test."""
    with shared_cluster_celery_worker.working() as child:
        yield child


@pytest.fixture
def purchase_stack(sale_data: str, request: pytest.FixtureRequest) -> tuple[Child, SharedWorker]:
    """(web, worker) serving the sale data ``sale_data`` chose: the one Redis or the cluster;
    the worker works for this test."""
    if sale_data == "cluster":
        request.getfixturevalue("cluster_celery_worker")
        return request.getfixturevalue("cluster_web_server"), request.getfixturevalue("shared_cluster_celery_worker")
    request.getfixturevalue("celery_worker")
    return request.getfixturevalue("web_server"), request.getfixturevalue("shared_celery_worker")
