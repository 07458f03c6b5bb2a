"""Hot-path code written once for a blocking and an asyncio server.

A hot-path operation is a generator that yields each round trip it needs (a Lua script by
SHA, one Redis command, or a piece of blocking database work) and gets the reply back; it
decides everything else itself. ``drive`` runs such a generator on the process's blocking
Redis client (the WSGI web processes), ``drive_async`` on an asyncio client (the TCP door):
one set of rules, two transports. A failed round trip is thrown into the generator at its
``yield``, so its ``except``/``finally`` clean-ups run (and may yield calls of their own); a
dependency that cannot answer (Redis, PostgreSQL) is thrown as the one ``Unavailable``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import redis.asyncio as aioredis
from django.db import close_old_connections
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from .errors import Unavailable, is_dependency_down
from .pipelining import AutoPipeline
from .redis_store import InventoryRedis, inventory_redis

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ScriptCall:
    """A Lua script by SHA with its keys and arguments: one round trip."""

    script: Script
    keys: tuple[str, ...]
    args: tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class CommandCall:
    """One Redis command: one round trip."""

    command: tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class DatabaseWork:
    """Blocking work (the ORM): called directly by ``drive``, in a thread by ``drive_async``."""

    work: Callable[[], Any]


Step = ScriptCall | CommandCall | DatabaseWork
Steps = Generator[Step, Any, T]


@dataclass(frozen=True, slots=True)
class Answered(Generic[T]):
    """What ``start`` returns when the steps needed no round trip at all."""

    value: T


def start(steps: Steps[T]) -> Step | Answered[T]:
    """Run ``steps`` up to its first round trip, in the caller's frame: its answer when it
    needs none (a local answer: no task, no await), else the first step, to be handed to
    ``drive_async(steps, client, first=step)``. Exceptions the steps raise propagate."""
    try:
        return next(steps)
    except StopIteration as done:
        return Answered(done.value)


def run_step(client: InventoryRedis, step: Step) -> Any:
    if isinstance(step, ScriptCall):
        return step.script(step.keys, step.args, client=client)
    if isinstance(step, CommandCall):
        return client.execute_command(*step.command)
    return step.work()


AsyncClient = aioredis.Redis | AsyncRedisCluster | AutoPipeline
"""What ``drive_async`` runs steps on: an asyncio client (one server's or a cluster's), or one
that pipelines automatically."""


async def run_step_async(client: AsyncClient, step: Step) -> Any:
    if isinstance(step, ScriptCall):
        try:
            return await client.evalsha(step.script.sha, len(step.keys), *step.keys, *step.args)  # type: ignore[no-untyped-call]
        except NoScriptError:
            await client.script_load(step.script.script)
            return await client.evalsha(step.script.sha, len(step.keys), *step.keys, *step.args)  # type: ignore[no-untyped-call]
    if isinstance(step, CommandCall):
        return await client.execute_command(*step.command)
    return await asyncio.to_thread(_database_work, step.work)


def _database_work(work: Callable[[], Any]) -> Any:
    # A worker thread has no request cycle closing its broken or expired connections.
    close_old_connections()
    return work()


def _thrown(error: Exception) -> Exception:
    """What a step's failure is to the steps: ``Unavailable`` for a dependency away."""
    if is_dependency_down(error):
        unavailable = Unavailable()
        unavailable.__cause__ = error
        return unavailable
    return error


def drive(steps: Steps[T], client: InventoryRedis | None = None) -> T:
    """Run ``steps`` to its answer on a blocking client (the process's own by default)."""
    client = client or inventory_redis()
    try:
        step = next(steps)
        while True:
            try:
                reply = run_step(client, step)
            except Exception as error:  # noqa: BLE001 - handed to the steps, which re-raise it
                step = steps.throw(_thrown(error))
                continue
            step = steps.send(reply)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def drive_async(steps: Steps[T], client: AsyncClient, *, first: Step | None = None) -> T:
    """Run ``steps`` to its answer on an asyncio client (from ``first`` when ``start`` began it)."""
    try:
        step = first if first is not None else next(steps)
        while True:
            try:
                reply = await run_step_async(client, step)
            except Exception as error:  # noqa: BLE001 - handed to the steps, which re-raise it
                step = steps.throw(_thrown(error))
                continue
            step = steps.send(reply)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
