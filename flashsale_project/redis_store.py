"""The process's Redis clients and the Lua scripts they run.

One connection pool per process and logical database, created on first use (after the server
forked its workers; redis-py also resets a pool it finds in a forked child).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError
from redis.retry import Retry


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


class LuaScript:
    """A Lua file run by SHA. The source is sent once per server (again after NOSCRIPT:
    a restart, a failover or ``SCRIPT FLUSH``), never with each call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.source = path.read_text(encoding="utf-8")
        self.sha = hashlib.sha1(self.source.encode("utf-8")).hexdigest()

    def __call__(self, client: redis.Redis, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            client.script_load(self.source)
            return client.evalsha(self.sha, len(keys), *keys, *args)

    def __repr__(self) -> str:
        return f"LuaScript({self.path.name}, sha={self.sha[:12]})"
