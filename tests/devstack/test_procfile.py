"""The stack's command lines are written once (devstack/procfile.py) and everything runs them:
``make run``, the tests, the benchmark, and the containers through ``python -m devstack.proc``."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from devstack.procfile import NAMES, Shape, command

ROOT = Path(__file__).resolve().parents[2]
# Where a server's command line could be spelled by hand: code, images, compose, Makefile.
SPELLED_IN = ("*.py", "Dockerfile", "docker-compose.yml", "Makefile", ".ci/run")


_SHAPE_VARIABLES = {
    "LISTEN_HOST", "WEB_PORT", "STATIC_ROOT", "TCP_PORT", "TCP_TRUST_USER_ID", "TCP_METRICS_PORT",
    "WEB_HEADER_TIMEOUT_MS",
}  # fmt: skip


def _print(name: str, **environ: str) -> list[str]:
    env = {key: value for key, value in os.environ.items() if key not in _SHAPE_VARIABLES}
    result = subprocess.run(
        [sys.executable, "-m", "devstack.proc", name, "--print"],
        cwd=ROOT, env={**env, **environ}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return shlex.split(result.stdout)


def test_the_shipped_shape_is_the_one_the_benchmark_chose() -> None:
    line = command("web", Shape())
    assert line[line.index("--workers") + 1] == "2"
    assert line[line.index("--blocking-threads") + 1] == "8"
    assert line[line.index("--backpressure") + 1] == "2048"
    assert line[-1] == "flashsale_project.wsgi:application"


def test_the_listening_backlog_is_granians_default_unless_a_shape_asks_for_one() -> None:
    # The benchmark's million (bench/million.py) asks for one per connection it opens at once.
    assert "--backlog" not in command("web", Shape())
    line = command("web", Shape(web_backlog=10_000))
    assert line[line.index("--backlog") + 1] == "10000"
    assert line[-1] == "flashsale_project.wsgi:application"


def test_a_header_block_has_a_few_seconds_and_a_container_may_change_them() -> None:
    # granian's own default is 30 s: a half-sent header block held that long (issue 21).
    line = command("web", Shape())
    assert line[line.index("--http1-header-read-timeout") + 1] == "5000"
    printed = _print("web", WEB_HEADER_TIMEOUT_MS="2500")
    assert printed[printed.index("--http1-header-read-timeout") + 1] == "2500"


def test_the_container_entry_point_runs_the_procfile_line_with_the_shape_from_its_environment() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["python", "-m", "devstack.proc", "web"]' in dockerfile
    environ = {"LISTEN_HOST": "0.0.0.0", "STATIC_ROOT": "/app/staticfiles", "WEB_PORT": "8000"}

    printed = _print("web", **environ)

    expected = command("web", Shape(host="0.0.0.0", static_root=Path("/app/staticfiles")))
    assert printed == expected
    assert printed[printed.index("--static-path-mount") + 1] == "/app/staticfiles"
    assert printed[printed.index("--host") + 1] == "0.0.0.0"


@pytest.mark.parametrize("name", NAMES)
def test_every_compose_process_runs_its_procfile_line(name: str) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    service = " ".join(compose["services"][name]["command"])
    assert service.endswith(f"python -m devstack.proc {name}")


def test_a_server_command_line_is_written_nowhere_but_the_procfile() -> None:
    # What only a server's command line holds: the app as granian and uvicorn take it, granian's
    # interface option, Celery's worker and beat sub-commands after the app.
    markers = (
        "wsgi:application",
        "asgi:application",
        "--interface",
        "-A flashsale_project worker",
        "-A flashsale_project beat",
        '"flashsale_project", "worker"',
        '"flashsale_project", "beat"',
    )
    found = []
    for pattern in SPELLED_IN:
        for path in ROOT.glob(f"**/{pattern}") if "/" not in pattern else [ROOT / pattern]:
            relative = path.relative_to(ROOT)
            if relative.parts[0] in {".venv", ".run", "artifacts", "staticfiles"} or not path.is_file():
                continue
            if relative == Path("devstack/procfile.py") or relative.parts[:2] == ("tests", "devstack"):
                continue
            text = path.read_text(errors="replace")
            found += [f"{relative}: {marker}" for marker in markers if marker in text]
    assert found == []


def test_the_tcp_door_runs_manage_py_tcpserver_in_the_shape_of_its_environment() -> None:
    printed = _print("tcp", LISTEN_HOST="0.0.0.0", TCP_PORT="9002")

    assert printed[1:3] == [str(ROOT / "manage.py"), "tcpserver"]
    assert printed[printed.index("--host") + 1] == "0.0.0.0"
    assert printed[printed.index("--port") + 1] == "9002"
    assert "--trust-user-id" not in printed and "--metrics-port" not in printed
    assert "--trust-user-id" in _print("tcp", TCP_TRUST_USER_ID="true")
    with_metrics = _print("tcp", TCP_METRICS_PORT="9102")
    assert with_metrics[with_metrics.index("--metrics-port") + 1] == "9102"


def test_an_unknown_process_is_refused_with_the_names() -> None:
    with pytest.raises(ValueError, match="the processes are web, ws, worker, beat, tcp"):
        command("flower", Shape())
