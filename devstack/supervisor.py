"""``make run``'s process supervisor: start the programs, say when all are up, keep them up.

Start-up: every program starts at once; ``wait_until_ready`` returns when each answers its
readiness probe. A program that exits before that (or is not ready in time) is a start-up
failure: ``StartupFailure`` names it and carries its last log lines.

Running: a program that exits is restarted after a backoff (1 s, doubling to 30 s; back to
1 s once a run lasted ``stable_after`` seconds), logged with its name, exit status and last
lines; when its probe answers again that is logged too. The other programs are not touched.
Nothing but ``stop()`` (Ctrl-C in the launcher) ends it.

Each program runs in a process group of its own (``devstack.children``); what it prints is
printed prefixed with the time and its name, coloured when the output is a terminal. The
last lines of each are kept for the failure reports.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from devstack.children import start_child, stop_group

COLOURS = ("\033[36m", "\033[33m", "\033[35m", "\033[32m", "\033[34m", "\033[31m")
RESET = "\033[0m"


@dataclass(frozen=True)
class Program:
    """One long-running process: its command line and how to tell it is up."""

    name: str
    argv: Sequence[str]
    # Either a probe asked from outside, or a line the program prints once it is up.
    ready: Callable[[], bool] | None = None
    ready_line: str | None = None
    ready_means: str = "is running"


class StartupFailure(RuntimeError):
    def __init__(self, name: str, reason: str, tail: Sequence[str]) -> None:
        super().__init__(f"{name} {reason}")
        self.name = name
        self.reason = reason
        self.tail = list(tail)


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


@dataclass
class _Running:
    program: Program
    process: subprocess.Popen[bytes]
    started_at: float
    tail: collections.deque[str]
    saw_ready_line: threading.Event = field(default_factory=threading.Event)
    reader: threading.Thread | None = None
    restart_at: float | None = None
    exit_code: int | None = None

    def is_ready(self) -> bool:
        if self.process.poll() is not None:
            return False
        if self.program.ready_line is not None and not self.saw_ready_line.is_set():
            return False
        return self.program.ready is None or self.program.ready()


class Supervisor:
    def __init__(
        self,
        programs: Sequence[Program],
        *,
        env: Mapping[str, str],
        cwd: Path,
        say: Callable[[str], None],
        out: TextIO | None = None,
        colour: bool | None = None,
        tail_lines: int = 30,
        backoff_first: float = 1.0,
        backoff_max: float = 30.0,
        stable_after: float = 30.0,
        stop_timeout: float = 20.0,
        after_exit: Callable[[], None] | None = None,
    ) -> None:
        self.programs = list(programs)
        self.env = dict(env)
        self.cwd = cwd
        self.say = say
        self.out = out if out is not None else sys.stdout
        if colour is None:
            colour = self.out.isatty() and not os.environ.get("NO_COLOR")
        self.colour = colour
        self.tail_lines = tail_lines
        self.backoff_first = backoff_first
        self.backoff_max = backoff_max
        self.stable_after = stable_after
        self.stop_timeout = stop_timeout
        # Called once a program that exited is gone with its whole group, before its restart.
        self.after_exit = after_exit
        self.running: dict[str, _Running] = {}
        self.restarts: collections.Counter[str] = collections.Counter()
        self._failures: collections.Counter[str] = collections.Counter()
        self._stop = threading.Event()
        self._write_lock = threading.Lock()
        width = max((len(program.name) for program in self.programs), default=0)
        self._prefixes = {
            program.name: self._paint(f"{program.name:<{width}} |", number)
            for number, program in enumerate(self.programs)
        }

    # --- Start-up -----------------------------------------------------------------------

    def start(self) -> None:
        """Start every program (from the thread that will supervise them: see children)."""
        for program in self.programs:
            self._spawn(program)

    def wait_until_ready(self, *, timeout: float) -> None:
        """Return when every program is up; raise ``StartupFailure`` if one exits first or
        is not up within ``timeout`` seconds. Returns early, quietly, after ``stop()``."""
        deadline = time.monotonic() + timeout
        pending = [program.name for program in self.programs]
        while pending and not self._stop.is_set():
            for name in list(pending):
                running = self.running[name]
                code = running.process.poll()
                if code is not None:
                    self._drain(running)
                    raise StartupFailure(name, f"exited during start-up ({describe_exit(code)})", running.tail)
                if self._ready_at_start_up(running):
                    pending.remove(name)
            if pending and time.monotonic() > deadline:
                name = pending[0]
                program = self.running[name].program
                raise StartupFailure(
                    name, f"was not up after {timeout:.0f} s (it never {program.ready_means})", self.running[name].tail
                )
            self._stop.wait(0.2)

    def _ready_at_start_up(self, running: _Running) -> bool:
        """The probe's answer; a probe that cannot even ask (say, the broker's transport does
        not import) fails the start-up, blaming the program's own exit when it follows."""
        try:
            return running.is_ready()
        except Exception as error:
            name = running.program.name
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = running.process.wait(timeout=10)
                self._drain(running)
                raise StartupFailure(name, f"exited during start-up ({describe_exit(code)})", running.tail) from error
            raise StartupFailure(name, f"could not be checked ({error!r})", running.tail) from error

    # --- Running ------------------------------------------------------------------------

    def supervise(self) -> None:
        """Restart programs that exit, until ``stop()``."""
        while not self._stop.wait(0.2):
            now = time.monotonic()
            for running in list(self.running.values()):
                if running.restart_at is None:
                    code = running.process.poll()
                    if code is not None:
                        self._exited(running, code, now)
                elif now >= running.restart_at:
                    self.restarts[running.program.name] += 1
                    self._watch_comeback(self._spawn(running.program))

    def _exited(self, running: _Running, code: int, now: float) -> None:
        name = running.program.name
        lived = now - running.started_at
        # A run that lasted is not part of a crash loop: the backoff starts over.
        self._failures[name] = 1 if lived >= self.stable_after else self._failures[name] + 1
        delay = min(self.backoff_first * 2 ** (self._failures[name] - 1), self.backoff_max)
        # What it forked (granian's workers, Celery's pool) goes with it.
        stop_group(running.process, timeout=5.0)
        self._drain(running)
        if self.after_exit is not None:
            self.after_exit()
        running.exit_code = code
        running.restart_at = now + delay
        self.say(
            f"{name} exited ({describe_exit(code)}) after {lived:.1f} s; restarting it in {delay:g} s"
            f" (restart {self.restarts[name] + 1}). Its last lines:"
        )
        self._print_tail(running, lines=10)

    def _watch_comeback(self, running: _Running) -> None:
        def watch() -> None:
            while not self._stop.is_set() and running.process.poll() is None:
                try:
                    if running.is_ready():
                        self.say(f"{running.program.name} is up again (it {running.program.ready_means}).")
                        return
                except Exception as error:  # noqa: BLE001 - said, not raised: the supervisor goes on
                    self.say(f"{running.program.name} could not be checked ({error!r})")
                    return
                self._stop.wait(0.5)

        threading.Thread(target=watch, name=f"watch-{running.program.name}", daemon=True).start()

    # --- Stopping -----------------------------------------------------------------------

    def stop(self) -> None:
        """Ask ``wait_until_ready`` / ``supervise`` to return (safe from a signal handler)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop_all(self) -> None:
        """Stop every program with its whole process group: SIGTERM, then SIGKILL after ``stop_timeout``."""
        self._stop.set()
        stopping = [self.running[p.name] for p in reversed(self.programs) if p.name in self.running]
        for running in stopping:  # All at once: a worker's warm shutdown need not hold up the rest.
            if running.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    running.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for running in stopping:
            stop_group(running.process, timeout=max(deadline - time.monotonic(), 0.1))
            self._drain(running)

    # --- Output -------------------------------------------------------------------------

    def report(self, failure: StartupFailure) -> None:
        self.say(f"{failure.name} {failure.reason}. Its last lines:")
        for line in failure.tail[-self.tail_lines :]:
            self._write(f"    {line}")

    def _spawn(self, program: Program) -> _Running:
        process = start_child(program.argv, env=self.env, cwd=self.cwd, stdout=subprocess.PIPE)
        running = _Running(
            program=program,
            process=process,
            started_at=time.monotonic(),
            tail=collections.deque(maxlen=self.tail_lines),
        )
        running.reader = threading.Thread(target=self._read, args=(running,), name=f"read-{program.name}", daemon=True)
        running.reader.start()
        self.running[program.name] = running
        return running

    def _read(self, running: _Running) -> None:
        assert running.process.stdout is not None
        prefix = self._prefixes[running.program.name]
        for raw in running.process.stdout:
            line = raw.decode("utf-8", errors="replace").rstrip()
            running.tail.append(line)
            if running.program.ready_line is not None and running.program.ready_line in line:
                running.saw_ready_line.set()
            self._write(f"{time.strftime('%H:%M:%S')} {prefix} {line}")
        running.process.stdout.close()

    def _drain(self, running: _Running) -> None:
        """Let the reader take the last lines of a process that exited."""
        if running.reader is not None:
            running.reader.join(timeout=2.0)

    def _print_tail(self, running: _Running, *, lines: int) -> None:
        for line in list(running.tail)[-lines:]:
            self._write(f"    {line}")

    def _paint(self, text: str, number: int) -> str:
        if not self.colour:
            return text
        return f"{COLOURS[number % len(COLOURS)]}{text}{RESET}"

    def _write(self, text: str) -> None:
        with self._write_lock:
            self.out.write(text + "\n")
            self.out.flush()
