"""Reading the requirements files the way pip reads the parts of them this project uses."""

from __future__ import annotations

from pathlib import Path

from packaging.requirements import Requirement


def requirement_lines(path: Path) -> list[Requirement]:
    """The requirements a file names, following ``-r``."""
    found: list[Requirement] = []
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-r "):
            found += requirement_lines(path.parent / line[3:].strip())
        elif line.startswith("-"):
            raise AssertionError(f"{path.name}: only requirements and -r are read here, not {line!r}")
        else:
            found.append(Requirement(line))
    return found
