"""The alert rules and the Prometheus config, checked by Prometheus's own promtool (Debian's
``prometheus`` package; ``.ci/run`` installs it). A failing promtool fails the test."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.hosts.topology import scaled_duration, scaled_rules

PROMETHEUS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
SECRET_IN_CONTAINER = "/run/secrets/metrics_token"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool not found: install Debian's prometheus package (.ci/run does)"
    return path


def _run(*command: str, cwd: Path = PROMETHEUS_DIR) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def test_the_alert_rules_are_valid(promtool: str) -> None:
    output = _run(promtool, "check", "rules", "alerts.yml")
    assert "SUCCESS: 8 rules found" in output


def test_the_alert_rule_unit_tests_pass(promtool: str) -> None:
    output = _run(promtool, "test", "rules", "alerts_test.yml")
    assert "SUCCESS" in output


def test_every_alert_has_a_unit_test_that_fires_it_and_one_that_keeps_it_quiet() -> None:
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text())
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in tests["tests"]:
        for check in case["alert_rule_test"]:
            (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    assert alerts == fired == quiet
    assert {"FlashSaleStockMismatch", "FlashSalePurchaseLatencyHigh", "FlashSaleOrderBacklogGrowing"} <= alerts
    assert {"FlashSaleInvariantI1Violated", "FlashSaleWorkersDown", "FlashSaleQueueStalled"} <= alerts


def test_the_compose_prometheus_config_is_valid_with_its_rule_files(promtool: str, tmp_path: Path) -> None:
    # The scrape token is a compose secret that exists only in the container; promtool checks
    # that the file exists, so the copy checked here points at a stand-in.
    for source in PROMETHEUS_DIR.glob("*.yml"):
        shutil.copy(source, tmp_path / source.name)
    config = tmp_path / "prometheus.yml"
    text = config.read_text()
    assert text.count(SECRET_IN_CONTAINER) == 3  # web, ws and tcp jobs
    token = tmp_path / "metrics_token"
    token.write_text("stand-in\n")
    config.write_text(text.replace(SECRET_IN_CONTAINER, str(token)))

    output = _run(promtool, "check", "config", "prometheus.yml", cwd=tmp_path)

    assert "SUCCESS: prometheus.yml is valid prometheus config file syntax" in output
    assert "SUCCESS: 8 rules found" in output  # alerts.yml was found through rule_files


def test_the_multi_host_suites_time_scaled_rules_are_valid_and_only_shorter(promtool: str, tmp_path: Path) -> None:
    written = tmp_path / "scaled-alerts.yml"
    written.write_text(scaled_rules(PROMETHEUS_DIR / "alerts.yml"), encoding="utf-8")
    output = _run(promtool, "check", "rules", str(written), cwd=tmp_path)
    assert "SUCCESS: 8 rules found" in output
    shipped = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text(encoding="utf-8"))
    scaled = yaml.safe_load(written.read_text(encoding="utf-8"))
    for group, scaled_group in zip(shipped["groups"], scaled["groups"], strict=True):
        for rule, scaled_rule in zip(group["rules"], scaled_group["rules"], strict=True):
            assert {k: v for k, v in rule.items() if k not in {"for", "expr"}} == {
                k: v for k, v in scaled_rule.items() if k not in {"for", "expr"}
            }
            if "for" in rule:
                assert scaled_rule["for"] == scaled_duration(rule["for"])
    assert scaled_duration("2m") == "30s" and scaled_duration("15m") == "225s" and scaled_duration("1h") == "900s"
    with pytest.raises(ValueError):
        scaled_duration("1m30s")
