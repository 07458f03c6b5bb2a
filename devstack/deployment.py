"""What the containers run, written once for docker-compose.yml and the Kubernetes manifests
(``deploy/k8s/``): each process's command, port and probes.

Every container runs ``python -m devstack.proc <name>`` (the procfile's line for its shape)
and is probed with ``python -m devstack.probes <live|ready> <name>``, or, for web and ws,
over HTTP on ``LIVENESS_PATH`` and ``READINESS_PATH``. ``tests/deploy`` holds the compose
file to this table and ``devstack.manifests`` writes the manifests from it.

This module imports nothing from Django.
"""

from __future__ import annotations

from dataclasses import dataclass

from devstack.procfile import LIVENESS_PATH, NAMES, READINESS_PATH, Shape

PYTHON = "python"
"""The image's interpreter, on its PATH (the procfile's own line uses ``sys.executable``)."""


@dataclass(frozen=True)
class Process:
    name: str
    port: int | None  # where it listens in its container (None: nothing to connect to)
    http_probes: bool  # liveness and readiness are HTTP paths on ``port``
    autoscaled: bool  # shoppers' traffic: more replicas as load grows
    singleton: bool  # exactly one replica (beat: two would tick twice)


_SHAPE = Shape()
PROCESSES: dict[str, Process] = {
    "web": Process("web", _SHAPE.web_port, http_probes=True, autoscaled=True, singleton=False),
    "ws": Process("ws", _SHAPE.ws_port, http_probes=True, autoscaled=True, singleton=False),
    "worker": Process("worker", None, http_probes=False, autoscaled=False, singleton=False),
    "beat": Process("beat", None, http_probes=False, autoscaled=False, singleton=True),
    "tcp": Process("tcp", _SHAPE.tcp_port, http_probes=False, autoscaled=False, singleton=False),
}
assert tuple(PROCESSES) == NAMES


def container_command(name: str) -> list[str]:
    return [PYTHON, "-m", "devstack.proc", name]


def probe_command(kind: str, name: str) -> list[str]:
    return [PYTHON, "-m", "devstack.probes", kind, name]


def compose_healthcheck(name: str) -> list[str]:
    """Compose's healthcheck: readiness (compose has one check; HAProxy asks readiness too)."""
    return ["CMD", *probe_command("ready", name)]


def probe_path(kind: str) -> str:
    return LIVENESS_PATH if kind == "live" else READINESS_PATH


MIGRATE_COMMAND = [PYTHON, "manage.py", "migrate", "--noinput"]
IMAGE_NAME = "flashsale"
