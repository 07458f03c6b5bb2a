"""Is a process of the stack up? One question per kind of process, asked from outside.

- web and ws: an HTTP ``GET`` answers 200 (``/readyz``: Redis answers too);
- worker: it answers a Celery ping through the broker (so it consumes, not just runs);
- beat: it said it started (it has no port and answers no ping), and it is still running;
- tcp: it answers a PING frame of its protocol (docs/tcp.md).

This module imports nothing from Django.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from celery import Celery
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from devstack.procfile import LIVENESS_PATH, NAMES, READINESS_PATH, Shape, node_name

PROBE_KINDS = ("live", "ready")

BEAT_STARTED = "beat: Starting..."
"""The line Celery beat logs once its scheduler is set up (after the broker's transport loaded)."""


def http_ok(url: str, *, timeout: float = 2.0) -> bool:
    """``GET url`` answered 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


# The TCP door's PING: type 0x04, length 2, payload {} (docs/tcp.md); the answer has the same type.
TCP_PING = b"\x04\x00\x00\x00\x02{}"


def tcp_answers(port: int, host: str = "127.0.0.1", *, timeout: float = 2.0) -> bool:
    """The TCP door at ``host:port`` answered a PING frame."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(TCP_PING)
            header = b""
            while len(header) < 5:
                chunk = sock.recv(5 - len(header))
                if not chunk:
                    return False
                header += chunk
    except OSError:
        return False
    return header[0] == TCP_PING[0]


def celery_answers(broker_url: str, node: str, *, timeout: float = 1.0) -> bool:
    """The worker ``node`` answered a ping through ``broker_url`` within ``timeout``."""
    # A bare app, and a fresh one each time: pinging needs only the broker, and a connection
    # kept from before a broker restart would be dead. Never the process's current app: the
    # tasks a caller sends go on through its own.
    with Celery("devstack-probe", broker=broker_url, set_as_current=False) as app:
        try:
            replies = app.control.ping(destination=[node], timeout=timeout) or []
        except (OperationalError, RedisError, OSError):
            return False
    return any(node in reply for reply in replies)


def redis_db_url(url: str, db: int) -> str:
    """``url`` pointing at logical database ``db`` (the settings' rule for the broker: db 1)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{db}"))


def broker_url(environ: dict[str, str]) -> str:
    """The Celery broker the processes of ``environ`` use: ``CELERY_BROKER_URL``, else
    ``REDIS_URL``'s server, db 1 (flashsale_project/settings/base.py)."""
    return environ.get("CELERY_BROKER_URL") or redis_db_url(environ["REDIS_URL"], 1)


def process_answers(kind: str, name: str, environ: Mapping[str, str]) -> bool:
    """The probe ``kind`` (``live`` or ``ready``) of process ``name`` of the container whose
    environment is ``environ``, asked from inside it: what compose's healthchecks, the
    Dockerfile's and the manifests' exec probes run (``devstack.deployment``).

    web and ws: ``LIVENESS_PATH`` / ``READINESS_PATH`` on their port. tcp: a PING frame
    answered. worker: alive while its process runs (the container's main process), ready
    once it answers a ping through the broker. beat: its schedule file exists
    (``schedule_written``).
    """
    shape = Shape.from_environ(environ)
    if name in ("web", "ws"):
        port = shape.web_port if name == "web" else shape.ws_port
        return http_ok(f"http://127.0.0.1:{port}{LIVENESS_PATH if kind == 'live' else READINESS_PATH}")
    if name == "tcp":
        return tcp_answers(shape.tcp_port)
    if name == "worker":
        return kind == "live" or celery_answers(
            broker_url(dict(environ)), node_name(shape, socket.gethostname()), timeout=5.0
        )
    if name == "beat":
        return schedule_written(shape.beat_schedule)
    raise ValueError(f"no process named {name!r}")


def schedule_written(path: Path) -> bool:
    """Celery beat wrote its schedule file. Its shelve names the file after the dbm module
    the Python has: ``path`` itself (gnu), ``path.db`` (ndbm), or ``path.dat`` beside
    ``path.dir`` (dumb, a Python built without either)."""
    return any(Path(f"{path}{suffix}").exists() for suffix in ("", ".db", ".dat"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.probes", description="Exit 0 when this container's process answers the probe."
    )
    parser.add_argument("kind", choices=PROBE_KINDS)
    parser.add_argument("name", choices=NAMES)
    args = parser.parse_args(argv)
    return 0 if process_answers(args.kind, args.name, os.environ) else 1


if __name__ == "__main__":
    sys.exit(main())
