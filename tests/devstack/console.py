"""Running ``make run`` / ``python -m devstack`` as a person does, and reading what it prints."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import psutil

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
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

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
