"""``python -m operations.manifests``: the Kubernetes manifests of ``deploy/k8s/``, written
from the two tables the compose stack is held to, so nothing is written twice:
``devstack.deployment`` (each process's command, port and probes) and ``operations.capacity``
(each pod's size, and the replicas ``MANIFEST_DEMAND`` needs, with the figures' defaults).

``deploy/k8s/base`` is a kustomize base: a Deployment per process, the migrate Job, Services,
an Ingress with TLS, HorizontalPodAutoscalers for web and ws, PodDisruptionBudgets, the
ConfigMap from ``config.env`` and the Secret from ``secrets.env`` (copied from
``secrets.env.example``, never committed). ``deploy/k8s/overlays/redis-cluster`` puts sale
data on a Redis Cluster. ``tests/deploy/test_k8s.py`` holds the checked-in files equal to
these and validates each resource against the Kubernetes schemas.

Pure data and YAML: no Django, no cluster.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from devstack.deployment import IMAGE_NAME, MIGRATE_COMMAND, PROCESSES, container_command, probe_command, probe_path

from .capacity import DEFAULTS, MANIFEST_DEMAND, POD_SIZES, capacity_plan, replicas_for

K8S_DIR = Path(__file__).resolve().parent.parent / "deploy" / "k8s"
VERSION = "0.2.0"
"""The image tag: the project's version (pyproject.toml; a test holds them equal)."""
APP = "flashsale"
CONFIG = f"{APP}-config"
SECRETS = f"{APP}-secrets"
TLS_SECRET = f"{APP}-tls"
HOST = "shop.example.com"

CONFIG_ENV = {
    # The pods' settings (docs/configuration.md); the overlay and an operator's own overlay
    # change them here, not in the Deployments.
    "DJANGO_SETTINGS_MODULE": "flashsale_project.settings.production",
    "ALLOWED_HOSTS": HOST,
    "CSRF_TRUSTED_ORIGINS": f"https://{HOST}",
    "REDIS_URL": "redis://redis:6379/0",
    "REDIS_CLUSTER_URLS": "",
    # The ingress controller ends TLS and sets X-Forwarded-For / -Proto and X-Request-ID;
    # the pods believe them from the cluster's pod network only (set it to yours).
    "TRUSTED_PROXY_NETWORKS": "10.0.0.0/8",
    "BEHIND_TLS_PROXY": "true",
    "ANTIBOT_CLIENT_IP_HEADER": "X-Forwarded-For",
    "ANTIBOT_TRUSTED_PROXY_COUNT": "1",
    # The TCP door's Service keeps the client's address (externalTrafficPolicy: Local).
    "TCP_PROXY_PROTOCOL": "false",
    "EMAIL_HOST": "smtp.example.com",
    "EMAIL_PORT": "587",
    "EMAIL_USE_TLS": "true",
    "DEFAULT_FROM_EMAIL": "Flash Sale <orders@example.com>",
    "LOG_FORMAT": "json",
    "LOG_LEVEL": "INFO",
    "ACCESS_LOG": "false",
    "PROMETHEUS_MULTIPROC_DIR": "/tmp/prometheus",
    "BEAT_SCHEDULE": "/tmp/celerybeat-schedule",
}
SECRET_NAMES = ("SECRET_KEY", "DATABASE_URL", "METRICS_BEARER_TOKEN", "EMAIL_HOST_USER", "EMAIL_HOST_PASSWORD")
CLUSTER_URLS = ",".join(f"redis://redis-cluster-{n}.redis-cluster:6379" for n in range(6))


def _labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": APP, "app.kubernetes.io/component": name}


def _env_from() -> list[dict[str, Any]]:
    return [{"configMapRef": {"name": CONFIG}}, {"secretRef": {"name": SECRETS}}]


def _probe(kind: str, name: str) -> dict[str, Any]:
    process = PROCESSES[name]
    timing = {"periodSeconds": 10, "timeoutSeconds": 3, "failureThreshold": 3}
    if process.http_probes:
        assert process.port is not None
        return {"httpGet": {"path": probe_path(kind), "port": process.port}, **timing}
    slow = {"periodSeconds": 30, "timeoutSeconds": 10, "failureThreshold": 3} if name == "worker" else timing
    return {"exec": {"command": probe_command(kind, name)}, **slow}


def _container(name: str) -> dict[str, Any]:
    process, size = PROCESSES[name], POD_SIZES[name]
    container: dict[str, Any] = {
        "name": name,
        "image": f"{IMAGE_NAME}:{VERSION}",
        "command": container_command(name),
        "envFrom": _env_from(),
        "resources": {
            "requests": {"cpu": size.cpu, "memory": size.memory},
            "limits": {"memory": size.memory_limit},
        },
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "allowPrivilegeEscalation": False},
    }
    if process.port is not None:
        container["ports"] = [{"name": name, "containerPort": process.port}]
    # Liveness restarts a process that stopped serving; a worker or beat that stops is
    # restarted by its exit, so they have readiness alone.
    if process.http_probes or name == "tcp":
        container["livenessProbe"] = _probe("live", name)
    container["readinessProbe"] = _probe("ready", name)
    return container


def _deployment(name: str, replicas: int) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": _labels(name)},
        "template": {
            "metadata": {"labels": _labels(name)},
            "spec": {"containers": [_container(name)], "terminationGracePeriodSeconds": 30},
        },
    }
    if PROCESSES[name].singleton:
        # Two would tick twice: the old pod stops before the new one starts.
        spec["strategy"] = {"type": "Recreate"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": _labels(name)},
        "spec": spec,
    }


def _service(name: str, *, load_balancer: bool = False) -> dict[str, Any]:
    port = PROCESSES[name].port
    spec: dict[str, Any] = {
        "selector": _labels(name),
        "ports": [{"name": name, "port": port, "targetPort": port}],
    }
    if load_balancer:
        # The client's address reaches the pod as its peer (the door's per-address cap and
        # windows count shoppers), which a cluster-wide hop would replace with a node's.
        spec |= {"type": "LoadBalancer", "externalTrafficPolicy": "Local"}
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": _labels(name)}, "spec": spec}


def _autoscaler(name: str, minimum: int, maximum: int, target: int) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "labels": _labels(name)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": minimum,
            "maxReplicas": maximum,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}},
                }
            ],
        },
    }


def _disruption_budget(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "labels": _labels(name)},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": _labels(name)}},
    }


def _migrate_job() -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "migrate", "labels": _labels("migrate")},
        "spec": {
            # Retried while PostgreSQL is not reachable yet, like compose's migrate service.
            "backoffLimit": 10,
            "template": {
                "metadata": {"labels": _labels("migrate")},
                "spec": {
                    "restartPolicy": "OnFailure",
                    "containers": [
                        {
                            "name": "migrate",
                            "image": f"{IMAGE_NAME}:{VERSION}",
                            "command": MIGRATE_COMMAND,
                            "envFrom": _env_from(),
                            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001},
                        }
                    ],
                },
            },
        },
    }


def _ingress() -> dict[str, Any]:
    def path(prefix: str, service: str) -> dict[str, Any]:
        return {
            "path": prefix,
            "pathType": "Prefix",
            "backend": {"service": {"name": service, "port": {"number": PROCESSES[service].port}}},
        }

    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": APP,
            "labels": _labels("ingress"),
            "annotations": {
                # ingress-nginx: HTTP redirects to HTTPS and HSTS are its defaults for a TLS
                # host; an open WebSocket lives for the whole sale.
                "nginx.ingress.kubernetes.io/ssl-redirect": "true",
                "nginx.ingress.kubernetes.io/proxy-read-timeout": "7200",
                "nginx.ingress.kubernetes.io/proxy-send-timeout": "7200",
            },
        },
        "spec": {
            "ingressClassName": "nginx",
            "tls": [{"hosts": [HOST], "secretName": TLS_SECRET}],
            "rules": [{"host": HOST, "http": {"paths": [path("/ws/", "ws"), path("/", "web")]}}],
        },
    }


def _env_file(values: dict[str, str]) -> str:
    return "".join(f"{name}={value}\n" for name, value in values.items())


def _yaml(*documents: dict[str, Any]) -> str:
    return "---\n".join(yaml.safe_dump(document, sort_keys=False) for document in documents)


NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": APP}}
HEADER = "# Written by operations/manifests.py (python -m operations.manifests); edit it there.\n"


def manifest_files() -> dict[Path, str]:
    """Every file of ``deploy/k8s/`` (relative paths) and its text."""
    plan = capacity_plan(MANIFEST_DEMAND, DEFAULTS)
    pods = replicas_for(plan, MANIFEST_DEMAND)
    names = list(PROCESSES)
    base: dict[str, str] = {
        "deployments.yaml": _yaml(*(_deployment(name, pods.minimum[name]) for name in names)),
        "migrate-job.yaml": _yaml(_migrate_job()),
        "services.yaml": _yaml(_service("web"), _service("ws"), _service("tcp", load_balancer=True)),
        "ingress.yaml": _yaml(_ingress()),
        "autoscalers.yaml": _yaml(
            *(
                _autoscaler(name, pods.minimum[name], pods.maximum[name], pods.target_cpu_percent)
                for name in names
                if PROCESSES[name].autoscaled
            )
        ),
        "disruption-budgets.yaml": _yaml(
            *(_disruption_budget(name) for name in names if not PROCESSES[name].singleton)
        ),
    }
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": APP,
        "labels": [{"pairs": {"app.kubernetes.io/part-of": APP}}],
        "resources": ["namespace.yaml", *base],
        "configMapGenerator": [{"name": CONFIG, "envs": ["config.env"]}],
        "secretGenerator": [{"name": SECRETS, "envs": ["secrets.env"]}],
        "images": [{"name": IMAGE_NAME, "newTag": VERSION}],
    }
    files = {
        Path("base/kustomization.yaml"): HEADER + yaml.safe_dump(kustomization, sort_keys=False),
        Path("base/namespace.yaml"): HEADER
        + _yaml({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": APP}}),
        **{Path("base") / name: HEADER + text for name, text in base.items()},
        Path("base/config.env"): HEADER + _env_file(CONFIG_ENV),
        Path("base/secrets.env.example"): HEADER
        + "# Copy to secrets.env (never committed) and fill in every value; kustomize refuses a missing file.\n"
        + _env_file(dict.fromkeys(SECRET_NAMES, "")),
    }
    overlay = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["../../base"],
        "configMapGenerator": [
            {"name": CONFIG, "behavior": "merge", "literals": [f"REDIS_CLUSTER_URLS={CLUSTER_URLS}"]}
        ],
    }
    files[Path("overlays/redis-cluster/kustomization.yaml")] = (
        HEADER
        + (
            "# Sale data on a Redis Cluster (docs/scale-out.md): every master and replica listed; the\n"
            "# broker, cache and sessions stay on REDIS_URL's server.\n"
        )
        + yaml.safe_dump(overlay, sort_keys=False)
    )
    return files


def main() -> int:
    for relative, text in manifest_files().items():
        path = K8S_DIR / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
