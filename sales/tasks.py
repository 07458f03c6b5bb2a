from __future__ import annotations

from celery import shared_task
from django.db import DatabaseError
from redis.exceptions import RedisError

from .warming import sales_warm_upcoming


@shared_task(autoretry_for=(RedisError, DatabaseError), retry_backoff=True, max_retries=3)
def warm_upcoming_sales() -> list[int]:
    """Beat: load every sale starting within the lead time into Redis and the cache, and
    publish the ones whose window changed."""
    return [result.sale_id for result in sales_warm_upcoming()]
