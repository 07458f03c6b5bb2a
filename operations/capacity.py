"""The capacity model (docs/scale-out.md, "Capacity"): how many web nodes, Redis masters and
Celery workers a sale needs, from per-node figures measured by ``make bench``.

Every number of a plan carries the assumption it rests on, and every measured figure says
where it came from: the newest ``bench/results/*.json`` that has it, or the documented
default (measured once on the reference machine and written down in docs/scale-out.md).
Pure arithmetic: nothing here touches Redis or PostgreSQL.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Figure:
    value: float
    unit: str
    source: str


@dataclass(frozen=True)
class NodeFigures:
    """What one node does, each figure with its source."""

    local_answers_per_s: Figure  # a web node (granian, 2 workers, 2 cores) answering in process
    script_answers_per_s: Figure  # a web node whose every answer runs purchase.lua
    script_runs_per_s: Figure  # one Redis master running purchase.lua (redis-benchmark, 50 clients)
    drain_rows_per_s: Figure  # one Celery worker process moving won orders into PostgreSQL


DEFAULT_SOURCE = "default (docs/scale-out.md: 2 cores, server, Redis and load generator together)"
DEFAULTS = NodeFigures(
    local_answers_per_s=Figure(8_114, "answers/s", DEFAULT_SOURCE),
    script_answers_per_s=Figure(2_352, "answers/s", DEFAULT_SOURCE),
    script_runs_per_s=Figure(27_640, "runs/s", DEFAULT_SOURCE),
    drain_rows_per_s=Figure(15_312, "rows/s", DEFAULT_SOURCE),
)


def _top_rps(document: dict[str, Any], scenario: str) -> float | None:
    runs = [
        run
        for run in document.get("runs", [])
        if run.get("scenario") == scenario and run.get("load", "saturated") == "saturated" and run.get("rps")
    ]
    return max((float(run["rps"]) for run in runs), default=None)


def figures_from_results(results_dir: Path) -> NodeFigures:
    """The newest benchmark results in ``results_dir`` that carry each figure; a figure no
    result has keeps its default."""
    figures = {
        "local_answers_per_s": DEFAULTS.local_answers_per_s,
        "script_answers_per_s": DEFAULTS.script_answers_per_s,
        "script_runs_per_s": DEFAULTS.script_runs_per_s,
        "drain_rows_per_s": DEFAULTS.drain_rows_per_s,
    }
    found: set[str] = set()
    for path in sorted(results_dir.glob("*.json"), reverse=True) if results_dir.is_dir() else []:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if document.get("quick"):
            continue  # A smoke run's figures are not a node's capacity.
        load = document.get("machine", {}).get("load_average_at_start", ["?"])[0]
        source = f"measured: {path.name} (load {load} at start)"
        candidates: dict[str, tuple[float | None, str]] = {
            "local_answers_per_s": (_top_rps(document, "sold_out"), "answers/s"),
            "script_answers_per_s": (_top_rps(document, "winning"), "answers/s"),
            "script_runs_per_s": (
                next(
                    (
                        float(row["rps"])
                        for row in document.get("redis_ceiling", [])
                        if row.get("script") == "purchase.lua" and row.get("rps")
                    ),
                    None,
                ),
                "runs/s",
            ),
            "drain_rows_per_s": (document.get("drain", {}).get("rows_per_s"), "rows/s"),
        }
        for name, (value, unit) in candidates.items():
            if name not in found and value:
                figures[name] = Figure(float(value), unit, source)
                found.add(name)
        if len(found) == len(figures):
            break
    return NodeFigures(**figures)


@dataclass(frozen=True)
class Demand:
    users: int
    peak_seconds: float
    attempts_per_user: float = 1.0
    stock: int = 10
    sales: int = 1  # hot sales at the same second, each on its own hash slot
    crowd_factor: float = 2.0
    workers_per_web_node: int = 2  # granian worker processes per web node
    drain_seconds: float = 60.0  # every win in PostgreSQL within this long
    headroom: float = 0.7  # plan each node to this share of what it was measured to do


@dataclass
class Line:
    what: str
    value: float
    assumption: str


@dataclass
class Plan:
    web_nodes: int
    redis_masters: int
    redis_replicas: int
    workers: int
    lines: list[Line] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def capacity_plan(demand: Demand, figures: NodeFigures) -> Plan:
    """Size a sale (docs/scale-out.md, "Capacity", explains each step)."""
    if demand.users < 1 or demand.peak_seconds <= 0 or demand.sales < 1 or demand.stock < 1:
        raise ValueError("users, stock and sales must be at least 1 and the peak longer than 0 s")
    h = demand.headroom
    arrivals = demand.users * demand.attempts_per_user / demand.peak_seconds
    local_rate = figures.local_answers_per_s.value * h
    script_answer_rate = figures.script_answers_per_s.value * h

    # Script calls and web nodes depend on each other (each web process lets k x stock
    # attempts a second through to Redis): settle them by iterating.
    nodes = 1
    script_rate = arrivals
    for _ in range(50):
        processes = nodes * demand.workers_per_web_node
        per_sale_arrivals = arrivals / demand.sales
        per_sale_script = (
            min(per_sale_arrivals, processes * demand.crowd_factor * demand.stock)
            if demand.crowd_factor > 0
            else per_sale_arrivals
        )
        script_rate = per_sale_script * demand.sales
        needed = math.ceil((arrivals - script_rate) / local_rate + script_rate / script_answer_rate)
        if needed <= nodes:
            break
        nodes = needed
    per_sale_script = script_rate / demand.sales
    master_rate = figures.script_runs_per_s.value * h
    masters = max(1, math.ceil(script_rate / master_rate))
    wins = demand.stock * demand.sales
    worker_rate = figures.drain_rows_per_s.value * h
    workers = max(1, math.ceil(wins / (worker_rate * demand.drain_seconds)))

    plan = Plan(web_nodes=nodes, redis_masters=masters, redis_replicas=masters, workers=workers)
    plan.lines = [
        Line(
            "arrivals at the peak (requests/s)",
            arrivals,
            f"{demand.users:,} users x {demand.attempts_per_user:g} attempts in {demand.peak_seconds:g} s, "
            "spread evenly over the peak (a burst inside it needs the same per-second figure at its own rate)",
        ),
        Line(
            "purchase.lua calls reaching Redis (calls/s)",
            script_rate,
            f"stock-aware admission: at most crowd_factor {demand.crowd_factor:g} x stock {demand.stock} per web "
            f"process a second, {nodes * demand.workers_per_web_node} processes, {demand.sales} sale(s); "
            "its first second, when all the stock is left (afterwards fewer)",
        ),
        Line(
            "answers given in the process (answers/s)",
            arrivals - script_rate,
            f"sold out, crowd, windows: {figures.local_answers_per_s.value:,.0f} {figures.local_answers_per_s.unit} "
            f"per web node x headroom {h:g} ({figures.local_answers_per_s.source})",
        ),
        Line(
            "web nodes",
            nodes,
            f"local answers at {local_rate:,.0f}/s and script answers at {script_answer_rate:,.0f}/s per node "
            f"(winning path {figures.script_answers_per_s.value:,.0f} x {h:g}; "
            f"{figures.script_answers_per_s.source}); a node = 2 cores, granian with "
            f"{demand.workers_per_web_node} workers; stateless behind the load balancer",
        ),
        Line(
            "Redis masters",
            masters,
            f"purchase.lua at {figures.script_runs_per_s.value:,.0f} runs/s per master x headroom {h:g} "
            f"({figures.script_runs_per_s.source}); each sale's keys are one slot, so one sale never uses more "
            "than one master: masters add sales, not one sale's rate",
        ),
        Line(
            "Redis replicas",
            masters,
            "one per master, for failover (an acknowledged win can still be lost: docs/scale-out.md)",
        ),
        Line(
            "Celery workers (processes)",
            workers,
            f"{wins:,} wins into PostgreSQL within {demand.drain_seconds:g} s at "
            f"{figures.drain_rows_per_s.value:,.0f} {figures.drain_rows_per_s.unit} per worker x {h:g} "
            f"({figures.drain_rows_per_s.source})",
        ),
    ]
    if per_sale_script > master_rate:
        plan.warnings.append(
            f"one sale sends {per_sale_script:,.0f} calls/s to its master, more than one master runs "
            f"({master_rate:,.0f}/s with headroom): more masters do not help a single sale; lower its "
            "crowd_factor or its bucket refill so the funnel sheds more in the web processes"
        )
    return plan


# --- Kubernetes: pods and replicas from the plan (deploy/k8s/, operations/manifests.py) ------

WS_SOCKETS_PER_PROCESS = Figure(15_000, "sockets", "README: 15,000 WebSockets on one ws process, p50 78 ms")


@dataclass(frozen=True)
class PodSize:
    """What one pod of a process asks the scheduler for, and why that size."""

    cpu: str
    memory: str
    memory_limit: str
    why: str


POD_SIZES: dict[str, PodSize] = {
    "web": PodSize("2", "1Gi", "2Gi", "one web node of the model: 2 cores, granian with 2 workers x 8 threads"),
    "ws": PodSize("1", "512Mi", "1Gi", "one uvicorn process (one core); about 11 KB a socket at the measured 15,000"),
    "worker": PodSize("1", "512Mi", "1Gi", "two prefork processes waiting on PostgreSQL more than computing"),
    "beat": PodSize("100m", "128Mi", "256Mi", "a schedule: a few task messages a second"),
    "tcp": PodSize("1", "512Mi", "1Gi", "one asyncio process (one core)"),
}


@dataclass(frozen=True)
class Replicas:
    """Pods per process for a plan: ``minimum`` to run at all (two where a pod may be
    lost without an outage), ``maximum`` for the demand (the autoscalers' ceiling)."""

    minimum: dict[str, int]
    maximum: dict[str, int]
    target_cpu_percent: int


WORKER_PROCESSES_PER_POD = 2


def replicas_for(plan: Plan, demand: Demand) -> Replicas:
    """Pods for ``plan``: web as its web nodes, ws as the crowd's sockets over what one
    process holds, worker as its worker processes two a pod; beat one, tcp two. The
    autoscalers aim at the plan's headroom (``demand.headroom``) of the CPU asked for."""
    sockets = math.ceil(demand.users / WS_SOCKETS_PER_PROCESS.value)
    minimum = {"web": 2, "ws": 2, "worker": 1, "beat": 1, "tcp": 2}
    wanted = {
        "web": plan.web_nodes,
        "ws": sockets,
        "worker": math.ceil(plan.workers / WORKER_PROCESSES_PER_POD),
        "beat": 1,
        "tcp": 2,
    }
    maximum = {name: max(minimum[name], count) for name, count in wanted.items()}
    return Replicas(minimum=minimum, maximum=maximum, target_cpu_percent=round(demand.headroom * 100))


MANIFEST_DEMAND = Demand(users=200_000, peak_seconds=1.0, attempts_per_user=1.0, stock=100)
"""The demand deploy/k8s/ is written for (its replica counts and autoscaler ceilings):
``manage.py flashsale capacity --replicas`` prints the counts for any other."""
