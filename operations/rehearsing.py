"""Driving a rehearsal: the stage (the stack's side, ``operations.rehearsal``) and the crowd
(``operations.crowd``), in order, for ``manage.py flashsale rehearse`` and the admin's action.

The stage is reached one of two ways, through the same services:

- ``LocalStage``: this process's database and Redis. The command run beside the stack it
  rehearses (``make run``'s, or on a host of the deployment), and the admin's action, whose
  crowd runs in a Celery worker of the stack.
- ``ApiStage``: the stack's admin API (``/api/admin/...``) with a staff member's access
  token. ``--against URL`` from any machine that reaches the shop: the only way to rehearse
  a deployment whose database this machine cannot reach, and it needs nothing of the
  deployment but its URL and a staff login.

The crowd always comes through the stack's front doors (the REST API, or the TCP door), as
shoppers do, so a rehearsal measures what they will meet.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import httpx
from django.db import connections

from core.errors import ApplicationError
from sales.models import FlashSale

from .crowd import Crowd, Shopper, door_for, proof_solver
from .rehearsal import (
    RehearsalNotFound,
    RehearsalRefused,
    RehearsalRunning,
    rehearsal_abort,
    rehearsal_begin,
    rehearsal_finish,
    rehearsal_open,
    rehearsal_running,
    rehearsal_stage_again,
)
from .verdicts import Targets

logger = logging.getLogger(__name__)

T = TypeVar("T")

CONNECTIONS = 200
"""Requests the crowd keeps in flight at once (and connections it opens to the door)."""


class StageClient(Protocol):
    async def begin(
        self, *, sale_id: int, shoppers: int, attempts: int, stock: int | None, targets: Targets, transport: str
    ) -> dict[str, Any]: ...
    async def open(self, rehearsal_id: int) -> dict[str, Any]: ...
    async def finish(self, rehearsal_id: int, crowd: dict[str, Any]) -> dict[str, Any]: ...
    async def abort(self, rehearsal_id: int, reason: str) -> None: ...
    async def close(self) -> None: ...


def _in_thread(work: Callable[[], T]) -> Awaitable[T]:
    """``work`` in a worker thread, whose database connection is closed after it (the thread
    outlives the call, the connection must not)."""

    def run() -> T:
        try:
            return work()
        finally:
            connections.close_all()

    return asyncio.to_thread(run)


class LocalStage:
    """The stage through this process's database and Redis (the services, in a thread)."""

    def __init__(self, *, requested_by_id: int | None = None) -> None:
        self.requested_by_id = requested_by_id

    async def begin(
        self, *, sale_id: int, shoppers: int, attempts: int, stock: int | None, targets: Targets, transport: str
    ) -> dict[str, Any]:
        def begun() -> dict[str, Any]:
            sale = FlashSale.objects.select_related("product").filter(pk=sale_id).first()
            if sale is None:
                raise RehearsalNotFound(f"No sale {sale_id}.")
            stage = rehearsal_begin(
                sale=sale,
                shoppers=shoppers,
                attempts=attempts,
                stock=stock,
                targets=targets,
                transport=transport,
                requested_by_id=self.requested_by_id,
            )
            return stage.as_json()

        return await _in_thread(begun)

    async def again(self, rehearsal_id: int) -> dict[str, Any]:
        """The stage of a rehearsal another process set up."""
        return await _in_thread(lambda: rehearsal_stage_again(rehearsal=rehearsal_running(rehearsal_id)).as_json())

    async def open(self, rehearsal_id: int) -> dict[str, Any]:
        return await _in_thread(lambda: rehearsal_open(rehearsal=rehearsal_running(rehearsal_id)).as_json())

    async def finish(self, rehearsal_id: int, crowd: dict[str, Any]) -> dict[str, Any]:
        def finished() -> dict[str, Any]:
            rehearsal = rehearsal_finish(rehearsal=rehearsal_running(rehearsal_id), crowd=crowd)
            return {"id": rehearsal.pk, "status": rehearsal.status, **rehearsal.report}

        return await _in_thread(finished)

    async def abort(self, rehearsal_id: int, reason: str) -> None:
        await _in_thread(lambda: rehearsal_abort(rehearsal=rehearsal_running(rehearsal_id), reason=reason))

    async def close(self) -> None:
        """Nothing to close: the services use this process's clients."""


_REFUSALS: dict[str, type[ApplicationError]] = {
    RehearsalRefused.code: RehearsalRefused,
    RehearsalRunning.code: RehearsalRunning,
    RehearsalNotFound.code: RehearsalNotFound,
}


class ApiStage:
    """The stage through the stack's admin API, as the staff member whose token it holds."""

    def __init__(self, base_url: str, *, token: str) -> None:
        self.client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), headers={"Authorization": f"Token {token}"}, timeout=120.0
        )

    @classmethod
    async def logged_in(cls, base_url: str, *, username: str, password: str) -> ApiStage:
        """A staff member's token from the stack's ``POST /api/auth/token/``."""
        async with httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=30.0) as client:
            answer = await client.post("/api/auth/token/", json={"username": username, "password": password})
        if answer.status_code != 200:
            raise RehearsalRefused(f"{base_url} did not log {username!r} in (HTTP {answer.status_code}).")
        return cls(base_url, token=answer.json()["token"])

    async def _call(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = await self.client.post(path, json=body or {})
        try:
            payload: dict[str, Any] = answer.json()
        except ValueError:
            payload = {}
        if answer.status_code >= 400:
            kind = _REFUSALS.get(str(payload.get("status")), RehearsalRefused)
            detail = payload.get("detail") or f"HTTP {answer.status_code}"
            raise kind(f"{self.client.base_url}{path}: {detail}")
        return payload

    async def begin(
        self, *, sale_id: int, shoppers: int, attempts: int, stock: int | None, targets: Targets, transport: str
    ) -> dict[str, Any]:
        body = {"shoppers": shoppers, "attempts": attempts, "targets": targets.as_json(), "transport": transport}
        if stock is not None:
            body["stock"] = stock
        return await self._call(f"/api/admin/sales/{sale_id}/rehearsals/", body)

    async def open(self, rehearsal_id: int) -> dict[str, Any]:
        return await self._call(f"/api/admin/rehearsals/{rehearsal_id}/open/")

    async def finish(self, rehearsal_id: int, crowd: dict[str, Any]) -> dict[str, Any]:
        return await self._call(f"/api/admin/rehearsals/{rehearsal_id}/finish/", {"crowd": crowd})

    async def abort(self, rehearsal_id: int, reason: str) -> None:
        await self._call(f"/api/admin/rehearsals/{rehearsal_id}/abort/", {"reason": reason})

    async def close(self) -> None:
        await self.client.aclose()


async def rehearsal_drive(
    stage: StageClient,
    *,
    crowd_url: str,
    sale_id: int,
    shoppers: int = 0,
    attempts: int = 0,
    stock: int | None = None,
    targets: Targets | None = None,
    tcp: str | None = None,
    begun: dict[str, Any] | None = None,
    say: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """One rehearsal from start to report: set up (unless ``begun``, a stage already set up),
    the crowd's proofs of work, open, the crowd at the start, finish. Anything that fails
    after the set-up aborts it, which cleans up. Returns the report."""
    if begun is None:
        begun = await stage.begin(
            sale_id=sale_id,
            shoppers=shoppers,
            attempts=attempts,
            stock=stock,
            targets=targets or Targets(),
            transport="tcp" if tcp else "http",
        )
    rehearsal_id = int(begun["rehearsal_id"])
    say(
        f"rehearsal {rehearsal_id}: shadow sale {begun['shadow_sale_id']} of sale {begun['sale_id']}, "
        f"{len(begun['shoppers'])} shoppers x {begun['attempts']} attempts, {begun['stock']} units"
    )
    door = door_for(crowd_url, int(begun["shadow_sale_id"]), tcp=tcp, connections=CONNECTIONS)
    try:
        with proof_solver(max(1, os.cpu_count() or 1)) as solver:
            crowd = Crowd(
                door,
                [Shopper(int(one["id"]), str(one["token"])) for one in begun["shoppers"]],
                attempts=int(begun["attempts"]),
                pow_difficulty=int(begun["pow_difficulty"]),
                queued=bool(begun["queued"]),
                concurrency=CONNECTIONS,
                solver=solver,
            )
            if begun["pow_difficulty"]:
                say(f"  solving {len(begun['shoppers'])} proofs of work (difficulty {begun['pow_difficulty']}) ...")
            await crowd.prepare()
            opened = await stage.open(rehearsal_id)
            say("  the shadow sale opens; the crowd presses Buy ...")
            figures = await crowd.run(start_ms=opened["starts_at_ms"], server_now_ms=opened["server_now_ms"])
        say(f"  {sum(figures.answers.values())} answers in {figures.seconds:.1f} s; checking I1-I4, draining ...")
        report = await stage.finish(rehearsal_id, figures.as_json())
    except BaseException as error:
        logger.warning("rehearsal %s failed; aborting it", rehearsal_id, exc_info=True)
        try:
            await stage.abort(rehearsal_id, f"the rehearsal failed: {type(error).__name__}: {error}"[:500])
        except Exception:  # Already over, or the stack is away: beat sweeps it up.
            logger.warning("could not abort rehearsal %s", rehearsal_id, exc_info=True)
        raise
    finally:
        await door.close()
    return report
