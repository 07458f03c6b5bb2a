"""docs/configuration.md lists exactly the variables the settings read."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ROOT / "flashsale_project" / "settings"
TABLE = ROOT / "docs" / "configuration.md"


def variables_read_by_settings() -> set[str]:
    """Every ``env.<kind>("NAME", ...)`` call in the settings package."""
    names: set[str] = set()
    for module in SETTINGS.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "env"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                names.add(node.args[0].value)
    return names


def variables_in_the_table() -> list[str]:
    text = TABLE.read_text(encoding="utf-8")
    section = text.split("## Read by the settings", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", section, flags=re.MULTILINE)


def test_every_variable_the_settings_read_is_in_the_table_and_nothing_else() -> None:
    read = variables_read_by_settings()
    listed = variables_in_the_table()

    assert len(read) > 40  # the reader found the settings' calls, not an empty set
    assert sorted(read - set(listed)) == [], "read by the settings, missing from docs/configuration.md"
    assert sorted(set(listed) - read) == [], "in docs/configuration.md, read by no setting"
    assert len(listed) == len(set(listed)), "a variable is listed twice"
