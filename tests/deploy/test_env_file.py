"""The compose stack's configuration: ``.env.example`` is docs/configuration.md's table of the
``.env`` and nothing else, every variable the compose file fills is in it, and every one it
requires is marked required there and left empty or filled in as the table says."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
_LINE = re.compile(r"^([A-Z][A-Z0-9_]*)=(.*)$")
_FILLED = re.compile(r"\$\{([A-Z][A-Z0-9_]*)(:[?-])?")


def env_example() -> dict[str, str]:
    """``.env.example``'s assignments, as compose reads them."""
    values: dict[str, str] = {}
    for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines():
        found = _LINE.match(line)
        if found:
            assert found[1] not in values, f"{found[1]} is set twice in .env.example"
            values[found[1]] = found[2]
    return values


def documented() -> dict[str, tuple[str, bool]]:
    """docs/configuration.md's ``.env`` table: variable -> (its value in .env.example, required)."""
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    section = text.split("## The compose stack's `.env`", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, tuple[str, bool]] = {}
    for name, value, required in re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \| (.+?) \| (yes|no) \|", section, re.M):
        rows[name] = ("" if value == "empty" else value.strip("`"), required == "yes")
    return rows


def compose_variables() -> dict[str, bool]:
    """Every variable docker-compose.yml fills: name -> whether it is required (``:?``)."""
    found: dict[str, bool] = {}
    for name, kind in _FILLED.findall((ROOT / "docker-compose.yml").read_text(encoding="utf-8")):
        found[name] = found.get(name, False) or kind == ":?"
    return found


def test_env_example_is_the_documented_table_line_for_line() -> None:
    table = documented()

    assert len(table) > 20  # the reader found the table
    assert env_example() == {name: value for name, (value, _) in table.items()}


def test_every_variable_compose_fills_is_documented_and_its_requirement_agrees() -> None:
    table = documented()
    filled = compose_variables()

    assert sorted(set(filled) - set(table)) == []
    for name, required in filled.items():
        if required:
            assert table[name][1], f"{name}: compose requires it, the table says optional"


def test_no_secret_has_a_value_in_env_example() -> None:
    values = env_example()
    for name in (
        "SECRET_KEY",
        "POSTGRES_PASSWORD",
        "METRICS_BEARER_TOKEN",
        "GRAFANA_ADMIN_PASSWORD",
        "LOG_SIGNING_KEYS",
    ):
        assert values[name] == "", name
        assert compose_variables()[name], f"{name} must be required by compose"
    compose = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    assert not re.search(r"PASSWORD[A-Z_]*:-", compose), "a password with a default"


def test_the_settings_variables_of_env_example_are_the_settings_tables() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    settings_table = set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", text.split("## The compose stack's", 1)[0], re.M))
    compose_only = {name for name in compose_variables() if name not in settings_table}
    # What compose alone reads (ports, files, the network, the other images' passwords) and
    # what devstack/alerting.py reads; everything else in .env is a setting of the tables above.
    assert compose_only == {
        "POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "HTTP_PORT", "HTTPS_PORT", "TCP_DOOR_PORT",
        "TLS_CERT_FILE", "TLS_KEY_FILE", "FLASHSALE_SUBNET", "ALERT_WEBHOOK_URL", "ALERT_EMAIL_TO",
    }  # fmt: skip
    for name in set(env_example()) - compose_only:
        assert name in settings_table, f"{name} is in .env.example but no table above says what reads it"


def test_compose_config_is_valid_yaml_with_every_required_variable_named() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert compose["x-app"]["env_file"] == [{"path": ".env", "required": True}]
