"""The supervisor on small real programs: what "ready" means, a start-up failure, restarts
with backoff after it, and a stop that leaves nothing behind."""

from __future__ import annotations

import io
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from devstack.supervisor import Program, StartupFailure, Supervisor
from tests.polling import wait_for

from .console import still_running

ROOT = Path(__file__).resolve().parents[2]


def python(code: str) -> list[str]:
    return [sys.executable, "-u", "-c", code]


SERVES = python("import time\nprint('serving', flush=True)\nwhile True: time.sleep(1)")


class Run:
    """A supervisor with its printed output and its messages collected."""

    def __init__(self, programs: list[Program], **options: Any) -> None:
        self.out = io.StringIO()
        self.said: list[str] = []
        self.supervisor = Supervisor(
            programs, env={"PATH": "/usr/bin:/bin"}, cwd=ROOT, say=self.said.append, out=self.out, **options
        )

    @property
    def printed(self) -> list[str]:
        return self.out.getvalue().splitlines()

    def pid(self, name: str) -> int:
        return self.supervisor.running[name].process.pid


@pytest.fixture
def runs() -> Iterator[list[Run]]:
    started: list[Run] = []
    yield started
    for run in started:
        run.supervisor.stop_all()


def test_ready_waits_for_every_probe_and_output_is_prefixed_with_each_name(runs: list[Run]) -> None:
    gate = threading.Event()
    run = Run(
        [
            Program("alpha", SERVES, ready_line="serving"),
            Program("beta", SERVES, ready=gate.is_set, ready_means="opened the gate"),
        ],
        colour=False,
    )
    runs.append(run)
    run.supervisor.start()
    waiting = threading.Thread(target=run.supervisor.wait_until_ready, kwargs={"timeout": 60})
    waiting.start()
    wait_for(lambda: any(line.endswith("alpha | serving") for line in run.printed), what="alpha's line", timeout=30)
    assert waiting.is_alive()  # beta's probe has not answered yet

    gate.set()
    waiting.join(timeout=60)

    assert not waiting.is_alive()
    assert any(line.endswith("beta  | serving") for line in run.printed), run.printed


def test_colour_goes_with_a_terminal_only(runs: list[Run]) -> None:
    run = Run([Program("alpha", SERVES, ready_line="serving")], colour=True)
    runs.append(run)
    run.supervisor.start()
    run.supervisor.wait_until_ready(timeout=60)
    assert any("\033[36malpha |\033[0m serving" in line for line in run.printed), run.printed
    assert Run([Program("alpha", SERVES)]).supervisor.colour is False  # StringIO is no terminal


def test_a_program_that_exits_during_start_up_is_named_with_its_last_lines(runs: list[Run]) -> None:
    dies = python(
        "import sys\nprint('loading the settings', flush=True)\nprint('ImportError: boom', flush=True)\nsys.exit(3)"
    )
    run = Run([Program("steady", SERVES, ready_line="serving"), Program("fragile", dies, ready_line="never")])
    runs.append(run)
    run.supervisor.start()

    with pytest.raises(StartupFailure) as failure:
        run.supervisor.wait_until_ready(timeout=60)

    assert failure.value.name == "fragile"
    assert failure.value.reason == "exited during start-up (exit code 3)"
    assert failure.value.tail[-2:] == ["loading the settings", "ImportError: boom"]
    run.supervisor.report(failure.value)
    assert run.said[-1] == "fragile exited during start-up (exit code 3). Its last lines:"
    assert run.printed[-1] == "    ImportError: boom"


def test_a_program_not_up_in_time_is_a_start_up_failure(runs: list[Run]) -> None:
    run = Run([Program("mute", SERVES, ready=lambda: False, ready_means="answered /healthz")])
    runs.append(run)
    run.supervisor.start()
    with pytest.raises(StartupFailure, match=r"mute was not up after 1 s \(it never answered /healthz\)"):
        run.supervisor.wait_until_ready(timeout=1)


def test_after_start_up_a_dead_program_is_restarted_with_growing_backoff_and_the_others_keep_running(
    runs: list[Run],
) -> None:
    run = Run(
        [Program("steady", SERVES, ready_line="serving"), Program("fragile", SERVES, ready_line="serving")],
        backoff_first=0.1,
        stable_after=3600.0,  # every run counts as part of one crash loop: the backoff keeps growing
    )
    runs.append(run)
    run.supervisor.start()
    run.supervisor.wait_until_ready(timeout=60)
    steady = run.pid("steady")
    supervising = threading.Thread(target=run.supervisor.supervise)
    supervising.start()
    try:
        for restart, delay in ((1, "0.1"), (2, "0.2"), (3, "0.4")):
            doomed = run.pid("fragile")
            psutil.Process(doomed).send_signal(signal.SIGKILL)

            def restarted(restart: int = restart, doomed: int = doomed) -> bool:
                return run.supervisor.restarts["fragile"] == restart and run.pid("fragile") != doomed

            wait_for(restarted, what=f"restart {restart}", timeout=30)
            assert any(
                line.startswith("fragile exited (killed by SIGKILL) after ")
                and line.endswith(f"restarting it in {delay} s (restart {restart}). Its last lines:")
                for line in run.said
            ), run.said
            wait_for(lambda: run.said[-1] == "fragile is up again (it is running).", what="the comeback", timeout=30)
    finally:
        run.supervisor.stop()
        supervising.join(timeout=30)
    assert run.pid("steady") == steady
    assert run.supervisor.restarts == {"fragile": 3}


def test_stop_all_ends_each_program_and_what_it_forked_even_one_that_ignores_sigterm(runs: list[Run]) -> None:
    stubborn = python(
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time\\nwhile True: time.sleep(1)'])\n"
        "print('serving', child.pid, flush=True)\n"
        "while True: time.sleep(1)"
    )
    run = Run([Program("polite", SERVES, ready_line="serving"), Program("stubborn", stubborn, ready_line="serving")],
              stop_timeout=1.0)  # fmt: skip
    runs.append(run)
    run.supervisor.start()
    run.supervisor.wait_until_ready(timeout=60)
    [forked] = [int(line.split()[-1]) for line in run.printed if "stubborn | serving" in line]
    processes = [psutil.Process(run.pid("polite")), psutil.Process(run.pid("stubborn")), psutil.Process(forked)]

    run.supervisor.stop_all()

    # SIGKILL is sent to the whole group; the kernel ends its processes a moment later.
    wait_for(lambda: still_running(processes) == [], what="every process of both programs to end", timeout=30)
    assert run.supervisor.running["polite"].process.returncode == -signal.SIGTERM
    assert run.supervisor.running["stubborn"].process.returncode == -signal.SIGKILL
