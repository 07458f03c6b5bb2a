"""The process's Redis clients and the Lua scripts they run.

One connection pool per process and logical database, created on first use (after the server
forked its workers; redis-py also resets a pool it finds in a forked child).
"""

from __future__ import annotations

import functools
from pathlib import Path

import redis
import redis.asyncio as aioredis
from django.conf import settings
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.retry import Retry

RedisUnavailable = (redis.ConnectionError, redis.TimeoutError)
"""The failures that mean "Redis cannot answer now" (503, retry), not a bug."""


@functools.cache
def inventory_redis() -> redis.Redis:
    """Sale keys (stock, buyers, order streams): ``REDIS_URL``."""
    return redis.Redis.from_url(
        settings.REDIS_URL,
        decode_responses=True,
        socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
        socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT,
        max_connections=settings.REDIS_MAX_CONNECTIONS,
        health_check_interval=30,
        # One immediate retry replaces a pooled connection Redis closed (a restart); more,
        # with backoff, would only delay the 503 a shopper should get at once.
        retry=Retry(NoBackoff(), retries=1),
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


def lua_script(path: Path) -> Script:
    """A Lua file as redis-py's ``Script``: called by SHA, its source sent once per server
    (again after NOSCRIPT: a restart, a failover or ``SCRIPT FLUSH``), never with each call.
    It works on a client, a pipeline or a cluster client, passed as ``client=`` per call.

    The source is handed over as bytes, so the script needs no client of its own to compute
    its SHA: one script object serves every client of the process, whichever server it
    points at.
    """
    return Script(None, path.read_bytes())  # type: ignore[arg-type]
