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
- a server is in rotation while ``GET /readyz`` answers 200 (it reaches Redis; PostgreSQL
  being away takes no server out, ``observability.health``);
- TLS ends here: plain HTTP is redirected to HTTPS, answers carry HSTS, the WebSocket is
  ``wss://``;
- ``X-Forwarded-For`` carries the shopper's address (``ANTIBOT_CLIENT_IP_HEADER``),
  ``X-Forwarded-Proto`` the scheme, ``X-Request-ID`` a fresh id; the processes believe them
  from the balancer's network only (``TRUSTED_PROXY_NETWORKS``);
- the TCP door's connections go to the tcp processes with a PROXY protocol v2 header naming
  the shopper;
- when no server can answer, the balancer itself answers the contract's 503 UNAVAILABLE
  with Retry-After, in JSON;
- a request is buffered whole before it goes to a server, and one not whole within
  ``REQUEST_TIMEOUT`` (headers and body) is answered the contract's 408 by the balancer;
- a request a server took and never answered (its host cut off, it died mid-answer) is
  answered the contract's 503 UNAVAILABLE with Retry-After by the balancer, not HAProxy's
  HTML 502 or 504.

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
from devstack.probes import TCP_PING
from devstack.procfile import READINESS_PATH

UNAVAILABLE_FILE = "unavailable.http"
"""The raw HTTP answer HAProxy sends when no server is up (its ``errorfile 503``), kept in
``deploy/haproxy/``: the contract's 503 body (``core.errors.Unavailable``; a test holds the
two equal), which this package, below the application, cannot build itself."""
REQUEST_TIMEOUT_FILE = "request-timeout.http"
"""Likewise its ``errorfile 408``, for a request not whole within ``timeout http-request``:
the contract's 408 body (``core.errors.RequestTimeout``)."""
SERVER_LOST_FILE = "server-lost.http"
"""Its ``errorfile 502`` and ``errorfile 504``, for a request a server took and did not
answer (within ``timeout server``, or at all): the contract's 503 UNAVAILABLE, sent with that
status whatever HAProxy logs, its detail saying that a purchase may have been made (sent
again, it answers with its order)."""
ERROR_FILES = (UNAVAILABLE_FILE, REQUEST_TIMEOUT_FILE, SERVER_LOST_FILE)
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
    """Where the servers are. ``dns``: Docker's DNS names ``web``, ``ws`` and ``tcp`` and
    their ports (every replica of a scaled service, up to ``slots``); otherwise each server
    is a loopback port or a ``host:port`` (servers on other hosts)."""

    web_ports: tuple[int | str, ...] = ()
    ws_ports: tuple[int | str, ...] = ()
    tcp_ports: tuple[int | str, ...] = ()
    dns: bool = False
    web_port: int = 8000
    ws_port: int = 8001
    tcp_port: int = 8002
    slots: int = 16


@dataclass(frozen=True)
class Edge:
    """What the balancer listens on. ``https`` with ``certificate`` (a PEM certificate; its
    key beside it as ``<certificate>.key``, which HAProxy loads by that name) terminates TLS:
    plain HTTP then only redirects, and answers carry HSTS. ``tcp``: the TCP door's port,
    forwarded with the PROXY protocol (empty: no TCP door)."""

    http: str
    https: str = ""
    certificate: str = ""
    tcp: str = ""


HSTS_SECONDS = 63_072_000
"""Two years: the max-age browsers' preload lists ask for."""


def _servers(backends: Backends, name: str, port: int, servers: tuple[int | str, ...], options: str) -> list[str]:
    if backends.dns:
        return [f"    server-template {name}- {backends.slots} {name}:{port} {options} resolvers docker init-addr none"]
    addresses = [f"127.0.0.1:{server}" if isinstance(server, int) else server for server in servers]
    return [f"    server {name}-{n} {address} {options}" for n, address in enumerate(addresses, 1)]


def haproxy_config(backends: Backends, *, edge: Edge, error_dir: str, maxconn: int = 20_000) -> str:
    """The HAProxy configuration (module docstring)."""
    tls = bool(edge.https)
    lines = [
        "# Written by devstack/loadbalancer.py (haproxy_config); edit it there.",
        "global",
        f"    maxconn {maxconn}",
        *(["    ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets"] if tls else []),
        "",
        "defaults",
        "    option redispatch",
        "    retries 2",
        "    timeout connect 2s",
        "    timeout client 30s",
        "    timeout server 30s",
        f"    # {READINESS_PATH} asks Redis: give it more than one check interval.",
        "    timeout check 3s",
        "    # An open WebSocket: the countdown and stock messages flow for the whole sale.",
        "    timeout tunnel 2h",
        "",
        "frontend shop",
        "    mode http",
        "    option http-keep-alive",
        "    timeout http-keep-alive 30s",
        "    # A client sends its whole request, headers and body, within this or hears 408 from the",
        "    # balancer: the body is buffered here first, so a slow client never holds a web thread.",
        "    option http-buffer-request",
        f"    timeout http-request {REQUEST_TIMEOUT}",
        f"    errorfile 503 {error_dir}/{UNAVAILABLE_FILE}",
        f"    errorfile 408 {error_dir}/{REQUEST_TIMEOUT_FILE}",
        f"    errorfile 502 {error_dir}/{SERVER_LOST_FILE}",
        f"    errorfile 504 {error_dir}/{SERVER_LOST_FILE}",
        f"    bind {edge.http}",
    ]
    if tls:
        lines += [
            f"    bind {edge.https} ssl crt {edge.certificate} alpn http/1.1",
            "    http-request redirect scheme https code 301 unless { ssl_fc }",
            f'    http-response set-header Strict-Transport-Security "max-age={HSTS_SECONDS}" if {{ ssl_fc }}',
        ]
    lines += [
        "    # The processes believe these from this balancer only (TRUSTED_PROXY_NETWORKS): what a",
        "    # client sent is replaced, the shopper's address appended to X-Forwarded-For.",
        "    option forwardfor",
        f"    http-request set-header X-Forwarded-Proto {'https' if tls else 'http'}",
        "    unique-id-format %[uuid()]",
        "    http-request set-header X-Request-ID %[unique-id]",
        "    acl websocket path_beg /ws/",
        "    use_backend ws if websocket",
        "    default_backend web",
        "",
        "backend web",
        "    mode http",
        "    balance roundrobin",
        "    option httpchk",
        f"    http-check send meth GET uri {READINESS_PATH} ver HTTP/1.1 hdr Host localhost",
        "    http-check expect status 200",
        "    default-server inter 1s fall 2 rise 1",
        "    http-response set-header X-Served-By %[srv_name]",
        *_servers(backends, "web", backends.web_port, backends.web_ports, "check"),
        "",
        "backend ws",
        "    mode http",
        "    balance leastconn",
        "    option httpchk",
        f"    http-check send meth GET uri {READINESS_PATH} ver HTTP/1.1 hdr Host localhost",
        "    http-check expect status 200",
        "    default-server inter 1s fall 2 rise 1",
        *_servers(backends, "ws", backends.ws_port, backends.ws_ports, "check"),
    ]
    if edge.tcp:
        lines += [
            "",
            "# The TCP door: each connection goes to one door process, which reads the shopper's",
            "# address from the PROXY protocol header (TCP_PROXY_PROTOCOL, TRUSTED_PROXY_NETWORKS).",
            "frontend tcp",
            "    mode tcp",
            f"    bind {edge.tcp}",
            "    timeout client 2m",
            "    default_backend tcp",
            "",
            "backend tcp",
            "    mode tcp",
            "    balance leastconn",
            "    timeout server 2m",
            "    option tcp-check",
            f"    tcp-check send-binary {TCP_PING.hex()}",
            "    tcp-check expect binary 04",
            "    default-server inter 1s fall 2 rise 1",
            *_servers(backends, "tcp", backends.tcp_port, backends.tcp_ports, "check send-proxy-v2"),
        ]
    if backends.dns:
        lines += [
            "",
            "# Docker's embedded DNS: each replica of a scaled service is one A record.",
            "resolvers docker",
            "    nameserver dns 127.0.0.11:53",
            "    hold valid 5s",
            "    accepted_payload_size 8192",
        ]
    return "\n".join(lines) + "\n"


def haproxy_binary() -> str | None:
    return shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)


@dataclass
class LocalHaproxy:
    """HAProxy on ``host``:``port`` in front of web and ws processes (loopback ports, or
    ``host:port`` addresses elsewhere)."""

    config_dir: Path
    port: int
    web_ports: tuple[int | str, ...]
    ws_ports: tuple[int | str, ...] = ()
    # HTTPS on this port with this certificate (``certificates_write``); 0: plain HTTP only.
    tls_port: int = 0
    certificate: Path | None = None
    # The TCP door's processes, behind this port with the PROXY protocol; 0: none.
    tcp_port: int = 0
    tcp_ports: tuple[int | str, ...] = ()
    # Where the balancer listens (another host's address in a multi-host test), and what goes
    # before its command line there (that host's namespace, ``devstack.netns``).
    host: str = "127.0.0.1"
    launch: tuple[str, ...] = ()
    # HAProxy needs two descriptors per connection: kept under this machine's open-file limit.
    maxconn: int = 8000
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def https_url(self) -> str:
        return f"https://{self.host}:{self.tls_port}"

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
            self.process = start_child(
                [*self.launch, binary, "-db", "-f", str(self.config_dir / "haproxy.cfg")], stdout=log_file
            )
        try:
            wait_for_port(self.process, self.port, log, timeout=timeout, host=self.host)
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
        backends = Backends(web_ports=self.web_ports, ws_ports=self.ws_ports, tcp_ports=self.tcp_ports)
        edge = Edge(
            http=f"{self.host}:{self.port}",
            https=f"{self.host}:{self.tls_port}" if self.tls_port else "",
            certificate=str(self.certificate) if self.tls_port else "",
            tcp=f"{self.host}:{self.tcp_port}" if self.tcp_port else "",
        )
        config.write_text(
            haproxy_config(backends, edge=edge, error_dir=str(self.config_dir), maxconn=self.maxconn),
            encoding="utf-8",
        )
        return config


COMPOSE_DIR = Path(__file__).resolve().parent.parent / "deploy" / "haproxy"
COMPOSE_ERROR_DIR = "/usr/local/etc/haproxy"
"""Where docker-compose.yml mounts ``deploy/haproxy/`` in the official haproxy image."""
COMPOSE_CERTIFICATE = "/usr/local/etc/haproxy/tls/site.pem"
"""Where docker-compose.yml mounts ``TLS_CERT_FILE`` (and ``TLS_KEY_FILE`` beside it, as
``site.pem.key``)."""
COMPOSE_EDGE = Edge(http=":8080", https=":8443", certificate=COMPOSE_CERTIFICATE, tcp=":8002")
"""The container's ports; compose publishes them as HTTP_PORT, HTTPS_PORT and TCP_PORT."""


def compose_files() -> dict[Path, str]:
    """``deploy/haproxy/``'s generated files as the compose stack runs them (a test holds the
    checked-in copies to these; ``python -m devstack.loadbalancer`` writes them)."""
    return {
        COMPOSE_DIR / "haproxy.cfg": haproxy_config(Backends(dns=True), edge=COMPOSE_EDGE, error_dir=COMPOSE_ERROR_DIR),
    }


if __name__ == "__main__":
    for path, text in compose_files().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="")
        print(f"wrote {path}")
