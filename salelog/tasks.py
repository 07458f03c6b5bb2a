"""Celery tasks of the transparency log: load by id, call one service, return."""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import DatabaseError
from django.utils import timezone
from redis.exceptions import RedisError

from .builder import sale_log_build
from .selectors import sales_to_build

logger = logging.getLogger(__name__)

# Redis or PostgreSQL away for a moment: the next tick tries again (the pass is idempotent).
PASSING_FAILURES = (RedisError, DatabaseError, OSError)


@shared_task
def build_sale_logs() -> dict[str, int]:
    """Beat, every ``FLASHSALE_LOG_INTERVAL_SECONDS`` (expiring after one tick): move the new
    entries of every watched sale's log into PostgreSQL and sign a checkpoint over them;
    freeze the logs of sales that ended. Two ticks at once never interleave on a sale (each
    pass holds the sale's log row); one sale failing leaves the others to build. Returns
    sale id -> entries appended."""
    now = timezone.now()
    summary: dict[str, int] = {}
    for sale in sales_to_build(now=now):
        try:
            result = sale_log_build(sale_id=sale.sale_id, ends_at=sale.ends_at, now=now)
        except PASSING_FAILURES as error:
            logger.warning("sale %s: the log builder will try again: %r", sale.sale_id, error)
            continue
        if result.appended:
            summary[str(sale.sale_id)] = result.appended
    return summary
