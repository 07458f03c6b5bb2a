"""Celery tasks of rehearsals: load by id, call one service, return."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from celery import shared_task
from django.conf import settings

from .rehearsal import rehearsals_sweep
from .rehearsing import LocalStage, rehearsal_drive

logger = logging.getLogger(__name__)


@shared_task(soft_time_limit=15 * 60, time_limit=16 * 60)
def rehearse_sale(rehearsal_id: int, *, tcp: bool = False) -> dict[str, Any]:
    """The admin's rehearsal, set up by the web process: its crowd against the stack at
    ``FLASHSALE_REHEARSAL_URL`` (and the TCP door at ``FLASHSALE_REHEARSAL_TCP``), the stage
    through this worker's database. Not retried: a second crowd on the same shadow sale would
    measure nothing; a rehearsal that fails is aborted and cleaned up."""

    async def rehearse() -> dict[str, Any]:
        stage = LocalStage()
        begun = await stage.again(rehearsal_id)
        return await rehearsal_drive(
            stage,
            crowd_url=settings.FLASHSALE_REHEARSAL_URL,
            sale_id=int(begun["sale_id"]),
            tcp=settings.FLASHSALE_REHEARSAL_TCP if tcp else None,
            begun=begun,
            say=lambda line: logger.info("%s", line),
        )

    report = asyncio.run(rehearse())
    logger.info("rehearsal %s: %s", rehearsal_id, "passed" if report.get("passed") else "failed")
    return {"rehearsal_id": rehearsal_id, "passed": report.get("passed")}


@shared_task(ignore_result=True)
def sweep_rehearsals() -> int:
    """Beat: rehearsals whose process died are aborted and cleaned up once their lock lapses."""
    return rehearsals_sweep()
