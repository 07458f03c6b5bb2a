"""Alertmanager's configuration, as devstack/alerting.py writes it from the compose stack's
.env, checked by Alertmanager's own amtool (Debian's prometheus-alertmanager; make deps)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from devstack.alerting import AlertingConfigError, alertmanager_config
from tests.deploy.test_env_file import env_example

ROOT = Path(__file__).resolve().parents[2]
FILLED = {
    "ALERT_WEBHOOK_URL": "http://127.0.0.1:9095/alerts?team=shop&x=1",
    "ALERT_EMAIL_TO": "oncall@example.com",
    "EMAIL_HOST": "smtp.example.com",
    "EMAIL_HOST_USER": "alerts",
    "EMAIL_HOST_PASSWORD": 'a "quoted" $secret',
}


@pytest.fixture(scope="module")
def amtool() -> str:
    path = shutil.which("amtool")
    assert path, "amtool not found: make deps installs Debian's prometheus-alertmanager"
    return path


def test_the_configuration_from_env_example_with_its_blanks_filled_passes_amtool(amtool: str, tmp_path: Path) -> None:
    environ = {**env_example(), **FILLED}
    config = tmp_path / "alertmanager.yml"
    config.write_text(alertmanager_config(environ))

    checked = subprocess.run([amtool, "check-config", str(config)], capture_output=True, text=True, check=False)

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout
    written = yaml.safe_load(config.read_text())
    [receiver] = written["receivers"]
    assert written["route"]["receiver"] == receiver["name"]
    assert receiver["webhook_configs"][0]["url"] == FILLED["ALERT_WEBHOOK_URL"]
    assert receiver["email_configs"][0]["to"] == "oncall@example.com"
    assert written["global"]["smtp_smarthost"] == "smtp.example.com:587"
    assert written["global"]["smtp_auth_password"] == FILLED["EMAIL_HOST_PASSWORD"]
    assert written["global"]["smtp_from"] == "Flash Sale <orders@example.com>"
    assert written["global"]["smtp_require_tls"] is True


def test_a_missing_receiver_stops_it_with_the_variables_name() -> None:
    environ = {**env_example(), **FILLED, "ALERT_WEBHOOK_URL": ""}
    with pytest.raises(AlertingConfigError, match=r"Alertmanager needs ALERT_WEBHOOK_URL: set it in \.env"):
        alertmanager_config(environ)


def test_prometheus_sends_its_alerts_to_the_compose_alertmanager() -> None:
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())

    assert prometheus["alerting"]["alertmanagers"] == [{"static_configs": [{"targets": ["alertmanager:9093"]}]}]
    alertmanager = compose["services"]["alertmanager"]
    assert alertmanager["image"].startswith("prom/alertmanager:v0.")
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in alertmanager["command"]
    assert compose["services"]["alertmanager-config"]["command"][:3] == ["python", "-m", "devstack.alerting"]
    assert alertmanager["depends_on"] == {"alertmanager-config": {"condition": "service_completed_successfully"}}
