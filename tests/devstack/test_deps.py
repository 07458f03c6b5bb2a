"""``make deps``: the suite's Debian programs, installed when missing if we may, otherwise one
clear line and a stop. A missing program is simulated by naming one that no package has."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from devstack import deps

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin") or "python3"
NOWHERE = "flashsale-no-such-program:flashsale-no-such-package"


def _deps(*pairs: str) -> subprocess.CompletedProcess[str]:
    command = [SYSTEM_PYTHON, "-m", "devstack.deps", *pairs]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def test_the_makefile_installs_deps_before_the_suite_and_the_benchmarks() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target in ("test", "bench", "bench-quick"):
        prerequisites = re.search(rf"^{target}: (.*)$", makefile, re.MULTILINE)
        assert prerequisites is not None, target
        assert prerequisites.group(1).split()[0] == "deps", target
    declared = re.search(r"^DEPS \?= (.*)$", makefile, re.MULTILINE)
    assert declared is not None
    programs = {pair.split(":")[0] for pair in declared.group(1).split()}
    assert {"chromium", "promtool", "wrk", "redis-benchmark", "redis-cli", "git"} <= programs


def test_ci_runs_the_readme_commands_only() -> None:
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-2:] == ["make lint", "make test"]
    assert not any("apt-get" in line for line in ci)


def test_present_programs_install_nothing() -> None:
    result = _deps("sh:dash", "python3:python3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "[make deps] present: sh, python3\n"


def _stub_path(monkeypatch: pytest.MonkeyPatch, directory: Path, *programs: str) -> None:
    """A PATH holding only ``programs`` (executables that are found, never run), so whether
    sudo exists is the test's choice, not this machine's."""
    directory.mkdir()
    for program in programs:
        stub = directory / program
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    monkeypatch.setenv("PATH", str(directory))


def _deps_as(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str, euid: int
) -> tuple[int, list[str]]:
    """``make deps``'s decision in this process, as the user ``euid`` (whoever runs the suite)."""
    monkeypatch.setattr(deps.os, "geteuid", lambda: euid)
    code = deps.main(list(argv))
    return code, capsys.readouterr().out.splitlines()


def test_without_root_or_sudo_a_missing_program_stops_at_once_with_one_line_naming_the_package(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _stub_path(monkeypatch, tmp_path / "bin", "sh", "apt-get")

    code, lines = _deps_as(monkeypatch, capsys, "sh:dash", NOWHERE, euid=65534)

    assert code == 1
    assert lines == [
        "[make deps] missing flashsale-no-such-program (Debian packages: flashsale-no-such-package); install them"
        " with: sudo apt-get install -y -qq --no-install-recommends flashsale-no-such-package"
    ]


def test_as_root_a_missing_program_is_installed_with_apt_get(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _stub_path(monkeypatch, tmp_path / "bin", "sh", "apt-get")

    code, lines = _deps_as(monkeypatch, capsys, "sh:dash", NOWHERE, "--dry-run", euid=0)

    assert code == 0
    assert lines == [
        "[make deps] missing flashsale-no-such-program; installing Debian packages: flashsale-no-such-package",
        "[make deps] would run: apt-get update -qq && apt-get install -y -qq --no-install-recommends"
        " flashsale-no-such-package",
    ]
