"""``make run`` end to end, as a newcomer runs it: a fresh checkout, a virtualenv made by
``make run`` itself from requirements.txt alone (not this suite's), its own Redis and
PostgreSQL, web, ws, worker, beat and tcp; every process stays up, a purchase becomes an order
row and an email; then Ctrl-C, and nothing is left running.

The checkout is the files git tracks (and untracked ones it does not ignore) copied from
this tree, so uncommitted work is what gets tested. pip uses its cache: after the first run
the install takes seconds.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from devstack.localservers import free_port
from tests.polling import wait_for

from .console import Console, demo_purchase, newcomer_env, order_rows, stack_programs, still_running

ROOT = Path(__file__).resolve().parents[2]
UP_FOR = 10.0  # seconds every process must have stayed up
# Every module the deployed code is made of, imported in the checkout's virtualenv (the
# settings modules are the environment's business; __main__ modules would run).
IMPORT_EVERYTHING = """
import importlib, pkgutil, django
django.setup()
for package in (
    "accounts", "antibot", "core", "devstack", "flashsale_project", "observability", "operations", "orders", "sales",
    "storefront", "tcpdoor",
):
    for found in pkgutil.walk_packages(importlib.import_module(package).__path__, package + "."):
        if not (found.name.endswith("__main__") or found.name.startswith("flashsale_project.settings.")):
            importlib.import_module(found.name)
print("imported")
"""


def fresh_checkout(destination: Path) -> Path:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # A tracked file deleted in the work tree is not copied.
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


@pytest.fixture
def checkout(scratch: Path) -> Path:
    return fresh_checkout(scratch / "flashsale")


def _admin_login(base: str, username: str, password: str) -> httpx.Response:
    with httpx.Client(base_url=base, follow_redirects=False, timeout=10) as browser:
        form = browser.get("/admin/login/?next=/admin/")
        assert form.status_code == 200
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
        assert token is not None
        answer = browser.post(
            "/admin/login/?next=/admin/",
            data={"csrfmiddlewaretoken": token.group(1), "username": username, "password": password, "next": "/admin/"},
            headers={"Referer": f"{base}/admin/login/"},
        )
        assert answer.status_code == 302, answer.text[:500]
        return browser.get("/admin/")


def test_make_run_on_a_fresh_checkout_serves_a_purchase_end_to_end_and_ctrl_c_stops_all_of_it(
    checkout: Path, scratch: Path
) -> None:
    run_dir = scratch / "run"
    web_port, ws_port, tcp_port = free_port(), free_port(), free_port()
    python = getattr(sys, "_base_executable", sys.executable)  # Not this suite's virtualenv.
    args = f"--web-port {web_port} --ws-port {ws_port} --tcp-port {tcp_port} --web-workers 1 --sale-starts-in 0"
    console = Console(["make", "run", f"PYTHON={python}", f"ARGS={args}"], cwd=checkout, env=newcomer_env(run_dir))
    stack: list[psutil.Process] = []
    try:
        # Given the stack a newcomer gets (the first pip install may take minutes)
        url = console.wait_for(r"storefront\s+(http://\S+)", timeout=900).group(1)
        assert url == f"http://127.0.0.1:{web_port}/"
        assert console.wait_for(r"\[make run\] ready\.", timeout=5)
        # It says it is not the benchmark's shape, and how to run that one (docs/benchmark.md)
        assert console.wait_for(r"development shape: DEBUG is on", timeout=5)
        assert console.wait_for(r"benchmark's shape on this machine: DEBUG=false LOG_LEVEL=WARNING make run", timeout=5)
        assert console.wait_for(r"tcp door\s+(tcp://\S+)", timeout=5).group(1) == f"tcp://127.0.0.1:{tcp_port}"
        admin_password = console.wait_for(r"\[demo\] login admin / (\S+)", timeout=5).group(1)
        shopper_password = console.wait_for(r"\[demo\] login shopper / (\S+)", timeout=5).group(1)
        sale_id = int(console.wait_for(r"\[demo\] sale page: /sales/(\d+)/", timeout=5).group(1))
        freeze = [str(checkout / ".venv" / "bin" / "python"), "-m", "pip", "freeze"]
        installed = subprocess.run(freeze, capture_output=True, text=True, check=True).stdout.lower()
        assert "django==" in installed
        assert "pytest" not in installed  # requirements.txt alone, not the development set

        # Then every process stays up (the same process, never restarted) for UP_FOR seconds
        programs = stack_programs(console)
        assert set(programs) == {"web", "ws", "worker", "beat", "tcp"}, console.text()
        time.sleep(max(0.0, max(p.create_time() for p in programs.values()) + UP_FOR - time.time()))
        assert [name for name, p in programs.items() if not p.is_running()] == [], console.text()
        assert programs == stack_programs(console)
        assert not any("exited" in line for line in console.lines if line.startswith("[make run]")), console.text()

        # And it serves: the storefront, the admin, and a purchase that becomes an order row and an email
        home = httpx.get(url, timeout=10)
        assert home.status_code == 200
        assert "Aurora X1 smartphone" in home.text
        assert "Site administration" in _admin_login(url.rstrip("/"), "admin", admin_password).text
        order_id = demo_purchase(url.rstrip("/"), shopper_password, sale_id)
        stack_env = dict(line.split("=", 1) for line in (run_dir / "stack.env").read_text().splitlines())
        wait_for(lambda: order_rows(stack_env["DATABASE_URL"], order_id) == 1, what="the order row", timeout=120)
        mail = run_dir / "mail"
        wait_for(
            lambda: any(order_id in path.read_text(errors="replace") for path in mail.iterdir()),
            what="the confirmation email",
            timeout=120,
        )
        # And the rest of the runtime's import paths work in that virtualenv: the operator's
        # command against the running stack, every module of the deployed code.
        venv_python = str(checkout / ".venv" / "bin" / "python")
        operator_env = newcomer_env(run_dir, DJANGO_SETTINGS_MODULE="flashsale_project.settings.local", **stack_env)
        status = subprocess.run(
            [venv_python, "manage.py", "flashsale", "status", str(sale_id), "--json"],
            cwd=checkout, env=operator_env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert status.returncode == 0, status.stdout + status.stderr
        everything = subprocess.run(
            [venv_python, "-c", IMPORT_EVERYTHING],
            cwd=checkout, env=operator_env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert everything.stdout.strip() == "imported", everything.stdout + everything.stderr
        stack = console.descendants()
        names = " ".join(" ".join(p.cmdline()) for p in stack)
        for program in ("valkey-server", "postgres", "granian", "uvicorn", "celery"):
            assert program in names, program
    finally:
        # When Ctrl-C
        code = console.interrupt()

    # Then all of it stops
    # GNU make re-raises the SIGINT it got once its child finished, as shells expect of Ctrl-C.
    assert code in (0, -signal.SIGINT), console.text()
    wait_for(lambda: still_running(stack) == [], what="every process to end", timeout=30)
    for port in (web_port, ws_port):
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
    assert "[make run] stopped." in console.lines
