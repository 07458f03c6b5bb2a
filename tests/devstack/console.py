"""Running ``make run`` / ``python -m devstack`` as a person does, reading what it prints, and
the few things the tests then do against the stack it started."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import psutil
import psycopg

from antibot.proof_of_work import solve

# What a newcomer's shell does not have: the suite's servers and settings.
SUITE_ONLY = (
    "REDIS_URL",
    "DATABASE_URL",
    "CACHE_URL",
    "CELERY_BROKER_URL",
    "DJANGO_SETTINGS_MODULE",
    "EMAIL_FILE_PATH",
    "PROMETHEUS_MULTIPROC_DIR",
    "VIRTUAL_ENV",
    "PYTHONPATH",
    "PYTHONHOME",
)


def newcomer_env(run_dir: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in SUITE_ONLY}
    env["FLASHSALE_RUN_DIR"] = str(run_dir)
    env.update(extra)
    return env


class Console:
    """A command started in its own session (the terminal's Ctrl-C reaches it alone), its
    output collected by a thread so it never blocks on a pipe."""

    def __init__(self, argv: Sequence[str], *, cwd: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self.seen: dict[int, psutil.Process] = {}  # every descendant seen while it ran
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def _watch(self) -> None:
        while self.process.poll() is None:
            for process in self.descendants():
                self.seen.setdefault(process.pid, process)
            time.sleep(0.2)

    def text(self, last: int = 80) -> str:
        return "\n".join(self.lines[-last:])

    def wait_for(self, pattern: str, *, timeout: float, after: int = 0) -> re.Match[str]:
        """The first line from line ``after`` on matching ``pattern``; fails (with the output)
        if the command ends or ``timeout`` passes first."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while True:
            for line in list(self.lines[after:]):
                match = regex.search(line)
                if match:
                    return match
            if self.process.poll() is not None:
                self._reader.join(timeout=5)
                if not any(regex.search(line) for line in self.lines[after:]):
                    break
                continue
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        raise AssertionError(f"no line matched {pattern!r} (exit code {self.process.poll()}); output:\n{self.text()}")

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def interrupt(self, *, timeout: float = 120) -> int:
        """Ctrl-C, as the terminal sends it: SIGINT to the whole foreground process group.
        Returns the exit code (at once if the command had already ended)."""
        if self.process.poll() is not None:
            self._reader.join(timeout=5)
            return self.process.returncode
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            raise
        self._reader.join(timeout=5)
        return code


def still_running(processes: list[psutil.Process]) -> list[str]:
    left = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                left.append(" ".join(process.cmdline()))
        except psutil.NoSuchProcess:
            pass
    return left


def program_role(cmdline: list[str]) -> str | None:
    """web, ws, worker, beat or tcp, from a command line of devstack/procfile.py."""
    if cmdline[2:3] == ["tcpserver"]:
        return "tcp"
    if cmdline[1:2] != ["-m"] or len(cmdline) < 3:
        return None
    if cmdline[2] == "celery":
        return cmdline[5]
    return {"granian": "web", "uvicorn": "ws"}.get(cmdline[2])


def stack_programs(console: Console) -> dict[str, psutil.Process]:
    """The launcher's programs, by what they run (under ``make`` or started directly)."""
    top = psutil.Process(console.process.pid)
    [launcher] = [p for p in [top, *top.children()] if p.cmdline()[1:3] == ["-m", "devstack"]]
    return {role: child for child in launcher.children() if (role := program_role(child.cmdline()))}


def demo_purchase(base: str, password: str, sale_id: int) -> str:
    """The demo shopper buys the demo sale through the API, proof of work solved in Python."""
    with httpx.Client(base_url=base, timeout=30) as client:
        token = client.post("/api/auth/token/", json={"username": "shopper", "password": password}).json()["token"]
        client.headers["Authorization"] = f"Token {token}"
        challenge = client.post(f"/api/sales/{sale_id}/challenge/").json()
        body = {"challenge": challenge["challenge"], "solution": solve(challenge["challenge"], challenge["difficulty"])}
        answer = client.post(f"/api/sales/{sale_id}/purchase/", json=body)
    assert answer.status_code == 201, answer.text
    order_id: str = answer.json()["order_id"]
    return order_id


def order_rows(database_url: str, order_id: str) -> int:
    with psycopg.connect(database_url) as connection:
        row = connection.execute("SELECT count(*) FROM orders_order WHERE id = %s", [order_id]).fetchone()
    assert row is not None
    return int(row[0])
