"""HAProxy in front of several web and ws processes: the configuration, written once, and a
local HAProxy for the tests and the benchmark.

``haproxy_config`` writes the one configuration both shapes run: the compose stack's
(``deploy/haproxy/haproxy.cfg``, its servers found through Docker's DNS, so ``docker compose
up --scale web=4`` needs no edit) and the local one (servers on loopback ports). What the
balancer does, either way:

- ``/ws/`` goes to the ws processes (HAProxy passes the WebSocket upgrade through and then
  relays the tunnel, ``timeout tunnel``), everything else to the web processes;
- round robin over web, least connections over ws (a socket lives long); no stickiness:
  every process answers every shopper (signed tokens, sessions in the shared cache);
- a server is in rotation while ``GET /healthz`` answers 200 (it reaches Redis and
  PostgreSQL);
- ``X-Forwarded-For`` carries the shopper's address (``ANTIBOT_CLIENT_IP_HEADER``);
- when no server can answer, the balancer itself answers the contract's 503 UNAVAILABLE
  with Retry-After, in JSON;
- a request is buffered whole before it goes to a server, and one not whole within
  ``REQUEST_TIMEOUT`` (headers and body) is answered the contract's 408 by the balancer.

This module imports nothing from Django.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from devstack.children import start_child
from devstack.localservers import LocalServerError, stop_process, wait_for_port

UNAVAILABLE_FILE = "unavailable.http"
"""The raw HTTP answer HAProxy sends when no server is up (its ``errorfile 503``), kept in
``deploy/haproxy/``: the contract's 503 body (``core.errors.Unavailable``; a test holds the
two equal), which this package, below the application, cannot build itself."""
REQUEST_TIMEOUT_FILE = "request-timeout.http"
"""Likewise its ``errorfile 408``, for a request not whole within ``timeout http-request``:
the contract's 408 body (``core.errors.RequestTimeout``)."""
ERROR_FILES = (UNAVAILABLE_FILE, REQUEST_TIMEOUT_FILE)
REQUEST_TIMEOUT = "5s"
"""How long a client has to send its whole request, headers and body (the web process's own
deadlines are the same: WEB_HEADER_TIMEOUT_MS, WEB_BODY_TIMEOUT_SECONDS)."""


def error_response(name: str) -> str:
    """One of ``ERROR_FILES`` as HAProxy sends it."""
    # Bytes, not text: the file keeps HTTP's CRLF line ends, which universal newlines would drop.
    return (COMPOSE_DIR / name).read_bytes().decode("utf-8")


def unavailable_response() -> str:
    return error_response(UNAVAILABLE_FILE)


@dataclass(frozen=True)
class Backends:
    """Where the servers are. ``dns``: Docker's DNS names ``web`` and ``ws`` and their
    ports (every replica of a scaled service, up to ``slots``); otherwise loopback ports."""

    web_ports: tuple[int, ...] = ()
    ws_ports: tuple[int, ...] = ()
    dns: bool = False
    web_port: int = 8000
    ws_port: int = 8001
    slots: int = 16


def haproxy_config(backends: Backends, *, bind: str, error_dir: str, maxconn: int = 20_000) -> str:
    """The HAProxy configuration (module docstring)."""
    if backends.dns:
        web_servers = [
            f"    server-template web- {backends.slots} web:{backends.web_port} check resolvers docker init-addr none"
        ]
        ws_servers = [
            f"    server-template ws- {backends.slots} ws:{backends.ws_port} check resolvers docker init-addr none"
        ]
        resolvers = [
            "",
            "# Docker's embedded DNS: each replica of a scaled service is one A record.",
            "resolvers docker",
            "    nameserver dns 127.0.0.11:53",
            "    hold valid 5s",
            "    accepted_payload_size 8192",
        ]
    else:
        web_servers = [f"    server web-{n} 127.0.0.1:{port} check" for n, port in enumerate(backends.web_ports, 1)]
        ws_servers = [f"    server ws-{n} 127.0.0.1:{port} check" for n, port in enumerate(backends.ws_ports, 1)]
        resolvers = []
    lines = [
        "# Written by devstack/loadbalancer.py (haproxy_config); edit it there.",
        "global",
        f"    maxconn {maxconn}",
        "",
        "defaults",
        "    mode http",
        "    option forwardfor",
        "    option http-keep-alive",
        "    option redispatch",
        "    retries 2",
        "    timeout connect 2s",
        "    # A client sends its whole request, headers and body, within this or hears 408 from the",
        "    # balancer: the body is buffered here first, so a slow client never holds a web thread.",
        "    option http-buffer-request",
        f"    timeout http-request {REQUEST_TIMEOUT}",
        "    timeout client 30s",
        "    timeout server 30s",
        "    timeout http-keep-alive 30s",
        "    # /healthz asks Redis and PostgreSQL: give it more than one check interval.",
        "    timeout check 3s",
        "    # An open WebSocket: the countdown and stock messages flow for the whole sale.",
        "    timeout tunnel 2h",
        f"    errorfile 503 {error_dir}/{UNAVAILABLE_FILE}",
        f"    errorfile 408 {error_dir}/{REQUEST_TIMEOUT_FILE}",
        "",
        "frontend shop",
        f"    bind {bind}",
        "    acl websocket path_beg /ws/",
        "    use_backend ws if websocket",
        "    default_backend web",
        "",
        "backend web",
        "    balance roundrobin",
        "    option httpchk",
        "    http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host localhost",
        "    http-check expect status 200",
        "    default-server inter 1s fall 2 rise 1",
        "    http-response set-header X-Served-By %[srv_name]",
        *web_servers,
        "",
        "backend ws",
        "    balance leastconn",
        "    option httpchk",
        "    http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host localhost",
        "    http-check expect status 200",
        "    default-server inter 1s fall 2 rise 1",
        *ws_servers,
        *resolvers,
    ]
    return "\n".join(lines) + "\n"


def haproxy_binary() -> str | None:
    return shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)


@dataclass
class LocalHaproxy:
    """HAProxy on 127.0.0.1:``port`` in front of web and ws processes on loopback ports."""

    config_dir: Path
    port: int
    web_ports: tuple[int, ...]
    ws_ports: tuple[int, ...] = ()
    # HAProxy needs two descriptors per connection: kept under this machine's open-file limit.
    maxconn: int = 8000
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def check(self) -> str:
        """``haproxy -c``: the configuration's verdict (raises when it is refused)."""
        config = self._write()
        binary = haproxy_binary()
        if binary is None:
            raise LocalServerError("HAProxy is not installed (Debian: apt-get install haproxy; make deps)")
        result = subprocess.run([binary, "-c", "-f", str(config)], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise LocalServerError(f"HAProxy refused its configuration: {result.stdout}{result.stderr}")
        return result.stdout + result.stderr

    def start(self, *, timeout: float = 20.0) -> LocalHaproxy:
        self.check()
        binary = haproxy_binary()
        assert binary is not None
        log = self.config_dir / "haproxy.log"
        with log.open("ab") as log_file:
            self.process = start_child([binary, "-db", "-f", str(self.config_dir / "haproxy.cfg")], stdout=log_file)
        try:
            wait_for_port(self.process, self.port, log, timeout=timeout)
        except LocalServerError as error:
            raise LocalServerError(f"HAProxy {error}") from None
        return self

    def stop(self) -> None:
        stop_process(self.process, signal.SIGTERM, timeout=10.0)
        self.process = None

    def _write(self) -> Path:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        for name in ERROR_FILES:
            (self.config_dir / name).write_text(error_response(name), encoding="utf-8", newline="")
        config = self.config_dir / "haproxy.cfg"
        backends = Backends(web_ports=self.web_ports, ws_ports=self.ws_ports)
        config.write_text(
            haproxy_config(
                backends, bind=f"127.0.0.1:{self.port}", error_dir=str(self.config_dir), maxconn=self.maxconn
            ),
            encoding="utf-8",
        )
        return config


COMPOSE_DIR = Path(__file__).resolve().parent.parent / "deploy" / "haproxy"
COMPOSE_BIND = ":8080"
COMPOSE_ERROR_DIR = "/usr/local/etc/haproxy"
"""Where docker-compose.yml mounts ``deploy/haproxy/`` in the official haproxy image."""


def compose_files() -> dict[Path, str]:
    """``deploy/haproxy/``'s generated files as the compose stack runs them (a test holds the
    checked-in copies to these; ``python -m devstack.loadbalancer`` writes them)."""
    return {
        COMPOSE_DIR / "haproxy.cfg": haproxy_config(Backends(dns=True), bind=COMPOSE_BIND, error_dir=COMPOSE_ERROR_DIR),
    }


if __name__ == "__main__":
    for path, text in compose_files().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="")
        print(f"wrote {path}")
