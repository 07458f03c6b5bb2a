"""A rehearsal against ``make run``, started by the test as a newcomer starts it (``python -m
devstack``: its own Redis, PostgreSQL, web, ws, worker, beat and tcp): ``manage.py flashsale
rehearse --against`` its URL with the demo admin's login passes, and fails (exit code and
report) when its targets are set to fail; the admin's action rehearses too, its crowd run by
the stack's worker, its report on the sale's page."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.localservers import free_port
from tests.devstack.console import Console, newcomer_env, still_running

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def scratch() -> Iterator[Path]:
    """Outside pytest's tmp_path: PostgreSQL (another user when we are root) must reach it."""
    path = Path(tempfile.mkdtemp(prefix="flashsale-rehearsal-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def rehearse(base: str, sale_id: int, password: str, *targets: str) -> tuple[int, dict[str, Any], str]:
    """``manage.py flashsale rehearse`` from this checkout against ``base``, as the demo admin."""
    done = subprocess.run(
        [sys.executable, "manage.py", "flashsale", "rehearse", str(sale_id), "--shoppers", "100", "--attempts", "3",
         "--against", base, "--operator", "admin", "--json", *targets],
        cwd=ROOT, env=newcomer_env(Path(tempfile.gettempdir()), FLASHSALE_OPERATOR_PASSWORD=password),
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    return done.returncode, json.loads(done.stdout or "{}"), done.stderr


@contextlib.contextmanager
def admin_session(base: str, password: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, timeout=60) as client:
        yield _logged_in(client, base, password)


def _logged_in(client: httpx.Client, base: str, password: str) -> httpx.Client:
    form = client.get("/admin/login/?next=/admin/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    assert token is not None
    answer = client.post(
        "/admin/login/?next=/admin/",
        data={"csrfmiddlewaretoken": token.group(1), "username": "admin", "password": password, "next": "/admin/"},
        headers={"Referer": f"{base}/admin/login/"},
    )
    assert answer.status_code == 302, answer.text[:500]
    return client


def test_a_rehearsal_against_make_run_passes_and_one_whose_targets_are_set_to_fail_fails(scratch: Path) -> None:
    web_port, ws_port, tcp_port = free_port(), free_port(), free_port()
    console = Console(
        [sys.executable, "-m", "devstack", "--web-port", str(web_port), "--ws-port", str(ws_port),
         "--tcp-port", str(tcp_port), "--sale-starts-in", "7200"],
        cwd=ROOT, env=newcomer_env(scratch / "run"),
    )  # fmt: skip
    base = f"http://127.0.0.1:{web_port}"
    try:
        # Given make run, its demo sale two hours ahead, and the demo admin's login from its banner
        console.wait_for(r"\[make run\] ready\.", timeout=600)
        password = console.wait_for(r"\[make run\]\s+logins\s+admin / (\S+),", timeout=10).group(1)
        sale_id = int(console.wait_for(r"\[make run\]\s+demo sale\s+http://\S+/sales/(\d+)/", timeout=10).group(1))

        # When it is rehearsed with 100 shoppers against its URL, with targets it can meet
        code, report, said = rehearse(base, sale_id, password, "--target-p99-ms", "60000")

        # Then the rehearsal passes: every invariant holds, the demo sale's 10 units sold on the shadow
        assert code == 0, said + console.text()
        assert report["passed"] is True, report
        assert report["invariants"] == {"I1": True, "I2": True, "I3": True, "I4": True}
        assert report["answers"]["SUCCESS"] == 10 and report["sold_out"] is True
        assert report["p99_ms"] is not None and report["errors"] == 0
        assert report["admission"]["pow_difficulty"] == 12  # the demo sale's

        # When the same rehearsal's targets are set to fail
        code, failed, said = rehearse(base, sale_id, password, "--target-p99-ms", "0.001", "--target-sell-out-s", "0")

        # Then it fails: a non-zero exit and a report that says which targets were missed
        assert code != 0
        assert f"Rehearsal {failed['rehearsal_id']} failed: p99_ms" in said
        assert failed["passed"] is False
        assert failed["invariants"] == {"I1": True, "I2": True, "I3": True, "I4": True}
        assert {v["target"]: v["met"] for v in failed["verdicts"]} == {
            "p99_ms": False,
            "sell_out_seconds": False,
            "zero_errors": True,
        }

        # And the admin's action rehearses too: its crowd in the stack's worker, its report on the sale's page
        with admin_session(base, password) as admin:
            csrf = {"csrfmiddlewaretoken": admin.cookies["csrftoken"]}
            action = {**csrf, "action": "rehearse", "_selected_action": [str(sale_id)]}
            picked = admin.post("/admin/sales/flashsale/", data=action)
            assert picked.status_code == 302
            assert picked.headers["location"] == f"/admin/sales/flashsale/{sale_id}/rehearse/"
            started = admin.post(
                picked.headers["location"],
                data={**csrf, "shoppers": "60", "attempts": "3", "target_p99_ms": "60000", "zero_errors": "on"},
            )
            assert started.status_code == 302, started.text[:2000]
            deadline = time.monotonic() + 600
            while True:
                page = admin.get(f"/admin/sales/flashsale/{sale_id}/change/").text
                newest = re.search(r'<li data-rehearsal="(\d+)"><a href="[^"]+">Rehearsal \d+</a>: (\w+)', page)
                assert newest is not None, page[:3000]
                if newest.group(2) != "Running" or time.monotonic() > deadline:
                    break
                time.sleep(1)
            assert newest.group(2) == "Passed", console.text()
            shown = admin.get(f"/admin/sales/salerehearsal/{newest.group(1)}/change/").text
            assert "PASSED" in shown and "I1 (stock + buyers = total) holds" in shown
            as_json = admin.get(f"/api/admin/rehearsals/{newest.group(1)}/").json()
            assert as_json["report"]["passed"] is True and as_json["report"]["answers"]["SUCCESS"] == 10
            # And the demo sale itself sold nothing
            assert httpx.get(f"{base}/api/sales/{sale_id}/", timeout=10).json()["remaining_stock"] == 10
    finally:
        code = console.interrupt()
    assert code == 0, console.text()
    time.sleep(0.5)
    assert still_running(list(console.seen.values())) == []
