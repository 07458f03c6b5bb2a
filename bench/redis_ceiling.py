"""Scenario 6, the Redis ceiling: how many times a second Redis itself runs ``purchase.lua``,
with nothing in front of it; and scenario 7's memory per 100,000 buyers.

``redis-benchmark`` (Debian's redis-tools) runs the script by SHA from 50 clients with a random
user, order id and challenge per call, as the winning path does. Where it is not installed, a
Python client pipelining the same call from two processes stands in, and the result says so
(that client, not Redis, may then be the limit).
"""

from __future__ import annotations

import csv
import io
import multiprocessing
import shutil
import time
import uuid
from dataclasses import dataclass, field

import redis

from sales import inventory, keys
from sales.inventory import PURCHASE_SCRIPT

from .loadgen import measured_run

REFERENCE_SCRIPT = (
    "local left = tonumber(redis.call('GET', KEYS[1]) or '0') "
    "if left <= 0 then return 0 end "
    "redis.call('DECR', KEYS[1]) redis.call('HSET', KEYS[2], ARGV[1], '1') return 1"
)
"""The check-decrement-record script the first probe measured (docs/benchmark.md), for comparison."""


@dataclass
class CeilingResult:
    method: str
    script: str
    clients: int
    requests: int
    rps: float
    latency_ms: dict[str, float] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    client_cpu_share: float = 0.0
    note: str = ""


def purchase_call(sale_id: int, *, user: str, order_id: str, nonce: str) -> tuple[list[str], list[str]]:
    """The winning path's call (a challenge to spend), built by ``sales.inventory.purchase_call``
    like every purchase, with ``user`` and ``nonce`` as text so redis-benchmark's
    ``__rand_int__`` can stand in."""
    call = inventory.purchase_call(
        sale_id=sale_id, user_id=user, order_id=order_id, challenge_nonce=nonce, challenge_ttl_seconds=1800
    )
    return list(call.keys), [str(arg) for arg in call.args]


def _statuses(client: redis.Redis, sale_id: int, *, requests: int, buyers_before: int) -> dict[str, int]:
    """What the runs answered, as far as Redis shows it (the script no longer counts its
    answers; the web processes do): wins are new buyers, the rest said no."""
    won = int(client.hlen(keys.buyers_key(sale_id))) - buyers_before
    return {"SUCCESS": won, "not SUCCESS": requests - won}


def redis_benchmark_binary() -> str | None:
    return shutil.which("redis-benchmark")


CEILING_VARIANTS = {
    "winning": "purchase.lua",
    "sold_out": "purchase.lua, sold-out answer",
    "reference": "check-decrement-record script (reference)",
    "empty": "empty script (EVALSHA alone)",
}
"""What redis-benchmark runs: the winning call (the ceiling), and for where the time goes, the
same script answering SOLD_OUT, the reference script and an empty one. They run with
``appendfsync everysec`` (the script's own cost); the winning call runs once more with
``appendfsync always``, as make run, the tests and compose set Redis (what durability of every
acknowledged win costs: docs/reliability.md)."""


def ceiling_with_redis_benchmark(
    *, host: str, port: int, sale_id: int, requests: int, clients: int = 50, variant: str = "winning", note: str = ""
) -> CeilingResult:
    """Run one variant from ``clients`` connections. ``sold_out`` needs a sale of one unit,
    which it sells first. ``note`` is added to the row's label (how Redis was set up)."""
    client = redis.Redis(host=host, port=port, decode_responses=True)
    label = CEILING_VARIANTS[variant] + (f", {note}" if note else "")
    buyers_before = int(client.hlen(keys.buyers_key(sale_id)))
    if variant == "reference":
        sha = client.script_load(REFERENCE_SCRIPT)
        command = ["EVALSHA", sha, "2", keys.stock_key(sale_id), keys.buyers_key(sale_id), "__rand_int__"]
    elif variant == "empty":
        command = ["EVALSHA", client.script_load("return 1"), "0"]
    else:
        client.script_load(PURCHASE_SCRIPT.script)
        if variant == "sold_out":
            script_keys, args = purchase_call(sale_id, user="0", order_id=str(uuid.uuid4()), nonce="sell-out")
            PURCHASE_SCRIPT(script_keys, args, client=client)
        script_keys, args = purchase_call(sale_id, user="__rand_int__", order_id="o-__rand_int__", nonce="__rand_int__")
        command = ["EVALSHA", PURCHASE_SCRIPT.sha, str(len(script_keys)), *script_keys, *args]
    binary = redis_benchmark_binary()
    assert binary is not None
    argv = [binary, "-h", host, "-p", str(port), "-c", str(clients), "-n", str(requests), "-r", "100000000", "--csv"]
    run = measured_run([*argv, *command], timeout=300)
    if run.returncode != 0:
        raise RuntimeError(f"redis-benchmark failed: {run.stderr[-1000:]}")
    rows = list(csv.DictReader(io.StringIO(run.stdout)))
    if not rows:
        raise RuntimeError(f"redis-benchmark printed nothing usable: {run.stdout[-1000:]}")
    row = rows[-1]
    stats = _statuses(client, sale_id, requests=requests, buyers_before=buyers_before)
    client.close()
    return CeilingResult(
        method="redis-benchmark",
        script=label,
        clients=clients,
        requests=requests,
        rps=float(row["rps"]),
        latency_ms={
            "p50": float(row["p50_latency_ms"]),
            "p95": float(row["p95_latency_ms"]),
            "p99": float(row["p99_latency_ms"]),
            "max": float(row["max_latency_ms"]),
        },
        statuses=stats,
        client_cpu_share=round(run.cpu_s / run.wall_s, 2),
    )


def _pipelined_worker(job: tuple[str, int, int, int, int]) -> int:
    url, sale_id, first, count, batch = job
    client = redis.Redis.from_url(url, decode_responses=True)
    done = 0
    while done < count:
        size = min(batch, count - done)
        with client.pipeline(transaction=False) as pipe:
            for n in range(first + done, first + done + size):
                script_keys, args = purchase_call(sale_id, user=str(n), order_id=str(uuid.uuid4()), nonce=f"n{n}")
                pipe.evalsha(PURCHASE_SCRIPT.sha, len(script_keys), *script_keys, *args)
            pipe.execute()
        done += size
    client.close()
    return done


def purchases_pipelined(
    *, url: str, sale_id: int, first_user: int, count: int, processes: int = 2, batch: int = 64
) -> float:
    """Run the purchase script ``count`` times for users ``first_user ...`` from ``processes``
    pipelining clients. Returns the wall time."""
    client = redis.Redis.from_url(url)
    client.script_load(PURCHASE_SCRIPT.script)
    client.close()
    share = -(-count // processes)
    jobs = [
        (url, sale_id, first_user + index * share, min(share, count - index * share), batch)
        for index in range(processes)
        if count - index * share > 0
    ]
    started = time.monotonic()
    with multiprocessing.get_context("fork").Pool(len(jobs)) as pool:
        pool.map(_pipelined_worker, jobs)
    return time.monotonic() - started


def ceiling_with_python(*, url: str, sale_id: int, requests: int) -> CeilingResult:
    client = redis.Redis.from_url(url, decode_responses=True)
    buyers_before = int(client.hlen(keys.buyers_key(sale_id)))
    wall = purchases_pipelined(url=url, sale_id=sale_id, first_user=1, count=requests)
    stats = _statuses(client, sale_id, requests=requests, buyers_before=buyers_before)
    client.close()
    return CeilingResult(
        method="python-pipelined",
        script="purchase.lua",
        clients=2,
        requests=requests,
        rps=requests / wall,
        statuses=stats,
        note="redis-benchmark not installed (Debian: redis-tools): two Python processes pipelining 64 calls "
        "each stood in; they share the CPU with Redis, so this is a lower bound of the ceiling.",
    )


@dataclass
class MemoryResult:
    buyers: int
    used_memory_delta_bytes: int
    per_100k_buyers_mib: float
    breakdown_per_100k_mib: dict[str, float]
    note: str


def memory_per_buyers(*, url: str, sale_id: int, buyers: int) -> MemoryResult:
    """Redis memory a sale's buyers take: ``buyers`` wins through the purchase script (each
    spending a challenge), measured as ``used_memory`` growth, scaled to 100,000 buyers.
    (Per-user windows are counted in the web processes, not in Redis.)"""
    client = redis.Redis.from_url(url, decode_responses=True)
    before = int(client.info("memory")["used_memory"])
    purchases_pipelined(url=url, sale_id=sale_id, first_user=1, count=buyers)
    after = int(client.info("memory")["used_memory"])
    scale = 100_000 / buyers
    mib = 1024 * 1024
    buyers_hash = int(client.memory_usage(keys.buyers_key(sale_id), samples=0) or 0)
    stream = int(client.memory_usage(keys.orders_stream_key(sale_id), samples=0) or 0)
    rest = max(0, after - before - buyers_hash - stream)
    client.close()
    return MemoryResult(
        buyers=buyers,
        used_memory_delta_bytes=after - before,
        per_100k_buyers_mib=round((after - before) * scale / mib, 1),
        breakdown_per_100k_mib={
            "buyers_hash": round(buyers_hash * scale / mib, 1),
            "orders_stream": round(stream * scale / mib, 1),
            "spent_challenges": round(rest * scale / mib, 1),
        },
        note="Spent challenges live for the challenge TTL (60 s by default); the buyers hash and the order "
        "stream stay until the sale is reset.",
    )
