"""The stack's long-running processes, written once: web, ws, worker, beat and tcp.

``make run`` (``devstack.launcher``), the tests (``tests/processes.py``), the benchmark
(``bench/stack.py``) and the containers (``python -m devstack.proc <name>`` in the
Dockerfile and docker-compose.yml) all take their command lines from ``command()``, so the
server the suite tests and the benchmark measures is the one that ships. Each caller only
chooses a ``Shape``: where the processes listen and how big they are.

This module imports nothing from Django: it runs before settings exist.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

WSGI_APP = "flashsale_project.wsgi:application"
ASGI_APP = "flashsale_project.asgi:application"
CELERY_APP = "flashsale_project"
NAMES = ("web", "ws", "worker", "beat", "tcp")
LIVENESS_PATH = "/livez"
"""web and ws: 200 while the process serves; asks no dependency (restart it when this fails)."""
READINESS_PATH = "/readyz"
"""web and ws: 200 while the process can answer a purchase (Redis answers); route to it then."""
MANAGE_PY = Path(__file__).resolve().parent.parent / "manage.py"


@dataclass(frozen=True)
class Shape:
    """Addresses and sizes of the processes. The defaults are production's shape."""

    host: str = "127.0.0.1"
    web_port: int = 8000
    ws_port: int = 8001
    tcp_port: int = 8002
    # The TCP door takes the seed's bare user_id (a gateway in front authenticated the shopper).
    tcp_trust_user_id: bool = False
    # The TCP door also answers GET /metrics on this port (0: no; make run's web sums its metrics).
    tcp_metrics_port: int = 0
    # granian: the shape `make bench` measured best on two cores (docs/benchmark.md, "The
    # server's shape"): eight threads a worker overlap Redis round trips; a backpressure above
    # the connections a worker may hold keeps none waiting seconds for a turn.
    web_workers: int = 2
    web_threads: int = 8
    web_backpressure: int = 2048
    # granian's --backlog, the listening socket's queue (the kernel caps it at
    # net.core.somaxconn); 0 leaves granian's default (1,024). The benchmark's million
    # (bench/million.py) asks for one per connection it opens at once.
    web_backlog: int = 0
    # A request's header block must arrive whole this long after its first byte (and the next
    # request on a kept-alive connection this long after the previous answer), or granian
    # closes the connection; such a client holds no thread meanwhile. Bodies have their own
    # deadline in the application (WEB_BODY_TIMEOUT_SECONDS, core/request_bodies.py).
    web_header_timeout_ms: int = 5000
    # The WSGI callable granian serves: the application; the benchmark's ceiling
    # (bench/ceiling_app.py) is the same server and shape serving a bare callable instead.
    web_app: str = WSGI_APP
    # A collectstatic output that granian serves under /static/ (None: no static files).
    static_root: Path | None = None
    server_log_level: str = "warning"
    # The servers' access logs (a line per request, in LOG_FORMAT): an operator's choice,
    # off by default since it is work on every answer of the hot path.
    access_log: bool = False
    # Peers uvicorn believes X-Forwarded-For and X-Forwarded-Proto from: loopback and
    # TRUSTED_PROXY_NETWORKS, as the WSGI side (core/client_address.py).
    trusted_proxies: tuple[str, ...] = ()
    # Celery. %h is the host name, as Celery expands it.
    worker_node: str = "worker@%h"
    worker_pool: str = "prefork"
    worker_concurrency: int = 2
    worker_queues: tuple[str, ...] = ()
    # mingle and gossip: worth it for a long-lived worker among others, not for one a test
    # starts and throws away.
    worker_cluster_events: bool = True
    celery_log_level: str = "INFO"
    beat_schedule: Path = Path("celerybeat-schedule")
    python: str = sys.executable

    def but(self, **changes: object) -> Shape:
        """This shape with some fields changed."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Shape:
        """The shape a container asks for through its environment (docs/development.md)."""
        environ = os.environ if environ is None else environ
        default = cls()

        def number(name: str, fallback: int) -> int:
            return int(environ.get(name) or fallback)

        def flag(name: str) -> bool:
            return (environ.get(name) or "").strip().lower() in {"1", "true", "yes", "on"}

        static_root = environ.get("STATIC_ROOT")
        return cls(
            host=environ.get("LISTEN_HOST") or default.host,
            web_port=number("WEB_PORT", default.web_port),
            ws_port=number("WS_PORT", default.ws_port),
            tcp_port=number("TCP_PORT", default.tcp_port),
            tcp_trust_user_id=flag("TCP_TRUST_USER_ID"),
            tcp_metrics_port=number("TCP_METRICS_PORT", default.tcp_metrics_port),
            access_log=flag("ACCESS_LOG"),
            trusted_proxies=tuple(
                cidr.strip() for cidr in (environ.get("TRUSTED_PROXY_NETWORKS") or "").split(",") if cidr.strip()
            ),
            web_workers=number("WEB_WORKERS", default.web_workers),
            web_threads=number("WEB_THREADS", default.web_threads),
            web_backpressure=number("WEB_BACKPRESSURE", default.web_backpressure),
            web_header_timeout_ms=number("WEB_HEADER_TIMEOUT_MS", default.web_header_timeout_ms),
            static_root=Path(static_root) if static_root else None,
            worker_node=environ.get("WORKER_NODE") or default.worker_node,
            worker_concurrency=number("WORKER_CONCURRENCY", default.worker_concurrency),
            beat_schedule=Path(environ.get("BEAT_SCHEDULE") or default.beat_schedule),
        )


def web(shape: Shape) -> list[str]:
    """granian serving the WSGI app: storefront, REST API, admin, /metrics, the probes."""
    argv = [
        shape.python, "-m", "granian", "--interface", "wsgi",
        "--host", shape.host, "--port", str(shape.web_port),
        "--workers", str(shape.web_workers),
        "--blocking-threads", str(shape.web_threads),
        "--backpressure", str(shape.web_backpressure),
        "--http1-header-read-timeout", str(shape.web_header_timeout_ms),
        "--log-level", shape.server_log_level,
    ]  # fmt: skip
    if shape.web_backlog:
        argv += ["--backlog", str(shape.web_backlog)]
    if shape.access_log:
        argv += ["--access-log", "--access-log-fmt", GRANIAN_ACCESS_FORMAT]
    if shape.static_root is not None:
        argv += ["--static-path-route", "/static", "--static-path-mount", str(shape.static_root)]
    return [*argv, shape.web_app]


GRANIAN_ACCESS_FORMAT = '%(addr)s "%(method)s %(path)s %(protocol)s" %(status)d %(dt_ms).3f'
"""granian's access line, for ``LOG_FORMAT=console``; in JSON ``core.logs`` makes its fields
keys and adds the request id."""


def ws(shape: Shape) -> list[str]:
    """uvicorn serving the ASGI app: the /ws/sales/<id>/ WebSockets (docs/websockets.md: the
    trimmed protocol, no per-socket compressor, clients send nothing, a backlog for a crowd
    reconnecting at once)."""
    return [
        shape.python, "-m", "uvicorn", ASGI_APP,
        "--host", shape.host, "--port", str(shape.ws_port),
        "--access-log" if shape.access_log else "--no-access-log", "--log-level", shape.server_log_level,
        "--proxy-headers", "--forwarded-allow-ips", ",".join(("127.0.0.1", "::1", *shape.trusted_proxies)),
        *WS_UVICORN_OPTIONS,
    ]  # fmt: skip


WS_UVICORN_OPTIONS = (
    "--ws", "wsdoor.protocol:ListenerProtocol",
    "--ws-per-message-deflate", "false",
    "--ws-max-size", "4096",
    "--backlog", "4096",
)  # fmt: skip
"""How the ws process runs uvicorn."""


def ws_alternatives(shape: Shape) -> dict[str, list[str]]:
    """The ASGI servers the shipped ws line was chosen against (docs/websockets.md), serving
    the same app on ``shape.ws_port``; only the benchmark's server comparison runs them."""
    uvicorn = [
        shape.python, "-m", "uvicorn", ASGI_APP, "--host", shape.host, "--port", str(shape.ws_port),
        "--no-access-log", "--log-level", shape.server_log_level, "--backlog", "4096",
    ]  # fmt: skip
    return {
        "uvicorn-websockets": [*uvicorn, "--ws", "websockets"],
        "uvicorn-websockets-sansio": [*uvicorn, "--ws", "websockets-sansio"],
        "uvicorn-wsproto": [*uvicorn, "--ws", "wsproto"],
        "granian": [
            shape.python, "-m", "granian", "--interface", "asgi", "--host", shape.host,
            "--port", str(shape.ws_port), "--workers", "1", "--backlog", "4096", "--backpressure", "30000",
            "--log-level", shape.server_log_level, ASGI_APP,
        ],
        "daphne": [shape.python, "-m", "daphne", "-b", shape.host, "-p", str(shape.ws_port), "-v", "0", ASGI_APP],
    }  # fmt: skip


def worker(shape: Shape) -> list[str]:
    """The Celery worker: won orders into PostgreSQL, confirmation emails."""
    argv = [
        shape.python, "-m", "celery", "-A", CELERY_APP, "worker",
        "--loglevel", shape.celery_log_level,
        "-n", shape.worker_node,
        "--pool", shape.worker_pool,
        "--concurrency", str(shape.worker_concurrency),
    ]  # fmt: skip
    if shape.worker_queues:
        argv += ["-Q", ",".join(shape.worker_queues)]
    if not shape.worker_cluster_events:
        argv += ["--without-mingle", "--without-gossip"]
    return argv


def beat(shape: Shape) -> list[str]:
    """Celery beat: warms upcoming sales, drains, reclaims and reconciles on a schedule."""
    return [
        shape.python, "-m", "celery", "-A", CELERY_APP, "beat",
        "--loglevel", shape.celery_log_level,
        "--schedule", str(shape.beat_schedule),
    ]  # fmt: skip


def tcp(shape: Shape) -> list[str]:
    """The TCP front door (``manage.py tcpserver``): the seed's TLV protocol, asyncio on uvloop."""
    argv = [shape.python, str(MANAGE_PY), "tcpserver", "--host", shape.host, "--port", str(shape.tcp_port)]
    if shape.tcp_metrics_port:
        argv += ["--metrics-port", str(shape.tcp_metrics_port)]
    if shape.tcp_trust_user_id:
        argv.append("--trust-user-id")
    return argv


COMMANDS: dict[str, Callable[[Shape], list[str]]] = {
    "web": web,
    "ws": ws,
    "worker": worker,
    "beat": beat,
    "tcp": tcp,
}


def command(name: str, shape: Shape) -> list[str]:
    """The command line of process ``name`` (one of ``NAMES``) in ``shape``."""
    try:
        build = COMMANDS[name]
    except KeyError:
        raise ValueError(f"no process named {name!r}; the processes are {', '.join(NAMES)}") from None
    return build(shape)


def node_name(shape: Shape, hostname: str) -> str:
    """The worker's node name as Celery expands it (``%h`` is the host name)."""
    return shape.worker_node.replace("%h", hostname)
