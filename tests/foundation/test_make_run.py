"""``make run`` end to end, as a newcomer runs it: from nothing to a running stack (its own
Redis and PostgreSQL, web, ws, worker, beat), then Ctrl-C, then nothing left running."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from celery import Celery

from devstack.localservers import free_port

ROOT = Path(__file__).resolve().parents[2]
STRIPPED = ("REDIS_URL", "DATABASE_URL", "DJANGO_SETTINGS_MODULE", "EMAIL_FILE_PATH", "PROMETHEUS_MULTIPROC_DIR")


class Output:
    """Lines a child prints, collected by a thread so the child never blocks on a pipe."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.process = process
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, *, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while time.monotonic() < deadline:
            for line in list(self.lines):
                match = regex.search(line)
                if match:
                    return match
            if self.process.poll() is not None:
                time.sleep(0.5)  # Let the reader thread take the last lines.
                break
            time.sleep(0.2)
        raise AssertionError(
            f"no line matched {pattern!r} (exit code {self.process.poll()}); output:\n" + "\n".join(self.lines[-60:])
        )


@pytest.fixture
def run_dir() -> Iterator[Path]:
    path = ROOT / "artifacts" / f"make-run-{os.getpid()}"
    shutil.rmtree(path, ignore_errors=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


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


def test_make_run_starts_the_stack_and_ctrl_c_stops_all_of_it(run_dir: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key not in STRIPPED}
    env["FLASHSALE_RUN_DIR"] = str(run_dir)
    web_port, ws_port = free_port(), free_port()
    make = subprocess.Popen(
        ["make", "run", f"ARGS=--web-port {web_port} --ws-port {ws_port} --web-workers 1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # Its own process group: the terminal's Ctrl-C goes to it alone.
    )
    output = Output(make)
    stack: list[psutil.Process] = []
    try:
        url = output.wait_for(r"storefront\s+(http://\S+)", timeout=180).group(1)
        admin_password = output.wait_for(r"\[demo\] login admin / (\S+)", timeout=5).group(1)
        assert url == f"http://127.0.0.1:{web_port}/"

        home = httpx.get(url, timeout=10)
        assert home.status_code == 200
        assert "Aurora X1 smartphone" in home.text
        admin = _admin_login(url.rstrip("/"), "admin", admin_password)
        assert admin.status_code == 200
        assert "Site administration" in admin.text

        stack_env = dict(line.split("=", 1) for line in (run_dir / "stack.env").read_text().splitlines())
        broker = Celery(broker=stack_env["REDIS_URL"].rsplit("/", 1)[0] + "/1")
        replies: list[dict] = []
        deadline = time.monotonic() + 60
        while not replies and time.monotonic() < deadline:
            replies = broker.control.ping(timeout=1.0) or []
        assert any(name.startswith("worker@") for reply in replies for name in reply), replies
        output.wait_for(r"beat: Starting", timeout=30)
        output.wait_for(r"Sending due task reconcile-sales", timeout=30)

        stack = psutil.Process(make.pid).children(recursive=True)
        names = " ".join(" ".join(p.cmdline()) for p in stack)
        for program in ("redis-server", "postgres", "granian", "uvicorn", "celery"):
            assert program in names, program
    finally:
        os.killpg(make.pid, signal.SIGINT)
        try:
            make.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(make.pid, signal.SIGKILL)
            raise

    # GNU make re-raises the SIGINT it got once its child finished, as shells expect of Ctrl-C.
    assert make.returncode in (0, -signal.SIGINT), "\n".join(output.lines[-40:])
    time.sleep(0.5)
    left = [process for process in stack if process.is_running() and process.status() != psutil.STATUS_ZOMBIE]
    assert left == [], [" ".join(process.cmdline()) for process in left]
    for port in (web_port, ws_port):
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
    assert "[make run] stopped." in output.lines
