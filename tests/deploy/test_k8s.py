"""deploy/k8s/: written from the tables compose is held to (operations/manifests.py), and each
resource valid against the Kubernetes schemas that the kubernetes-validate package ships
(offline; no cluster, no kustomize or kubectl here: docs/scale-out.md says what that leaves)."""

from __future__ import annotations

import io
import json
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from django.core.management import call_command

from devstack.deployment import PROCESSES, container_command, probe_command
from operations.capacity import DEFAULTS, MANIFEST_DEMAND, POD_SIZES, capacity_plan, replicas_for
from operations.manifests import CONFIG, K8S_DIR, SECRETS, manifest_files

ROOT = Path(__file__).resolve().parents[2]
BASE = K8S_DIR / "base"
KUBERNETES = "1.37.0"


def documents(path: Path) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))
    return dict(pairs)


def base_resources() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    return [document for name in kustomization["resources"] for document in documents(BASE / name)]


def generated(kind: str, name: str, data: dict[str, str]) -> dict[str, Any]:
    """What kustomize's generator makes of an env file (its name suffix aside)."""
    field = "data" if kind == "ConfigMap" else "stringData"
    return {"apiVersion": "v1", "kind": kind, "metadata": {"name": name}, field: data}


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in base_resources() if doc["kind"] == kind}


def test_the_manifests_are_the_ones_operations_manifests_writes() -> None:
    files = manifest_files()
    for relative, text in files.items():
        assert (K8S_DIR / relative).read_text() == text, f"{relative}: run python -m operations.manifests"
    on_disk = {path.relative_to(K8S_DIR) for path in K8S_DIR.rglob("*") if path.is_file()} - {Path("base/secrets.env")}
    assert on_disk == set(files)


def test_every_resource_is_valid_against_the_kubernetes_schemas() -> None:
    resources = [
        *base_resources(),
        generated("ConfigMap", CONFIG, env_file(BASE / "config.env")),
        generated("Secret", SECRETS, env_file(BASE / "secrets.env.example")),
    ]
    kinds = sorted({doc["kind"] for doc in resources})

    for resource in resources:
        kubernetes_validate.validate(resource, KUBERNETES, strict=True)
    assert kinds == [
        "ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Ingress", "Job", "Namespace",
        "PodDisruptionBudget", "Secret", "Service",
    ]  # fmt: skip


def test_a_resource_the_schemas_refuse_fails_the_validation() -> None:
    deployment = by_kind("Deployment")["web"]
    broken = {**deployment, "spec": {**deployment["spec"], "replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES, strict=True)


def test_the_redis_cluster_overlay_merges_the_cluster_nodes_into_the_config() -> None:
    overlay = yaml.safe_load((K8S_DIR / "overlays" / "redis-cluster" / "kustomization.yaml").read_text())
    [merge] = overlay["configMapGenerator"]
    merged = env_file(BASE / "config.env") | dict(literal.split("=", 1) for literal in merge["literals"])

    kubernetes_validate.validate(generated("ConfigMap", CONFIG, merged), KUBERNETES, strict=True)
    assert overlay["resources"] == ["../../base"]
    assert (merge["name"], merge["behavior"]) == (CONFIG, "merge")
    assert merged["REDIS_CLUSTER_URLS"].count("redis://") == 6
    assert env_file(BASE / "config.env")["REDIS_CLUSTER_URLS"] == ""


@pytest.mark.parametrize("name", list(PROCESSES))
def test_each_deployment_runs_the_procfile_line_probed_from_the_one_table_at_the_capacity_models_size(
    name: str,
) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    [container] = by_kind("Deployment")[name]["spec"]["template"]["spec"]["containers"]
    process = PROCESSES[name]

    assert container["command"] == container_command(name)
    assert container["image"] == f"flashsale:{version}"
    assert container["envFrom"] == [{"configMapRef": {"name": CONFIG}}, {"secretRef": {"name": SECRETS}}]
    assert container["resources"]["requests"] == {"cpu": POD_SIZES[name].cpu, "memory": POD_SIZES[name].memory}
    if process.http_probes:
        assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": process.port}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": process.port}
    else:
        assert container["readinessProbe"]["exec"]["command"] == probe_command("ready", name)


def test_the_autoscalers_and_budgets_follow_the_capacity_plan() -> None:
    pods = replicas_for(capacity_plan(MANIFEST_DEMAND, DEFAULTS), MANIFEST_DEMAND)
    autoscalers = by_kind("HorizontalPodAutoscaler")
    budgets = by_kind("PodDisruptionBudget")

    assert set(autoscalers) == {"web", "ws"}
    for name, autoscaler in autoscalers.items():
        assert (autoscaler["spec"]["minReplicas"], autoscaler["spec"]["maxReplicas"]) == (
            pods.minimum[name],
            pods.maximum[name],
        )
        target = autoscaler["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"]
        assert target == round(MANIFEST_DEMAND.headroom * 100)
    assert set(budgets) == {"web", "ws", "worker", "tcp"}  # beat is one pod: nothing to keep up
    assert by_kind("Deployment")["beat"]["spec"]["strategy"] == {"type": "Recreate"}
    # The command prints the same counts for the same demand.
    out = io.StringIO()
    call_command(
        "flashsale", "capacity", "--users", str(MANIFEST_DEMAND.users), "--stock", str(MANIFEST_DEMAND.stock),
        "--replicas", "--results", str(ROOT / "no-such-results"), "--json", stdout=out,
    )  # fmt: skip
    assert json.loads(out.getvalue())["replicas"]["maximum"] == pods.maximum


def test_the_ingress_ends_tls_and_sends_the_socket_to_ws() -> None:
    ingress = by_kind("Ingress")["flashsale"]
    [tls] = ingress["spec"]["tls"]
    [rule] = ingress["spec"]["rules"]
    routes = {path["path"]: path["backend"]["service"]["name"] for path in rule["http"]["paths"]}

    assert tls["secretName"] == "flashsale-tls" and tls["hosts"] == [rule["host"]]
    assert routes == {"/ws/": "ws", "/": "web"}
    assert by_kind("Job")["migrate"]["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "python", "manage.py", "migrate", "--noinput",
    ]  # fmt: skip
    assert by_kind("Service")["tcp"]["spec"]["externalTrafficPolicy"] == "Local"


def test_the_config_names_only_documented_variables_and_the_secrets_stay_out_of_the_repository() -> None:
    docs = (ROOT / "docs" / "configuration.md").read_text()
    for name in [*env_file(BASE / "config.env"), *env_file(BASE / "secrets.env.example")]:
        assert f"`{name}`" in docs, name
    assert set(env_file(BASE / "secrets.env.example").values()) == {""}
    assert "deploy/k8s/base/secrets.env" in (ROOT / ".gitignore").read_text().split()
