"""``python -m devstack.probes <live|ready> <name>``: what compose's healthchecks, the image's
and the manifests' exec probes run, asked of real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.localservers import free_port
from tests.processes import ChildProcess

ROOT = Path(__file__).resolve().parents[2]


def _probe(kind: str, name: str, **env: str) -> int:
    return subprocess.run(
        [sys.executable, "-m", "devstack.probes", kind, name],
        cwd=ROOT, env={**os.environ, **env}, capture_output=True, timeout=60, check=False,
    ).returncode  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_the_probes_pass_for_a_serving_web_process_and_fail_where_nothing_listens(web_server: ChildProcess) -> None:
    port = web_server.url.rsplit(":", 1)[1]
    nothing = str(free_port())

    assert _probe("live", "web", WEB_PORT=port) == 0
    assert _probe("ready", "web", WEB_PORT=port) == 0
    assert _probe("live", "web", WEB_PORT=nothing) == 1
    assert _probe("ready", "tcp", TCP_PORT=nothing) == 1


# The names Python's shelve gives the file with dbm.gnu, dbm.ndbm and dbm.dumb (a Python built without either).
@pytest.mark.parametrize("written", ["", ".db", ".dat"])
def test_beat_is_ready_once_its_schedule_file_exists(tmp_path: Path, written: str) -> None:
    schedule = tmp_path / "celerybeat-schedule"
    assert _probe("ready", "beat", BEAT_SCHEDULE=str(schedule)) == 1
    Path(f"{schedule}{written}").write_bytes(b"")
    assert _probe("ready", "beat", BEAT_SCHEDULE=str(schedule)) == 0
