"""Past one machine (issue 15), measured: scenario 10, two sales on two masters of a Redis
Cluster against one sale on one master (scenario 6's method); what ``WAIT`` would cost on
the win path; how fast one worker process drains won orders into PostgreSQL. (Scenario 11,
the stampede through HAProxy, is in ``scenarios.py``: it drives the web stack.)

Every server here is started on free loopback ports and stopped before the function returns.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
from django.conf import settings
from django.test import override_settings

from core.redis_store import inventory_redis
from devstack.localservers import LocalRedis, LocalRedisCluster
from orders.drain import sale_orders_drain
from sales import inventory, keys
from sales.inventory import PURCHASE_SCRIPT

from . import data
from .cpu import CpuMeter
from .redis_ceiling import ceiling_with_redis_benchmark, purchase_call, redis_benchmark_binary

TWO_MASTERS_TARGET = 1.7
BIG = 1_000_000_000


def _load_average() -> float:
    return round(os.getloadavg()[0], 2)


@contextmanager
def _sale_data_on(cluster: LocalRedisCluster) -> Iterator[None]:
    """This process's inventory client on ``cluster`` for the block."""
    with override_settings(REDIS_CLUSTER_URLS=cluster.urls):
        inventory_redis.cache_clear()
        try:
            yield
        finally:
            inventory_redis.cache_clear()
    inventory_redis.cache_clear()


def _cores(spent: dict[str, float]) -> str:
    masters = spent.get("master_a", 0.0) + spent.get("master_b", 0.0)
    rest = [spent.get(name, 0.0) for name in ("redis_benchmark", "other", "idle")]
    return "/".join(f"{value:.2f}" for value in [masters, *rest])


def _meta(sale_id: int) -> inventory.SaleMeta:
    return inventory.SaleMeta(
        sale_id=sale_id,
        product_id=1,
        total=BIG,
        starts_at_ms=0,
        ends_at_ms=2**50,
        price="1.00",
        per_user_limit=1,
        pow_difficulty=0,
        bucket_capacity=BIG,
        bucket_refill_per_second=BIG,
    )


def _sales_on_masters(cluster: LocalRedisCluster, count: int) -> list[tuple[int, LocalRedis]]:
    """``count`` sale ids whose hash tags fall on ``count`` different masters, loaded."""
    chosen: list[tuple[int, LocalRedis]] = []
    sale_id = 900_000
    while len(chosen) < count:
        sale_id += 1
        master = cluster.master_of(keys.stock_key(sale_id))
        if all(master is not other for _, other in chosen):
            inventory.sale_load(_meta(sale_id))
            chosen.append((sale_id, master))
    return chosen


def two_masters(*, work_dir: Path, requests: int, rounds: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Scenario 10: redis-benchmark (50 clients, the winning call, as scenario 6) against one
    sale on one master; then against two sales on two masters at once. ``rounds`` of each,
    alternating; the medians are compared."""
    if redis_benchmark_binary() is None:
        return {"skipped": "redis-benchmark not installed (Debian: redis-tools)"}
    cluster = LocalRedisCluster(work_dir / "cluster", masters=3).start()
    try:
        with _sale_data_on(cluster):
            (first, first_master), (second, second_master) = _sales_on_masters(cluster, 2)
        alone: list[float] = []
        together: list[float] = []
        loads: list[float] = []
        cores: list[dict[str, dict[str, float]]] = []
        assert first_master.process is not None and second_master.process is not None
        meter = CpuMeter({"master_a": first_master.process.pid, "master_b": second_master.process.pid})

        def run(sale_id: int, master: LocalRedis, into: list[float], clients_cpu: list[float]) -> None:
            result = ceiling_with_redis_benchmark(
                host="127.0.0.1", port=master.port, sale_id=sale_id, requests=requests, variant="winning"
            )
            into.append(result.rps)
            clients_cpu.append(result.client_cpu_share)

        def measured(jobs: list[tuple[int, LocalRedis]]) -> tuple[list[float], dict[str, float]]:
            rps: list[float] = []
            clients_cpu: list[float] = []
            threads = [threading.Thread(target=run, args=(*job, rps, clients_cpu)) for job in jobs]
            before, began = meter.snapshot(), time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            spent = CpuMeter.spent(before, meter.snapshot(), wall_s=time.perf_counter() - began, loadgen_s=0.0)
            spent["redis_benchmark"] = round(sum(clients_cpu), 2)
            spent["other"] = round(max(0.0, spent["other"] - spent["redis_benchmark"]), 2)
            spent.pop("loadgen", None)
            return rps, spent

        for round_number in range(rounds):
            loads.append(_load_average())
            one, one_cores = measured([(first, first_master)])
            alone.append(one[0])
            pair, pair_cores = measured([(first, first_master), (second, second_master)])
            together.append(sum(pair))
            cores.append({"one": one_cores, "two": pair_cores})
            log(
                f"  round {round_number + 1}: one sale on one master {one[0]:,.0f} runs/s; two sales on two "
                f"masters {sum(pair):,.0f} runs/s ({' + '.join(f'{rps:,.0f}' for rps in pair)}); cores busy "
                f"(masters/redis-benchmark/other/idle): {_cores(one_cores)} vs {_cores(pair_cores)}"
            )
        one_median, two_median = statistics.median(alone), statistics.median(together)
        ratio = two_median / one_median if one_median else 0.0
        return {
            "method": "redis-benchmark, 50 clients each, purchase.lua's winning call (scenario 6), "
            f"{requests:,} calls per run; {rounds} rounds, medians",
            "masters": 3,
            "sales": {str(first): first_master.port, str(second): second_master.port},
            "one_sale_one_master_rps": [round(value) for value in alone],
            "two_sales_two_masters_rps": [round(value) for value in together],
            "one_median_rps": round(one_median),
            "two_median_rps": round(two_median),
            "ratio": round(ratio, 2),
            "target": TWO_MASTERS_TARGET,
            "met": ratio >= TWO_MASTERS_TARGET,
            "load_average_at_rounds": loads,
            "cores_busy_at_rounds": cores,
            "cpus": os.cpu_count(),
        }
    finally:
        cluster.stop()


def _latencies(client: redis.Redis, sale_id: int, *, calls: int, wait_replicas: int, first_user: int) -> list[float]:
    seconds = []
    for user in range(first_user, first_user + calls):
        script_keys, args = purchase_call(sale_id, user=str(user), order_id=str(uuid.uuid4()), nonce=f"w{user}")
        started = time.perf_counter()
        if wait_replicas:
            with client.pipeline(transaction=False) as pipe:
                pipe.evalsha(PURCHASE_SCRIPT.sha, len(script_keys), *script_keys, *args)
                pipe.execute_command("WAIT", wait_replicas, 1000)
                _, acknowledged = pipe.execute()
            if int(acknowledged) < wait_replicas:
                raise RuntimeError("WAIT timed out: the replica did not acknowledge")
        else:
            client.evalsha(PURCHASE_SCRIPT.sha, len(script_keys), *script_keys, *args)
        seconds.append(time.perf_counter() - started)
    return seconds


def _throughput(port: int, sale_id: int, *, threads: int, calls: int, wait_replicas: int, first_user: int) -> float:
    def work(offset: int) -> None:
        with redis.Redis(host="127.0.0.1", port=port, decode_responses=True) as client:
            _latencies(client, sale_id, calls=calls, wait_replicas=wait_replicas, first_user=first_user + offset)

    workers = [threading.Thread(target=work, args=(index * calls,)) for index in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return threads * calls / (time.perf_counter() - started)


def wait_cost(*, work_dir: Path, calls: int, log: Callable[[str], None]) -> dict[str, Any]:
    """What ``WAIT 1`` after the purchase script (the win acknowledged only once a replica
    has it) costs: latency of one call at a time, and throughput from 16 threads, on a master
    with one replica; a Python client on the same two cores, so a lower bound of the
    throughput either way (the comparison is the point)."""
    cluster = LocalRedisCluster(work_dir / "wait-cluster", masters=1, replicas=1).start()
    try:
        with _sale_data_on(cluster):
            [(sale_id, master)] = _sales_on_masters(cluster, 1)
        with redis.Redis(host="127.0.0.1", port=master.port, decode_responses=True) as client:
            client.script_load(PURCHASE_SCRIPT.script)
            plain = _latencies(client, sale_id, calls=calls, wait_replicas=0, first_user=1)
            waited = _latencies(client, sale_id, calls=calls, wait_replicas=1, first_user=calls + 1)
        plain_rps = _throughput(master.port, sale_id, threads=16, calls=calls // 4, wait_replicas=0, first_user=10**7)
        waited_rps = _throughput(master.port, sale_id, threads=16, calls=calls // 4, wait_replicas=1, first_user=10**8)
    finally:
        cluster.stop()

    def quantiles(values: list[float]) -> dict[str, float]:
        ordered = sorted(values)
        return {
            "p50_ms": round(ordered[len(ordered) // 2] * 1000, 3),
            "p99_ms": round(ordered[int(len(ordered) * 0.99)] * 1000, 3),
        }

    result: dict[str, Any] = {
        "method": f"Python client on the master's port, {calls} calls one at a time, then 16 threads; "
        "a master with one replica on the same machine (loopback replication)",
        "without_wait": {**quantiles(plain), "rps_16_threads": round(plain_rps)},
        "with_wait_1": {**quantiles(waited), "rps_16_threads": round(waited_rps)},
        "load_average": _load_average(),
    }
    log(
        f"  WAIT 1 on the win path: p50 {result['without_wait']['p50_ms']} -> {result['with_wait_1']['p50_ms']} ms, "
        f"{plain_rps:,.0f} -> {waited_rps:,.0f} calls/s (16 threads)"
    )
    return result


def drain_rate(*, pool: data.ShopperPool, rows: int, log: Callable[[str], None]) -> dict[str, Any]:
    """One process running the worker's drain (``sale_orders_drain``, as the Celery task does)
    over ``rows`` won orders waiting in a sale's stream: rows per second into PostgreSQL."""
    sale = data.sale_open(stock=BIG, pow_difficulty=0)
    shoppers = pool.ensure(rows)
    client = inventory_redis()
    client.script_load(PURCHASE_SCRIPT.script)
    for start in range(0, rows, 500):
        with client.pipeline(transaction=False) as pipe:
            for shopper in shoppers[start : start + 500]:
                call = inventory.purchase_call(sale_id=sale.pk, user_id=shopper.user_id, order_id=str(uuid.uuid4()))
                pipe.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
            pipe.execute()
    started = time.perf_counter()
    result = sale_orders_drain(sale_id=sale.pk, consumer="bench-drain")
    seconds = time.perf_counter() - started
    moved = result.delivered + result.claimed
    rate = moved / seconds if seconds else 0.0
    log(f"  drain: {moved:,} won orders into PostgreSQL in {seconds:.1f} s by one process: {rate:,.0f} rows/s")
    return {
        "rows": moved,
        "seconds": round(seconds, 2),
        "rows_per_s": round(rate),
        "batch_size": settings.FLASHSALE_DRAIN_BATCH_SIZE,
        "load_average": _load_average(),
    }
