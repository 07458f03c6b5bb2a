"""``/healthz``: can this process reach Redis and PostgreSQL? For load balancers and compose."""

from __future__ import annotations

from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from redis.exceptions import RedisError

from core.errors import Unavailable
from core.redis_store import inventory_redis


def healthz(request: HttpRequest) -> JsonResponse:
    problems = []
    try:
        inventory_redis().ping()
    except RedisError as error:
        problems.append(f"redis: {error}")
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as error:
        problems.append(f"postgresql: {error}")
    if problems:
        unavailable = Unavailable("; ".join(problems))
        return JsonResponse(unavailable.body(), status=unavailable.http_status, headers=unavailable.headers)
    return JsonResponse({"status": "ok"})
