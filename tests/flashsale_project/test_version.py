"""One version for the project, and a repository that stands on its own.

The package (``pyproject.toml``), the OpenAPI schema's ``info.version``, the image tag in
``docker-compose.yml`` and the newest release in ``CHANGELOG.md`` say the same version; and no
tracked file points at a design document outside the repository, which a clone does not have.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from django.test import Client

ROOT = Path(__file__).resolve().parents[2]
RELEASE_HEADING = re.compile(r"^## \[(?P<version>\d+\.\d+\.\d+)\] - \d{4}-\d{2}-\d{2}$", re.MULTILINE)
# Spelled in two parts so that this file does not mention what it looks for.
OUTSIDE_REFERENCES = ("../" + "shared", "DESIGN" + ".md")


def package_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as pyproject:
        return str(tomllib.load(pyproject)["project"]["version"])


def newest_changelog_version() -> str:
    """The version of the first dated release heading (``## [0.2.0] - 2026-12-01``), the
    ``[Unreleased]`` section above it aside."""
    found = RELEASE_HEADING.search((ROOT / "CHANGELOG.md").read_text(encoding="utf-8"))
    assert found is not None, "CHANGELOG.md has no release heading such as '## [0.2.0] - 2026-12-01'"
    return found["version"]


def image_tags() -> set[str]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    return {
        service["image"].rpartition(":")[2]
        for service in compose["services"].values()
        if service.get("build") == "."  # the project's own image, not postgres, redis, haproxy...
    }


def test_the_version_is_a_0_x_semantic_version_named_by_the_changelog() -> None:
    version = package_version()
    assert re.fullmatch(r"0\.\d+\.\d+", version), version
    assert newest_changelog_version() == version


@pytest.mark.django_db
def test_the_openapi_schema_carries_the_package_version(client: Client) -> None:
    schema = client.get("/api/schema/").json()
    assert schema["info"]["version"] == package_version()


def test_every_service_built_from_the_dockerfile_is_tagged_with_the_package_version() -> None:
    assert image_tags() == {package_version()}


def tracked_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached"], cwd=ROOT, check=True, capture_output=True
    ).stdout.decode()
    return [ROOT / name for name in listed.split("\0") if name and (ROOT / name).is_file()]


def test_no_tracked_file_refers_to_a_design_document_outside_the_repository() -> None:
    citing = []
    for path in tracked_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # An image or other binary file.
        for number, line in enumerate(text.splitlines(), start=1):
            if any(reference in line for reference in OUTSIDE_REFERENCES):
                citing.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert citing == [], "cite docs/design.md instead:\n" + "\n".join(citing)
