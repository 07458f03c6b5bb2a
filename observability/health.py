"""Probes for load balancers, compose and Kubernetes.

- ``/livez``: the process serves requests. It asks nothing of Redis or PostgreSQL, so a
  dependency being away never gets a healthy process restarted.
- ``/readyz``: the process can answer a purchase: Redis, which holds the stock, answers.
  PostgreSQL is not asked: a token bearer's purchase of a warmed sale reads no SQL, so a
  web process stays in rotation while PostgreSQL is away (``flash_sale_postgresql_up`` on
  ``/metrics`` reports it instead).
- ``/healthz``: the same answer as ``/readyz``, for probes written before the split.
"""

from __future__ import annotations

from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from redis.exceptions import RedisError

from core.errors import Unavailable
from core.redis_store import inventory_redis


def livez(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    try:
        inventory_redis().ping()
    except RedisError as error:
        unavailable = Unavailable(f"redis: {error}")
        return JsonResponse(unavailable.body(), status=unavailable.http_status, headers=unavailable.headers)
    return JsonResponse({"status": "ok"})


def postgresql_answers() -> bool:
    """One ``SELECT 1`` on this thread's connection; False when PostgreSQL does not answer."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        return False
    return True
