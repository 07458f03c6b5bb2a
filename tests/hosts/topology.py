"""The production topology as separate hosts on this machine, without a container engine
(issue 25): one network namespace per host on a bridge of the run's own (``devstack.netns``),
each host running exactly what its compose service runs.

- haproxy: Debian's HAProxy, the configuration ``devstack.loadbalancer`` writes, TLS with a
  ``make certs`` pair;
- web1, web2, ws, tcp, worker, beat: compose's command for the service (``python -m
  devstack.proc <name>``) in compose's environment;
- redis: the wheel's valkey-server, append-only (``devstack.localservers``);
- postgres: the wheel's PostgreSQL, a ``flashsale`` role with a password, as compose's image
  makes;
- migrate: compose's migrate job, then the operator's ``manage.py flashsale`` commands;
- prometheus, alertmanager: Debian's, on deploy/'s configuration; alertmanager's written by
  compose's alertmanager-config job. The alert rules are deploy/'s with every duration (``for:``
  and each range selector) divided by ``RULE_TIME_SCALE``, so a two-minute alert fires in 30 s:
  these tests check the wiring from a scrape across hosts to the webhook and the email, and
  promtool's unit tests (deploy/prometheus/alerts_test.yml) check the shipped durations;
- shoppers: the crowd (``tests.hosts.shoppers``), on the public subnet, with a route to
  HAProxy alone.

The machine itself (the bridge's address, ``operator`` and ``mail`` in every host's
``/etc/hosts``) runs the SMTP server the workers and Alertmanager send to and the webhook
receiver Alertmanager posts to (``tests.hosts.sinks``), and reads Redis and PostgreSQL to
judge a sale. A host's environment is compose's for its service with ``.env`` made from
``.env.example`` (its blanks filled, ``FLASHSALE_SUBNET`` the stack's /24); the image's
paths map to this machine's (``VOLUMES``).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import re
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import yaml
from psycopg import sql

from devstack import probes
from devstack.certs import certificates_write
from devstack.children import Child, spawn, start_child, stop_group
from devstack.loadbalancer import LocalHaproxy
from devstack.localservers import LocalPostgres, LocalRedis
from devstack.netns import HostPlan, Network, clean_stale
from tests.deploy.test_env_file import env_example
from tests.faults.stack import Answer, CrowdResult
from tests.polling import wait_for

from .compose import ROOT, compose, image_environment, service_command, service_environment
from .shoppers import SHOP
from .sinks import HookSink, MailSink

LOG_ROOT = ROOT / "artifacts" / "logs"
RESULTS = ROOT / "artifacts" / "hosts"

PLANS = (
    HostPlan("haproxy", public=1, public_aliases=(SHOP,)),
    HostPlan("web1"),
    HostPlan("web2"),
    HostPlan("ws"),
    HostPlan("tcp"),
    HostPlan("worker"),
    HostPlan("beat"),
    HostPlan("redis"),
    HostPlan("postgres"),
    HostPlan("migrate"),
    HostPlan("prometheus"),
    HostPlan("alertmanager"),
    # The crowd, two shoppers for the per-address limits, the storefront sockets.
    HostPlan("shoppers", public=8, private=False),
)
APP_HOSTS = {"web1": "web", "web2": "web", "ws": "ws", "tcp": "tcp", "worker": "worker", "beat": "beat"}
"""Each host of the app's image and the compose service it is."""
WEB_PORT, WS_PORT, TCP_PORT, TCP_METRICS_PORT = 8000, 8001, 8002, 9102
HTTP_PORT, HTTPS_PORT = 8080, 8443  # the haproxy container's (compose publishes them as 80 and 443)
MAIL_PORT, HOOK_PORT = 2525, 9095
WORKER_NODE = "worker@worker"  # compose's worker@%h on the host named worker

# What .env sets beyond .env.example's blanks: small per-address limits to meet from two
# addresses, and a mail relay without STARTTLS on the operator's side.
LIMITS = {"LOGIN_THROTTLE_IP": "3/min", "WS_MAX_CONNECTIONS_PER_IP": "4", "TCP_MAX_CONNECTIONS_PER_IP": "2"}
# Prometheus's scrape and evaluation interval here (deploy/'s is 15 s): the alert rules'
# `for` durations are what they are, this only shortens the wait for the next look.
PROMETHEUS_INTERVAL = "5s"
RULE_TIME_SCALE = 4
_DURATION = re.compile(r"(\d+)([smh])")
_RANGE = re.compile(r"\[(\d+[smh])\]")


def volumes(scratch: Path) -> dict[str, Path]:
    """Where the image's and the volumes' paths are on this machine: the image's /app is the
    checkout; alertmanager-config's volume a directory of this run."""
    return {"/app": ROOT, "/var/lib/flashsale/alertmanager": scratch / "volumes" / "alertmanager-config"}


def on_this_machine(value: str, mapped: dict[str, Path]) -> str:
    for inside, outside in mapped.items():
        if value == inside or value.startswith(inside + "/"):
            return str(outside) + value[len(inside) :]
    return value


def process_env(values: dict[str, str], scratch: Path) -> dict[str, str]:
    """A host's environment: what compose gives the container, the image's paths mapped, and
    the interpreter of this checkout as the image's ``python``."""
    mapped = volumes(scratch)
    env = {name: on_this_machine(value, mapped) for name, value in values.items()}
    env["PATH"] = f"{Path(sys.executable).parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    env["HOME"] = os.environ.get("HOME", "/root")
    env["LANG"] = "C.UTF-8"
    return env


@dataclass
class Crowd:
    """A run of the shoppers' program in the shoppers' host; ``result()`` waits for it."""

    process: subprocess.Popen[bytes]
    out: Path
    log: Path

    def result(self, timeout: float = 400.0) -> dict[str, Any]:
        self.process.wait(timeout)
        if self.process.returncode != 0:
            raise AssertionError(f"the shoppers' program exited {self.process.returncode}:\n{self.log.read_text()}")
        loaded: dict[str, Any] = json.loads(self.out.read_text())
        return loaded


def crowd_result(heard: dict[str, Any]) -> CrowdResult:
    """The fault suite's shape of what a crowd heard (its checks judge it)."""
    return CrowdResult(
        wins={int(user): order for user, order in heard["wins"].items()},
        held={int(user): order for user, order in heard["held"].items()},
        answers=[Answer(at, status, code) for at, status, code, *_ in heard["answers"]],
        bad=list(heard["bad"]),
    )


@dataclass
class Topology:
    network: Network
    scratch: Path
    dotenv: dict[str, str]
    certificate: Path
    log_dir: Path
    mail: MailSink
    hooks: HookSink
    envs: dict[str, dict[str, str]] = field(default_factory=dict)
    launched: dict[str, list[str]] = field(default_factory=dict)  # host -> its command after the host's prefix
    children: dict[str, Child] = field(default_factory=dict)
    redis: LocalRedis | None = None
    postgres: LocalPostgres | None = None
    haproxy: LocalHaproxy | None = None
    runs: int = 0
    crowds: list[Crowd] = field(default_factory=list)  # the shoppers' runs, stopped at the end

    def address(self, host: str) -> str:
        return self.network[host].address

    @property
    def shop_address(self) -> str:
        return self.network["haproxy"].public_addresses[0]

    @property
    def shopper_addresses(self) -> tuple[str, ...]:
        return self.network["shoppers"].public_addresses

    @property
    def redis_url(self) -> str:
        assert self.redis is not None
        return self.redis.url

    @property
    def database_url(self) -> str:
        """The superuser's, from the operator's address (pg_hba trusts it)."""
        assert self.postgres is not None
        return self.postgres.url

    @property
    def broker_url(self) -> str:
        return f"redis://{self.address('redis')}:6379/1"

    @property
    def mail_dir(self) -> Path:
        return self.mail.directory

    def run_in(self, host: str, argv: list[str], *, service: str, timeout: float = 300) -> str:
        """A one-shot command on ``host`` with ``service``'s environment (``docker compose run``);
        its output. Raises when it fails."""
        env = self.envs.setdefault(host, process_env(service_environment(service, self.dotenv), self.scratch))
        result = subprocess.run(
            [*self.network.prefix(host), *argv],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            output = f"{result.stdout}{result.stderr}"
            raise AssertionError(f"{host}: {' '.join(argv)} exited {result.returncode}:\n{output}")
        return result.stdout

    def manage(self, *args: str) -> Any:
        """``manage.py <args> --json`` as the operator runs it (compose run migrate ...)."""
        return json.loads(self.run_in("migrate", ["python", "manage.py", *args, "--json"], service="migrate"))

    def sale(self, name: str, stock: int) -> int:
        created = self.manage(
            "flashsale", "init", f"{name}-{self.network.run}", str(stock), "--starts-in", "0",
            "--duration", "3600", "--bucket-capacity", "100000", "--bucket-refill", "100000",
        )  # fmt: skip
        return int(created["sale_id"])

    def shoppers(self, count: int) -> list[tuple[int, str]]:
        created = self.manage("flashsale", "shoppers", str(count), "--email-domain", "shop.test")["shoppers"]
        return [(int(one["id"]), one["token"]) for one in created]

    def shoppers_program(self, *args: str) -> Crowd:
        """``python -m tests.hosts.shoppers <args>`` on the shoppers' host."""
        self.runs += 1
        out = self.scratch / "shoppers" / f"run-{self.runs}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"shoppers-{self.runs}.log"
        argv = [*self.network.prefix("shoppers"), sys.executable, "-m", "tests.hosts.shoppers",
                "--ca", str(self.certificate), "--out", str(out), *args]  # fmt: skip
        env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "PYTHONUNBUFFERED": "1"}
        with log.open("wb") as log_file:
            process = start_child(argv, cwd=ROOT, env=env, stdout=log_file)  # dies with the suite
        crowd = Crowd(process, out, log)
        self.crowds.append(crowd)
        return crowd

    def crowd(self, sale: int, shoppers: list[tuple[int, str]], *, spread: float, deadline: float,
              first_now: bool = False) -> Crowd:  # fmt: skip
        tokens = self.scratch / "shoppers" / f"tokens-{sale}.json"
        tokens.parent.mkdir(parents=True, exist_ok=True)
        tokens.write_text(json.dumps(shoppers))
        args = ["buy", "--sale", str(sale), "--tokens", str(tokens), "--spread", str(spread),
                "--deadline", str(deadline), "--source", self.shopper_addresses[0]]  # fmt: skip
        return self.shoppers_program(*args, *(["--first-now"] if first_now else []))

    def log(self, host: str) -> str:
        return self.children[host].log.read_text(errors="replace")

    def wait_worker(self) -> None:
        broker = self.broker_url
        self.children["worker"].wait_until(
            lambda: probes.celery_answers(broker, WORKER_NODE), what="answer a ping", timeout=120
        )

    def haproxy_config(self) -> str:
        assert self.haproxy is not None
        return (self.haproxy.config_dir / "haproxy.cfg").read_text()

    def haproxy_log(self) -> str:
        assert self.haproxy is not None
        return (self.haproxy.config_dir / "haproxy.log").read_text(errors="replace")

    def haproxy_says(self, pattern: str, *, after: int, timeout: float) -> float:
        """Wait until the balancer's log, past its first ``after`` characters, matches
        ``pattern``; when (monotonic clock)."""
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.haproxy_log()[after:]):
            if time.monotonic() > deadline:
                since = self.haproxy_log()[after:]
                raise AssertionError(f"HAProxy did not log {pattern!r} in {timeout:.0f} s:\n{since}")
            time.sleep(0.05)
        return time.monotonic()

    def probe(self, host: str) -> subprocess.CompletedProcess[str]:
        """Compose's healthcheck for ``host``'s service, run inside the host beside its process
        (``docker exec``)."""
        service = APP_HOSTS[host]
        test = compose()["services"][service]["healthcheck"]["test"]
        assert test[0] == "CMD", test
        argv = [*self.network.enter(self.children[host].pid), *test[1:]]
        return subprocess.run(
            argv, env=self.envs[host], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
        )

    def https(self) -> httpx.Client:
        """A client on the operator's side reaching the shop by its address, naming it by SNI."""
        import ssl  # noqa: PLC0415

        tls = ssl.create_default_context(cafile=str(self.certificate))
        return httpx.Client(base_url=f"https://{self.shop_address}:{HTTPS_PORT}", verify=tls, timeout=10,
                            headers={"Host": SHOP})  # fmt: skip

    def shop_ready(self) -> bool:
        try:
            with self.https() as client:
                return client.get("/readyz", extensions={"sni_hostname": SHOP}).status_code == 200
        except httpx.HTTPError:
            return False


def _dotenv(network: Network, scratch: Path, certificate: Path) -> dict[str, str]:
    """``.env`` for this run: ``.env.example`` with its blanks filled in."""
    values = env_example()
    values.update(
        SECRET_KEY=secrets.token_urlsafe(50),
        POSTGRES_PASSWORD=secrets.token_urlsafe(24),
        METRICS_BEARER_TOKEN=secrets.token_urlsafe(24),
        LOG_SIGNING_KEYS=f"hosts:{base64.b64encode(secrets.token_bytes(32)).decode()}",
        GRAFANA_ADMIN_PASSWORD=secrets.token_urlsafe(24),
        ALLOWED_HOSTS=f"localhost,127.0.0.1,{SHOP}",
        CSRF_TRUSTED_ORIGINS=f"https://{SHOP}:{HTTPS_PORT}",
        TLS_CERT_FILE=str(certificate),
        TLS_KEY_FILE=f"{certificate}.key",
        FLASHSALE_SUBNET=str(network.private),
        EMAIL_HOST="mail",
        EMAIL_PORT=str(MAIL_PORT),
        EMAIL_USE_TLS="false",
        ALERT_WEBHOOK_URL=f"http://operator:{HOOK_PORT}/alerts",
        ALERT_EMAIL_TO="oncall@shop.test",
        **LIMITS,
    )
    return values


def scaled_duration(duration: str, scale: int = RULE_TIME_SCALE) -> str:
    """A Prometheus duration of one unit (``2m``, ``15m``, ``30s``) divided by ``scale``, in
    seconds: ``scaled_duration("2m") == "30s"``."""
    found = _DURATION.fullmatch(duration)
    if found is None:
        raise ValueError(f"not a one-unit Prometheus duration: {duration!r}")
    seconds = int(found[1]) * {"s": 1, "m": 60, "h": 3600}[found[2]]
    return f"{max(1, seconds // scale)}s"


def scaled_rules(source: Path, scale: int = RULE_TIME_SCALE) -> str:
    """The rules file ``source`` with every ``for:`` and every range selector divided by
    ``scale``; expressions, labels and annotations otherwise as shipped."""
    rules: dict[str, Any] = yaml.safe_load(source.read_text(encoding="utf-8"))
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = scaled_duration(rule["for"], scale)
            rule["expr"] = _RANGE.sub(lambda found: f"[{scaled_duration(found[1], scale)}]", str(rule["expr"]))
    return yaml.safe_dump(rules, sort_keys=False)


def prometheus_config(topology: Topology, token_file: Path) -> str:
    """deploy/prometheus/prometheus.yml with its DNS discovery (Docker's) replaced by the hosts
    by name and its secret's path this run's; the rules are deploy/'s, time-scaled
    (``scaled_rules``) into this run's directory."""
    deploy = ROOT / "deploy" / "prometheus"
    config: dict[str, Any] = yaml.safe_load((deploy / "prometheus.yml").read_text(encoding="utf-8"))
    config["global"].update(scrape_interval=PROMETHEUS_INTERVAL, evaluation_interval=PROMETHEUS_INTERVAL)
    scaled = []
    for name in config["rule_files"]:
        written = token_file.parent / f"scaled-{name}"
        written.write_text(scaled_rules(deploy / name), encoding="utf-8")
        scaled.append(str(written))
    config["rule_files"] = scaled
    hosts = {"web": ["web1", "web2"], "ws": ["ws"], "tcp": ["tcp"]}
    for job in config["scrape_configs"]:
        for found in job.pop("dns_sd_configs", []):
            [service] = found["names"]
            job["static_configs"] = [{"targets": [f"{host}:{found['port']}" for host in hosts[service]]}]
        if "authorization" in job:
            job["authorization"]["credentials_file"] = str(token_file)
    return yaml.safe_dump(config, sort_keys=False)


def start_app_host(topology: Topology, host: str) -> None:
    """Host ``host``'s process: its compose service's command in its compose environment
    (again, after a stop: ``docker compose start``)."""
    service = APP_HOSTS[host]
    mapped = volumes(topology.scratch)
    command = [on_this_machine(part, mapped) for part in service_command(service)]
    env = process_env(service_environment(service, topology.dotenv), topology.scratch)
    topology.envs[host] = env
    topology.launched[host] = command
    log = topology.log_dir / f"{host}.log"
    for again in range(2, 100):
        if not log.exists():
            break
        log = topology.log_dir / f"{host}-{again}.log"
    topology.children[host] = spawn(host, [*topology.network.prefix(host), *command], env=env, cwd=ROOT, log=log)


COMPOSE_MAXCONN = 20_000  # deploy/haproxy/haproxy.cfg's global maxconn


def balancer_maxconn() -> int:
    """Compose's maxconn, or less when this machine's open-file limit cannot hold it: HAProxy
    needs two descriptors a connection and a few more, and raises its own limit only up to the
    hard one unless it holds CAP_SYS_RESOURCE (a container here may not)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or (os.geteuid() == 0 and _raisable()):
        return COMPOSE_MAXCONN
    return min(COMPOSE_MAXCONN, (hard - 200) // 2)


def _raisable() -> bool:
    """Whether this process may raise its hard open-file limit (CAP_SYS_RESOURCE, bit 24)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> 24 & 1)
    return False


def ready(url: str) -> bool:
    """``GET url`` answered 200, asked as HAProxy's check asks (``Host: localhost``: the
    address is no name of the shop's)."""
    try:
        return httpx.get(url, headers={"Host": "localhost"}, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _wait_app_hosts(topology: Topology) -> None:
    for host, port in (("web1", WEB_PORT), ("web2", WEB_PORT), ("ws", WS_PORT)):
        url = f"http://{topology.address(host)}:{port}/readyz"
        topology.children[host].wait_until(functools.partial(ready, url), what="answer /readyz", timeout=120)
    tcp = topology.address("tcp")
    topology.children["tcp"].wait_until(lambda: probes.tcp_answers(TCP_PORT, tcp), what="answer a PING", timeout=120)
    topology.wait_worker()
    beat = topology.children["beat"]
    beat.wait_until(lambda: probes.BEAT_STARTED in beat.log_tail(200), what="start its schedule", timeout=120)


def _database(topology: Topology) -> None:
    """The role and database compose's postgres image makes from POSTGRES_USER, _DB and _PASSWORD."""
    with psycopg.connect(topology.database_url, autocommit=True) as connection:
        password = topology.dotenv["POSTGRES_PASSWORD"]
        connection.execute(sql.SQL("CREATE ROLE flashsale LOGIN PASSWORD {}").format(sql.Literal(password)))
        connection.execute("ALTER DATABASE flashsale OWNER TO flashsale")


@contextlib.contextmanager
def topology_running() -> Iterator[Topology]:
    """The whole topology up and answering; all of it gone afterwards, whatever happened."""
    clean_stale()
    _clean_stale_scratch()
    # Outside /tmp: every host mounts an empty /tmp of its own. As root, PostgreSQL runs as
    # another user, who must reach its directory.
    scratch = Path(tempfile.mkdtemp(prefix=f"flashsale-hosts-{os.getpid()}-", dir=SCRATCH_ROOT))
    scratch.chmod(0o755)
    log_dir = LOG_ROOT / f"hosts-{os.getpid()}"
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir(parents=True)
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, scratch, ignore_errors=True)
        cleanup.callback(_keep_logs, scratch, log_dir)  # before the scratch goes: its servers' logs
        network = Network(PLANS, operator_aliases=("operator", "mail")).create()
        cleanup.callback(network.destroy)
        pair = certificates_write(scratch / "tls", hosts=(SHOP,))
        mail = MailSink(scratch / "mail", host=network.operator, port=MAIL_PORT).start()
        cleanup.callback(mail.stop)
        hooks = HookSink(network.operator, HOOK_PORT).start()
        cleanup.callback(hooks.stop)
        dotenv = _dotenv(network, scratch, pair.certificate)
        topology = Topology(network, scratch, dotenv, pair.certificate, log_dir, mail, hooks)
        cleanup.callback(_stop_all, topology)

        # The image's build step, on this checkout: its static files (STATIC_ROOT is /app/staticfiles).
        build_env = {**process_env(image_environment(), scratch), "SECRET_KEY": "build", "ALLOWED_HOSTS": "build"}
        collect = subprocess.Popen([sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
                                   cwd=ROOT, env=build_env)  # fmt: skip
        # The image's redis-server runs with protected mode off (its entrypoint's default);
        # the compose command's options are LocalRedis's own.
        topology.redis = LocalRedis(
            data_dir=scratch / "redis", port=6379, host=network["redis"].address,
            launch=tuple(network.prefix("redis")), options=("--protected-mode", "no"),
        ).start()  # fmt: skip
        topology.postgres = LocalPostgres(
            data_dir=scratch / "postgres", port=5432, host=network["postgres"].address,
            launch=tuple(network.prefix("postgres")),
            hba=(
                f"host all postgres {network.operator}/32 trust",
                f"host flashsale flashsale {network.private} scram-sha-256",
            ),
        ).start()  # fmt: skip
        _database(topology)
        topology.launched["migrate"] = service_command("migrate")
        topology.run_in("migrate", topology.launched["migrate"], service="migrate")
        if collect.wait(120) != 0:
            raise AssertionError("collectstatic (the image's build step) failed")

        for host in APP_HOSTS:
            start_app_host(topology, host)
        _start_monitoring(topology)
        _wait_app_hosts(topology)

        topology.haproxy = LocalHaproxy(
            config_dir=scratch / "haproxy", port=HTTP_PORT, host=topology.shop_address,
            web_ports=(f"{topology.address('web1')}:{WEB_PORT}", f"{topology.address('web2')}:{WEB_PORT}"),
            ws_ports=(f"{topology.address('ws')}:{WS_PORT}",),
            tls_port=HTTPS_PORT, certificate=pair.certificate,
            tcp_port=TCP_PORT, tcp_ports=(f"{topology.address('tcp')}:{TCP_PORT}",),
            launch=tuple(network.prefix("haproxy")),
            maxconn=balancer_maxconn(),
        ).start()  # fmt: skip
        wait_for(topology.shop_ready, what="the shop answering through HAProxy", timeout=60)
        for name, port in (("prometheus", 9090), ("alertmanager", 9093)):
            url = f"http://{topology.address(name)}:{port}/-/ready"
            topology.children[name].wait_until(functools.partial(probes.http_ok, url), what="be ready", timeout=60)
        yield topology


SCRATCH_ROOT = Path("/var/tmp")
_SCRATCH = re.compile(r"flashsale-hosts-(\d+)-\w+")


def _clean_stale_scratch() -> None:
    """Remove the scratch directories of runs that are gone (killed before their teardown)."""
    for entry in SCRATCH_ROOT.glob("flashsale-hosts-*"):
        found = _SCRATCH.fullmatch(entry.name)
        if found is None or int(found[1]) == os.getpid():
            continue
        try:
            os.kill(int(found[1]), 0)
        except ProcessLookupError:
            shutil.rmtree(entry, ignore_errors=True)
        except PermissionError:
            pass


def _keep_logs(scratch: Path, log_dir: Path) -> None:
    """The logs the servers wrote in the scratch directory (HAProxy's, Redis's, PostgreSQL's),
    copied beside the hosts' own, where they outlive the run."""
    for found in scratch.glob("*/*.log"):
        with contextlib.suppress(OSError):
            shutil.copyfile(found, log_dir / f"{found.parent.name}-{found.name}")


def _start_monitoring(topology: Topology) -> None:
    scratch = topology.scratch
    token = scratch / "prometheus" / "metrics_token"
    token.parent.mkdir(parents=True)
    token.write_text(topology.dotenv["METRICS_BEARER_TOKEN"])
    config = scratch / "prometheus" / "prometheus.yml"
    config.write_text(prometheus_config(topology, token))
    prometheus = ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={scratch / 'prometheus' / 'data'}",
                  "--storage.tsdb.retention.time=15d"]  # fmt: skip
    topology.children["prometheus"] = spawn(
        "prometheus", [*topology.network.prefix("prometheus"), *prometheus], env=process_env({}, scratch),
        cwd=scratch, log=topology.log_dir / "prometheus.log",
    )  # fmt: skip
    job = [on_this_machine(part, volumes(scratch)) for part in service_command("alertmanager-config")]
    topology.launched["alertmanager-config"] = job
    topology.run_in("alertmanager", job, service="alertmanager-config")
    written = on_this_machine("/var/lib/flashsale/alertmanager/alertmanager.yml", volumes(scratch))
    alertmanager = ["prometheus-alertmanager", f"--config.file={written}",
                    f"--storage.path={scratch / 'alertmanager' / 'data'}"]  # fmt: skip
    topology.children["alertmanager"] = spawn(
        "alertmanager", [*topology.network.prefix("alertmanager"), *alertmanager], env=process_env({}, scratch),
        cwd=scratch, log=topology.log_dir / "alertmanager.log",
    )  # fmt: skip


def _stop_all(topology: Topology) -> None:
    for crowd in topology.crowds:
        stop_group(crowd.process, timeout=5)
    if topology.haproxy is not None:
        topology.haproxy.stop()
    for child in topology.children.values():
        child.stop(timeout=15)
    if topology.postgres is not None:
        topology.postgres.stop()
    if topology.redis is not None:
        topology.redis.stop()
