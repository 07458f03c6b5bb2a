"""The process's Redis clients and the Lua scripts they run.

Sale data (stock, buyers, order streams, the events) lives on ``REDIS_URL``'s server, or on a
Redis Cluster when ``REDIS_CLUSTER_URLS`` names its nodes (docs/scale-out.md). Every key of a
sale carries the sale's hash tag, so each script call and each transaction touches one slot,
and ``inventory_redis()`` works the same on both. Celery's broker, the cache and Channels stay
on the plain ``REDIS_URL`` server in either case.

One connection pool per process and logical database (per node on a cluster), created on
first use (after the server forked its workers; redis-py also resets a pool it finds in a
forked child).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeAlias
from urllib.parse import urlsplit

import redis
import redis.asyncio as aioredis
from django.conf import settings
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.client import Pipeline
from redis.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.commands.core import Script
from redis.exceptions import (
    ClusterDownError,
    RedisClusterException,
    RedisError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.retry import Retry

InventoryRedis: TypeAlias = redis.Redis | RedisCluster
"""The sale-data client: one server's, or a cluster's (the same commands, routed by key)."""

RedisUnavailable = (redis.ConnectionError, redis.TimeoutError, ClusterDownError, SlotNotCoveredError, TryAgainError)
"""The failures that mean "Redis cannot answer now" (503, retry), not a bug. On a cluster
that includes a slot whose master is failing over (CLUSTERDOWN, TRYAGAIN, a slot no node
serves yet)."""


def inventory_clustered() -> bool:
    """True when sale data lives on a Redis Cluster (``REDIS_CLUSTER_URLS`` is set)."""
    return bool(settings.REDIS_CLUSTER_URLS)


@functools.cache
def inventory_redis() -> InventoryRedis:
    """The sale-data client: ``REDIS_URL``'s server, or the cluster of ``REDIS_CLUSTER_URLS``.

    A cluster client reads the slot map when it is made; a cluster that no node of the list
    answers for raises ``redis.ConnectionError`` (a 503), and the next call tries again."""
    if not inventory_clustered():
        return redis.Redis.from_url(settings.REDIS_URL, **_client_options())
    try:
        return _cluster_client()
    except RedisClusterException as error:
        raise redis.ConnectionError(f"no node of the Redis Cluster answered: {error}") from error


def _client_options() -> dict[str, Any]:
    """What every sale-data client is made with, one server's or a cluster's. One immediate
    retry replaces a pooled connection Redis closed (a restart) or, on a cluster, re-reads
    the slot map once (a failover that already happened); more, with backoff, would only
    delay the 503 a shopper should get at once."""
    return {
        "decode_responses": True,
        "socket_timeout": settings.REDIS_SOCKET_TIMEOUT,
        "socket_connect_timeout": settings.REDIS_SOCKET_TIMEOUT,
        "max_connections": settings.REDIS_MAX_CONNECTIONS,
        "health_check_interval": 30,
        "retry": Retry(NoBackoff(), retries=1),
    }


def _cluster_client() -> RedisCluster:
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in cluster_addresses()],
        **_client_options(),
        # A client made while one master fails over must still start: the sales on the
        # other masters go on, and the failing slots answer 503 until they are served again.
        require_full_coverage=False,
    )


@contextlib.contextmanager
def sale_transaction(client: InventoryRedis) -> Iterator[Pipeline | ClusterPipeline]:
    """A MULTI/EXEC pipeline on keys of one slot (one sale's). On a cluster, a failed
    transaction re-reads the slot map before its error goes up: redis-py's cluster
    transactions do not (they refresh only after several failures of one pipeline), so
    after a failover every later transaction would keep going to the dead master."""
    with client.pipeline(transaction=True) as pipe:
        try:
            yield pipe
        except RedisUnavailable:
            if isinstance(client, RedisCluster):
                with contextlib.suppress(RedisError, RedisClusterException):
                    client.nodes_manager.initialize()
            raise


def cluster_addresses() -> list[tuple[str, int]]:
    """``REDIS_CLUSTER_URLS`` as (host, port) pairs."""
    addresses = []
    for url in settings.REDIS_CLUSTER_URLS:
        parts = urlsplit(url if "://" in url else f"redis://{url}")
        addresses.append((parts.hostname or "127.0.0.1", parts.port or 6379))
    return addresses


def subscription_urls() -> list[str]:
    """Where a pub/sub subscription to the sale events may connect, in order of preference.

    One server: ``REDIS_URL``. A cluster: every node listed (masters and replicas alike): a
    plain ``PUBLISH`` on any node reaches the subscribers of every node, so one connection
    to any live node hears every sale; a subscriber that loses its node moves to the next.
    """
    if not inventory_clustered():
        return [settings.REDIS_URL]
    return [f"redis://{host}:{port}/0" for host, port in cluster_addresses()]


def subscription_client(attempt: int = 0) -> redis.Redis:
    """A plain client for a pub/sub subscription: the inventory client on one server; on a
    cluster, a client of one node, the next node of ``subscription_urls()`` on each attempt
    (a subscriber whose node died moves on)."""
    client = inventory_redis()
    if isinstance(client, redis.Redis):
        return client
    urls = subscription_urls()
    return _node_client(urls[attempt % len(urls)])


@functools.cache
def _node_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
        socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT,
        health_check_interval=30,
    )


def inventory_redis_async() -> aioredis.Redis:
    """An asyncio client of ``REDIS_URL`` for an asyncio server (the TCP door), which makes one
    per event loop and closes it. Its pool holds at most ``REDIS_MAX_CONNECTIONS``; a call
    beyond that waits up to ``REDIS_SOCKET_TIMEOUT`` for a free connection, then fails like
    any unreachable Redis (503 / UNAVAILABLE), never queues without bound."""
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.REDIS_URL,
        max_connections=settings.REDIS_MAX_CONNECTIONS,
        timeout=settings.REDIS_SOCKET_TIMEOUT,
        decode_responses=True,
        socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
        socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT,
        health_check_interval=30,
        retry=AsyncRetry(NoBackoff(), retries=1),
    )
    return aioredis.Redis.from_pool(pool)


CLOCK_LUA = Path(__file__).resolve().parent / "lua" / "clock.lua"
"""``now_ms_of(TIME)``: the one place a script turns the Redis clock into milliseconds."""


def lua_script(path: Path, *, preludes: tuple[Path, ...] = ()) -> Script:
    """A Lua file as redis-py's ``Script``: called by SHA, its source sent once per server
    (again after NOSCRIPT: a restart, a failover or ``SCRIPT FLUSH``), never with each call.
    It works on a client, a pipeline or a cluster client, passed as ``client=`` per call.
    A script that calls ``now_ms_of`` gets ``lua/clock.lua`` put before it, then the
    ``preludes`` it names (shared functions), in order.

    The source is handed over as bytes, so the script needs no client of its own to compute
    its SHA: one script object serves every client of the process, whichever server it
    points at.
    """
    source = b"".join(prelude.read_bytes() for prelude in preludes) + path.read_bytes()
    if b"now_ms_of(" in source:
        source = CLOCK_LUA.read_bytes() + source
    return Script(None, source)  # type: ignore[arg-type]
