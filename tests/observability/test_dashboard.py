"""The Grafana dashboard imports: the structure Grafana needs, the provisioned datasource,
every query valid PromQL (promtool parses it) and naming only metrics a real ``/metrics``
exposes (scraped from the live server, not a hard-coded list)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from sales.models import Admission
from tests.factories import auth, make_sale, make_shoppers

from .scraping import MetricsServer

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "flash-sale.json"
PROVISIONING = DEPLOY / "grafana" / "provisioning"
GRID_COLUMNS = 24

# What Grafana substitutes before a query reaches Prometheus.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$sale": ".*"}
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target, with Grafana's variables substituted."""
    found = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            found.append((f"panel {panel['id']} ({panel['title']}) {target['refId']}", expr))
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers left once strings, label
    matchers, ranges and grouping clauses are removed, that are not function calls."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?", expr):
        name, call = match.groups()
        if call is None and name.lower() not in PROMQL_WORDS:
            names.add(name)
    return names


def test_metric_names_are_found_in_expressions() -> None:
    # The extractor itself: a test of the test, so an empty result cannot pass silently.
    expr = 'sum by (status) (rate(flash_sale_requests_total{sale=~".*", status="ok"}[1m])) / on(le) up and bool x_y'
    assert metric_names(expr) == {"flash_sale_requests_total", "up", "x_y"}
    assert metric_names("histogram_quantile(0.99, sum by (le) (rate(a_bucket[5m]))) > 0.1") == {"a_bucket"}


def test_the_dashboard_has_what_grafana_needs_to_import_it(dashboard: dict[str, Any]) -> None:
    assert isinstance(dashboard["title"], str) and dashboard["title"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dashboard["uid"])
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    assert "id" not in dashboard or dashboard["id"] is None  # Grafana assigns it on import
    assert isinstance(dashboard["panels"], list) and dashboard["panels"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and all(isinstance(pid, int) for pid in ids)
    occupied: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        assert panel["type"] in {"timeseries", "stat", "gauge", "bargauge", "table"}, panel["title"]
        assert panel["title"]
        grid = panel["gridPos"]
        assert all(isinstance(grid[key], int) for key in ("h", "w", "x", "y")), panel["title"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= GRID_COLUMNS, panel["title"]
        cells = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & occupied, f"{panel['title']} overlaps another panel"
        occupied |= cells
        assert panel["targets"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        assert all(target["expr"].strip() for target in panel["targets"]), panel["title"]
    for variable in dashboard["templating"]["list"]:
        assert variable["name"] and variable["type"] in {"query", "custom", "interval", "datasource"}


def test_every_panel_and_variable_uses_the_provisioned_datasource(dashboard: dict[str, Any]) -> None:
    provisioned = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    (datasource,) = provisioned["datasources"]
    assert datasource["type"] == "prometheus"
    expected = {"type": "prometheus", "uid": datasource["uid"]}
    for panel in dashboard["panels"]:
        assert panel["datasource"] == expected, panel["title"]
        assert all(target["datasource"] == expected for target in panel["targets"]), panel["title"]
    assert all(variable["datasource"] == expected for variable in dashboard["templating"]["list"])


def test_the_dashboard_provider_loads_the_directory_compose_mounts_it_in() -> None:
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "flash-sale.yml").read_text())["providers"][0]
    compose = yaml.safe_load((DEPLOY.parent / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/flash-sale.json:{provider['options']['path']}/flash-sale.json:ro" in mounts
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in mounts


def test_every_query_is_valid_promql(dashboard: dict[str, Any], tmp_path: Path) -> None:
    # promtool parses recording rules: one rule per panel query proves each one parses.
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: install Debian's prometheus package (.ci/run does)"
    queries = _queries(dashboard)
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"dashboard:query_{n}", "expr": expr} for n, (_, expr) in enumerate(queries)],
            }
        ]
    }
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout


def test_the_panels_the_issue_asks_for_are_there(dashboard: dict[str, Any]) -> None:
    exprs = " ".join(expr for _, expr in _queries(dashboard))
    for needed in (
        "flash_sale_stock_remaining",
        "sum by (status) (rate(flash_sale_requests_total",
        'status="success"',
        "histogram_quantile(0.5, sum by (le) (rate(flash_sale_processing_duration_seconds_bucket",
        "histogram_quantile(0.99, sum by (le) (rate(flash_sale_processing_duration_seconds_bucket",
        "flash_sale_order_backlog",
        "flash_sale_invariant_violations_total",
        "flash_sale_ws_connections",
        "flash_sale_queue_waiting",
        "flash_sale_queue_abandoned",
    ):
        assert needed in exprs, needed


@pytest.mark.django_db(transaction=True)
def test_every_query_names_a_metric_the_live_server_exposes(
    dashboard: dict[str, Any], metrics_server: MetricsServer
) -> None:
    # Given a live server that has answered a purchase and a page, and a queue-mode sale (so
    # labelled series exist)
    sale = make_sale(stock=2)
    make_sale(stock=2, admission=Admission.QUEUE, serving_rate=1)
    (_, token), *_ = make_shoppers(1)
    purchase = httpx.post(f"{metrics_server.url}/api/sales/{sale.pk}/purchase/", json={}, headers=auth(token))
    assert purchase.status_code == 201
    assert httpx.get(f"{metrics_server.url}/api/sales/").status_code == 200
    for _ in range(2):  # A sale's page reads the sale through the cache: a miss, then a hit.
        assert httpx.get(f"{metrics_server.url}/api/sales/{sale.pk}/").status_code == 200

    # When Prometheus would scrape it
    exposed = metrics_server.scrape().sample_names()

    # Then every metric any panel or variable selects is among the exposed samples
    wanted = {name: where for where, expr in _queries(dashboard) for name in metric_names(expr)}
    for variable in dashboard["templating"]["list"]:
        match = re.fullmatch(r"label_values\((\w+),\s*\w+\)", variable["definition"])
        assert match, variable["definition"]
        wanted[match.group(1)] = f"variable {variable['name']}"
    assert len(wanted) >= 10
    missing = {name: where for name, where in wanted.items() if name not in exposed}
    assert not missing, missing
