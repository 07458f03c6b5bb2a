"""``make deps``: the suite's Debian programs, installed when missing if we may, otherwise one
clear line and a stop. A missing program is simulated by naming one that no package has."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin") or "python3"
NOWHERE = "flashsale-no-such-program:flashsale-no-such-package"


def _deps(*pairs: str, user: str | None = None, dry_run: bool = False) -> subprocess.CompletedProcess[str]:
    command = [SYSTEM_PYTHON, "-m", "devstack.deps", *pairs, *(["--dry-run"] if dry_run else [])]
    if user is not None:
        command = ["runuser", "-u", user, "--", *command]
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
    assert ci[-3:] == ["make lint", "make test", "make bench-quick"]
    assert not any("apt-get" in line for line in ci)


def test_present_programs_install_nothing() -> None:
    result = _deps("sh:dash", "python3:python3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "[make deps] present: sh, python3\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as a user without sudo")
def test_without_root_or_sudo_a_missing_program_stops_at_once_with_one_line_naming_the_package() -> None:
    nobody = pwd.getpwnam("nobody").pw_name

    result = _deps("sh:dash", NOWHERE, user=nobody)

    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "[make deps] missing flashsale-no-such-program (Debian packages: flashsale-no-such-package); install them"
        " with: sudo apt-get install -y -qq --no-install-recommends flashsale-no-such-package"
    ]


@pytest.mark.skipif(os.geteuid() != 0, reason="installs only as root")
def test_as_root_a_missing_program_is_installed_with_apt_get() -> None:
    result = _deps("sh:dash", NOWHERE, dry_run=True)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "[make deps] missing flashsale-no-such-program; installing Debian packages: flashsale-no-such-package",
        "[make deps] would run: apt-get update -qq && apt-get install -y -qq --no-install-recommends"
        " flashsale-no-such-package",
    ]
