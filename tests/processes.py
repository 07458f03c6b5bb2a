"""The project's own processes, started for real: granian serving the WSGI app, uvicorn
serving the ASGI app, Celery workers. Each listens on 127.0.0.1 only, on a free port, and
is stopped by the fixture that started it. Their logs go to ``artifacts/logs/``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from flashsale_project.localservers import free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LOG_DIR = ROOT / "artifacts" / "logs"

# Servers shared by many tests answer every caller: admission limits off unless a test asks.
OPEN_ADMISSION = {"ANTIBOT_USER_LIMIT": "0", "ANTIBOT_IP_LIMIT": "0"}


@dataclass
class ChildProcess:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    port: int = 0
    env: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def kill(self) -> None:
        """SIGKILL the whole process group: no shutdown code runs."""
        self.stop(signal.SIGKILL)


def tests_database_url() -> str:
    """The URL of the test database pytest-django created (children must use it too)."""
    from django.db import connection

    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgresql://{db['USER']}{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


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


def spawn(name: str, command: list[str], env: dict[str, str], *, port: int = 0) -> ChildProcess:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = LOG_DIR / f"{name}-{os.getpid()}-{port or int(time.time() * 1000)}.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    return ChildProcess(name=name, process=process, log=log, port=port, env=env)


def wait_for_http(child: ChildProcess, path: str = "/api/sales/", *, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise RuntimeError(f"{child.name} exited with {child.process.returncode}:\n{child.log_tail()}")
        try:
            with urllib.request.urlopen(child.url + path, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    child.stop()
    raise RuntimeError(f"{child.name} did not answer {path} in {timeout:.0f}s:\n{child.log_tail()}")


def start_web(*, workers: int = 2, env: dict[str, str] | None = None, static_root: Path | None = None) -> ChildProcess:
    """granian serving the WSGI app; with ``static_root`` (a collectstatic output) it also
    serves ``/static/`` as ``make run`` does."""
    port = free_port()
    command = [
        str(BIN / "granian"),
        "--interface", "wsgi",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", str(workers),
        "--log-level", "warning",
        "flashsale_project.wsgi:application",
    ]  # fmt: skip
    if static_root is not None:
        command[1:1] = ["--static-path-route", "/static", "--static-path-mount", str(static_root)]
    child = spawn("web", command, child_env(**(env or {})), port=port)
    wait_for_http(child)
    return child


def start_ws(*, env: dict[str, str] | None = None) -> ChildProcess:
    """uvicorn serving the ASGI app (the WebSockets), as ``make run`` runs it."""
    port = free_port()
    command = [
        str(BIN / "uvicorn"), "flashsale_project.asgi:application",
        "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning",
        "--ws", "sales.ws_protocol:ListenerProtocol", "--ws-per-message-deflate", "false",
        "--ws-max-size", "4096", "--backlog", "4096",
    ]  # fmt: skip
    child = spawn("ws", command, child_env(**(env or {})), port=port)
    wait_for_http(child, "/healthz")
    return child


def start_worker(*, name: str = "worker", queue: str = "celery", **env: str) -> ChildProcess:
    """A Celery worker in one process (``--pool solo``): SIGKILL leaves no orphan behind.
    ``queue`` other than Celery's default keeps the session's shared worker out of a test."""
    node = f"{name}-{os.getpid()}-{int(time.time() * 1000)}@127.0.0.1"
    command = [
        str(BIN / "celery"), "-A", "flashsale_project", "worker",
        "--pool", "solo", "--loglevel", "INFO", "-n", node, "--without-mingle", "--without-gossip", "-Q", queue,
    ]  # fmt: skip
    child = spawn(name, command, child_env(**env))
    child.env["NODE"] = node
    wait_for_worker(child)
    return child


def wait_for_worker(child: ChildProcess, *, timeout: float = 30.0) -> None:
    from flashsale_project.celery import app

    deadline = time.monotonic() + timeout
    node = child.env["NODE"]
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise RuntimeError(f"{child.name} exited with {child.process.returncode}:\n{child.log_tail()}")
        replies = app.control.ping(destination=[node], timeout=0.5) or []
        if any(node in reply for reply in replies):
            return
    child.stop()
    raise RuntimeError(f"worker {node} did not answer a ping in {timeout:.0f}s:\n{child.log_tail()}")


@pytest.fixture(scope="session")
def web_server(django_db_setup: None, django_db_blocker: object) -> Iterator[ChildProcess]:
    """granian serving the WSGI app with two worker processes, admission limits off."""
    child = start_web(env=OPEN_ADMISSION)
    yield child
    child.stop()


@pytest.fixture(scope="session")
def celery_worker(django_db_setup: None) -> Iterator[ChildProcess]:
    child = start_worker()
    yield child
    child.stop()
