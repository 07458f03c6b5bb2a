"""Child processes of a run: started so that they die with it, stopped by process group.

Every server a run starts (Redis, PostgreSQL, web, ws, worker, beat) is started by
``start_child``: in a process group of its own, so the terminal's Ctrl-C reaches the run
alone and the run stops its children in order; and with ``PR_SET_PDEATHSIG``, so a run that
is itself killed leaves nothing behind. The kernel sends that signal when the *thread* that
started the child ends: start children from a thread that lives as long as they do (the
main thread).

``Child`` is a started process with its log file: what the tests and the benchmark hold.
This module imports nothing from Django.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

_PR_SET_PDEATHSIG = 1
# Loaded once here: the child, between fork and exec, only calls into it. The parent-death
# signal is Linux's alone: elsewhere (macOS) a run that is itself SIGKILLed can leave its
# children running, while Ctrl-C still stops them in order.
_LIBC = ctypes.CDLL("libc.so.6", use_errno=True) if sys.platform == "linux" else None


class ChildError(RuntimeError):
    """A child exited or did not become ready; the message carries its log's tail."""


def die_with_parent() -> None:
    """Run in the child between fork and exec: SIGTERM arrives when the parent dies, even
    from SIGKILL (on Linux)."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def start_child(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdout: IO[bytes] | int | None = None,
    **popen: Any,
) -> subprocess.Popen[bytes]:
    """``argv`` in a process group of its own that dies with this process."""
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        list(argv),
        env=None if env is None else dict(env),
        cwd=cwd,
        stdout=stdout,
        stderr=subprocess.STDOUT if stdout is not None else None,
        process_group=0,
        preexec_fn=die_with_parent,  # noqa: PLW1509 - one prctl call, libc loaded before the fork
        **popen,
    )


def stop_group(process: subprocess.Popen[bytes], *, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
    """Stop ``process`` and its process group.

    ``sig`` goes to the leader alone, as a container runtime sends it to PID 1: a Celery
    worker then shuts down warm, letting its pool finish the tasks in hand; granian and
    uvicorn close their workers themselves. After ``timeout``, or at once when the leader
    has already exited, SIGKILL takes whatever is left of the group: processes a server
    forked (granian's workers, Celery's pool) must not outlive it holding its port or pipe.
    SIGKILL as ``sig`` goes to the whole group at once.
    """
    if sig != signal.SIGKILL and process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@dataclass
class Child:
    """A server of the stack a test or the benchmark started, with its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    port: int = 0
    env: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        """Stop the child and everything it started (its process group; see ``stop_group``)."""
        stop_group(self.process, sig=sig, timeout=timeout)

    def kill(self) -> None:
        """SIGKILL the whole process group: no shutdown code runs."""
        self.stop(signal.SIGKILL)

    def wait_until(self, ready: Callable[[], bool], *, what: str, timeout: float = 60.0) -> None:
        """Return once ``ready()`` holds; stop the child and raise if it exits first or
        ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while not ready():
            if self.process.poll() is not None:
                raise ChildError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise ChildError(f"{self.name} did not {what} in {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.1)


def spawn(name: str, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, log: Path, port: int = 0) -> Child:
    """Start ``argv`` as a child whose output goes to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as log_file:
        process = start_child(argv, env=env, cwd=cwd, stdout=log_file)
    return Child(name=name, process=process, log=log, port=port, env=dict(env))
