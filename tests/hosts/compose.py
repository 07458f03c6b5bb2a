"""What the compose stack runs, read from docker-compose.yml and the Dockerfile: each
service's command and its environment with ``.env``'s values filled in as compose fills
them, so a host of the multi-host test runs what a container would, from the same files."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
_VARIABLE = re.compile(r"\$\{([A-Z][A-Z0-9_]*)(?:(:[?-])([^}]*))?\}")
_ENV_LINE = re.compile(r"^ENV\s+(.*?)$", re.M)


@cache
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    return loaded


def service_command(name: str) -> list[str]:
    return [str(part) for part in compose()["services"][name]["command"]]


def fill(text: str, dotenv: Mapping[str, str]) -> str:
    """``${NAME}``, ``${NAME:-default}`` and ``${NAME:?message}`` as compose fills them from
    ``.env`` (an empty value counts as unset for ``:-`` and ``:?``)."""

    def value(match: re.Match[str]) -> str:
        name, kind, rest = match.group(1), match.group(2), match.group(3) or ""
        found = dotenv.get(name, "")
        if kind == ":?" and not found:
            raise ValueError(f"required variable {name} is missing a value: {rest}")
        if kind == ":-" and not found:
            return rest
        return found

    return _VARIABLE.sub(value, text)


def image_environment() -> dict[str, str]:
    """The Dockerfile's ``ENV`` instructions (``NAME=value`` pairs, continued lines joined)."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    found: dict[str, str] = {}
    for line in _ENV_LINE.findall(text):
        for pair in line.split():
            name, _, value = pair.partition("=")
            found[name] = value
    return found


def service_environment(name: str, dotenv: Mapping[str, str]) -> dict[str, str]:
    """What compose gives service ``name``'s container: the image's environment, then every
    line of ``.env`` (its ``env_file``), then its ``environment`` with ``.env`` filled in."""
    service = compose()["services"][name]
    env = image_environment() if "build" in service else {}
    if service.get("env_file"):
        env.update(dotenv)
    for key, raw in (service.get("environment") or {}).items():
        env[key] = fill(str(raw), dotenv)
    return env
