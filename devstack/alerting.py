"""``python -m devstack.alerting [--output FILE]``: Alertmanager's configuration, from
``deploy/alertmanager/alertmanager.yml`` with each ``${NAME}`` taken from the environment.

Alertmanager reads no environment itself, so the compose stack runs this first (its
``alertmanager-config`` job, on the app's image) and Alertmanager reads what it wrote. A
value is written as a quoted YAML string (JSON's, which YAML reads as is), except
``EMAIL_USE_TLS``, a boolean. Two names are made from others: ``ALERT_SMTP_SMARTHOST``
(``EMAIL_HOST:EMAIL_PORT`` unless set) and ``ALERT_EMAIL_FROM`` (``DEFAULT_FROM_EMAIL``
unless set). A name unset, or empty where a value is needed, stops it with a line naming
the variable.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent.parent / "deploy" / "alertmanager" / "alertmanager.yml"
_NAME = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
REQUIRED = ("ALERT_WEBHOOK_URL", "ALERT_EMAIL_TO", "EMAIL_HOST")
OPTIONAL = ("EMAIL_HOST_USER", "EMAIL_HOST_PASSWORD")
TRUE_WORDS = {"1", "true", "yes", "on"}


class AlertingConfigError(ValueError):
    """A variable the configuration needs is not set."""


def alerting_values(environ: Mapping[str, str]) -> dict[str, str]:
    """The template's values from ``environ``. Raises ``AlertingConfigError``."""
    missing = [name for name in REQUIRED if not (environ.get(name) or "").strip()]
    if missing:
        raise AlertingConfigError(f"Alertmanager needs {', '.join(missing)}: set it in .env (see .env.example).")
    sender = environ.get("ALERT_EMAIL_FROM") or environ.get("DEFAULT_FROM_EMAIL") or ""
    if not sender.strip():
        raise AlertingConfigError("Alertmanager needs ALERT_EMAIL_FROM or DEFAULT_FROM_EMAIL: set it in .env.")
    smarthost = (
        environ.get("ALERT_SMTP_SMARTHOST") or f"{environ['EMAIL_HOST'].strip()}:{environ.get('EMAIL_PORT') or 25}"
    )
    values = {name: environ[name].strip() for name in REQUIRED}
    values |= {name: environ.get(name) or "" for name in OPTIONAL}
    values |= {"ALERT_EMAIL_FROM": sender.strip(), "ALERT_SMTP_SMARTHOST": smarthost}
    values["EMAIL_USE_TLS"] = "true" if (environ.get("EMAIL_USE_TLS") or "").strip().lower() in TRUE_WORDS else "false"
    return values


def alertmanager_config(environ: Mapping[str, str], template: Path = TEMPLATE) -> str:
    """The configuration text. Raises ``AlertingConfigError``."""
    values = alerting_values(environ)

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise AlertingConfigError(f"{template.name} names ${{{name}}}, which devstack/alerting.py does not fill.")
        return values[name] if name == "EMAIL_USE_TLS" else json.dumps(values[name])

    return _NAME.sub(value, template.read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.alerting", description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, help="write here (default: print)")
    args = parser.parse_args(argv)
    try:
        text = alertmanager_config(os.environ)
    except AlertingConfigError as error:
        print(error, file=sys.stderr)
        return 1
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
