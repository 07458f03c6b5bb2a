"""``make run``'s launcher (``python -m devstack``) on the real stack: a process that cannot
start ends the run naming it; after "ready." a process that dies is restarted and the rest
keep serving; only Ctrl-C stops it all."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import httpx
import pytest

from devstack.localservers import free_port
from tests.polling import wait_for

from .console import Console, demo_purchase, newcomer_env, order_rows, stack_programs, still_running

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def run_dir(scratch: Path) -> Path:
    return scratch / "run"


def _launch(run_dir: Path, *args: str) -> Console:
    return Console([sys.executable, "-m", "devstack", *args], cwd=ROOT, env=newcomer_env(run_dir))


def test_a_process_that_cannot_start_ends_the_run_named_with_its_last_lines(run_dir: Path) -> None:
    # Given a web server asked to run no worker process at all (granian refuses)
    console = _launch(
        run_dir, "--web-port", str(free_port()), "--ws-port", str(free_port()), "--tcp-port", str(free_port()),
        "--web-workers", "0",
    )  # fmt: skip
    try:
        code = console.process.wait(timeout=600)
    finally:
        console.interrupt()

    assert code == 1, console.text()
    assert "[make run] web exited during start-up (exit code 2). Its last lines:" in console.lines
    tail = console.lines[console.lines.index("[make run] web exited during start-up (exit code 2). Its last lines:") :]
    assert any("--workers" in line and line.startswith("    ") for line in tail), console.text()
    assert "[make run] start-up failed: web exited during start-up (exit code 2)." in console.lines
    assert "[make run] ready." not in console.lines
    assert console.lines[-1] == "[make run] stopped."
    wait_for(lambda: still_running(list(console.seen.values())) == [], what="every process to end", timeout=30)


def test_after_ready_a_dead_process_is_restarted_while_the_others_keep_serving(run_dir: Path) -> None:
    web_port, ws_port = free_port(), free_port()
    console = _launch(run_dir, "--web-port", str(web_port), "--ws-port", str(ws_port), "--tcp-port", str(free_port()),
                      "--web-workers", "1", "--sale-starts-in", "0")  # fmt: skip
    try:
        console.wait_for(r"\[make run\] ready\.", timeout=600)
        admin_password = console.wait_for(r"\[demo\] login admin / (\S+)", timeout=5).group(1)
        shopper_password = console.wait_for(r"\[demo\] login shopper / (\S+)", timeout=5).group(1)
        sale_id = int(console.wait_for(r"\[demo\] sale page: /sales/(\d+)/", timeout=5).group(1))
        # The banner below "ready." says the demo sale's page and the logins again
        console.wait_for(r"\[make run\] A process that exits is restarted", timeout=5)
        ready = console.lines.index("[make run] ready.")
        banner = console.lines[
            ready : console.lines.index("[make run] A process that exits is restarted; Ctrl-C stops everything.")
        ]
        assert f"[make run]   demo sale   http://127.0.0.1:{web_port}/sales/{sale_id}/" in banner, console.text()
        assert (
            f"[make run]   logins      admin / {admin_password}, shopper / {shopper_password} "
            f"(admin is staff; kept in {run_dir.resolve() / 'admin.txt'})"
        ) in banner, console.text()
        before = stack_programs(console)
        said = len(console.lines)
        ws_gauges = f"gauge_live*_{before['ws'].pid}.db"  # its open-sockets gauge in /metrics
        assert list((run_dir / "prometheus").glob(ws_gauges)) != []

        # When the worker's main process and the ws process are SIGKILLed
        for name in ("worker", "ws"):
            before[name].send_signal(signal.SIGKILL)

        # Then web goes on answering while they come back, each named in the log
        assert httpx.get(f"http://127.0.0.1:{web_port}/healthz", timeout=10).status_code == 200
        for name, check in (("worker", "answered a ping"), ("ws", r"answered /readyz")):
            console.wait_for(rf"\[make run\] {name} exited \(killed by SIGKILL\) after .* restarting it in", timeout=60,
                             after=said)  # fmt: skip
            console.wait_for(rf"\[make run\] {name} is up again \(it {check}", timeout=120, after=said)
        after = stack_programs(console)
        assert after["web"].pid == before["web"].pid
        assert after["beat"].pid == before["beat"].pid
        assert after["tcp"].pid == before["tcp"].pid
        assert after["worker"].pid != before["worker"].pid and after["ws"].pid != before["ws"].pid
        assert httpx.get(f"http://127.0.0.1:{ws_port}/healthz", timeout=10).status_code == 200
        # The killed ws process's gauge no longer counts.
        assert list((run_dir / "prometheus").glob(ws_gauges)) == []

        # And the restarted worker turns a purchase into an order
        order_id = demo_purchase(f"http://127.0.0.1:{web_port}", shopper_password, sale_id)
        stack_env = dict(line.split("=", 1) for line in (run_dir / "stack.env").read_text().splitlines())
        wait_for(lambda: order_rows(stack_env["DATABASE_URL"], order_id) == 1, what="the order row", timeout=120)
    finally:
        code = console.interrupt()

    assert code == 0, console.text()
    assert console.lines[-1] == "[make run] stopped."
    wait_for(lambda: still_running(list(console.seen.values())) == [], what="every process to end", timeout=30)
