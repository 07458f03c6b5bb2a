"""Hot-path code written once for a blocking and an asyncio server.

A hot-path operation is a generator that yields each round trip it needs (a Lua script by
SHA, one Redis command, or a piece of blocking database work) and gets the reply back; it
decides everything else itself. ``drive`` runs such a generator on the process's blocking
Redis client (the WSGI web processes), ``drive_async`` on an asyncio client (the TCP door):
one set of rules, two transports. A failed round trip is thrown into the generator at its
``yield``, so its ``except``/``finally`` clean-ups run (and may yield calls of their own).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
import redis.asyncio as aioredis
from django.conf import settings
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from .redis_store import inventory_redis

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


def run_step(client: redis.Redis, step: Step) -> Any:
    if isinstance(step, ScriptCall):
        return step.script(step.keys, step.args, client=client)
    if isinstance(step, CommandCall):
        return client.execute_command(*step.command)
    return step.work()


async def run_step_async(client: aioredis.Redis, step: Step) -> Any:
    if isinstance(step, ScriptCall):
        try:
            return await client.evalsha(step.script.sha, len(step.keys), *step.keys, *step.args)  # type: ignore[no-untyped-call]
        except NoScriptError:
            await client.script_load(step.script.script)
            return await client.evalsha(step.script.sha, len(step.keys), *step.keys, *step.args)  # type: ignore[no-untyped-call]
    if isinstance(step, CommandCall):
        return await client.execute_command(*step.command)
    return await asyncio.to_thread(step.work)


class _Pending:
    __slots__ = ("error", "handed", "ready", "reply", "step")

    def __init__(self, step: Step) -> None:
        self.step = step
        self.ready = threading.Event()
        self.handed = False
        self.reply: Any = None
        self.error: BaseException | None = None

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.reply


class SharedRoundTrips:
    """The request threads of a process share their round trips to Redis (group commit).

    A thread with a call to make sends it at once when no round trip is under way; while one
    is, calls wait, and the thread whose round trip comes back hands the next one to the
    first waiting thread, which sends every call waiting by then in one pipeline. Idle, a
    call costs what it did alone; under a crowd, N calls cost one write and one read instead
    of N each, which on a two-core machine is most of what a winning purchase costs. No call
    waits for more than the round trip before its own. Each call's reply or error is its own
    (a pipeline without MULTI: calls stay independent; each script is atomic by itself).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: list[_Pending] = []
        self._sending = False

    def run(self, client: redis.Redis, step: Step) -> Any:
        if isinstance(step, DatabaseWork):
            return step.work()
        pending = _Pending(step)
        with self._lock:
            self._waiting.append(pending)
            lead = not self._sending
            self._sending = True
        if not lead:
            pending.ready.wait()
            if not pending.handed:
                return pending.outcome()
        with self._lock:
            batch, self._waiting = self._waiting, []
        _send(client, batch)
        with self._lock:
            if self._waiting:
                following = self._waiting[0]
                following.handed = True
                following.ready.set()
            else:
                self._sending = False
        return pending.outcome()

    def forked(self) -> None:
        self._lock = threading.Lock()
        self._waiting = []
        self._sending = False


def _send(client: redis.Redis, batch: list[_Pending]) -> None:
    if len(batch) == 1:
        only = batch[0]
        try:
            only.reply = run_step(client, only.step)
        except Exception as error:  # noqa: BLE001 - the caller's to raise
            only.error = error
        only.ready.set()
        return
    try:
        with client.pipeline(transaction=False) as pipe:
            for pending in batch:
                step = pending.step
                if isinstance(step, ScriptCall):
                    step.script(step.keys, step.args, client=pipe)
                elif isinstance(step, CommandCall):
                    pipe.execute_command(*step.command)
            replies = pipe.execute(raise_on_error=False)
    except Exception as error:  # noqa: BLE001 - every call of the batch fails with it
        for pending in batch:
            pending.error = error
            pending.ready.set()
        return
    for pending, reply in zip(batch, replies, strict=True):
        if isinstance(reply, Exception):
            pending.error = reply
        else:
            pending.reply = reply
        pending.ready.set()


shared_round_trips = SharedRoundTrips()
"""The process's shared round trips (``drive`` uses them when ``REDIS_SHARED_ROUND_TRIPS``)."""
os.register_at_fork(after_in_child=shared_round_trips.forked)


def drive(steps: Steps[T], client: redis.Redis | None = None) -> T:
    """Run ``steps`` to its answer on a blocking client (the process's own by default)."""
    client = client or inventory_redis()
    run = shared_round_trips.run if settings.REDIS_SHARED_ROUND_TRIPS else run_step
    try:
        step = next(steps)
        while True:
            try:
                reply = run(client, step)
            except Exception as error:  # noqa: BLE001 - handed to the steps, which re-raise it
                step = steps.throw(error)
                continue
            step = steps.send(reply)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def drive_async(steps: Steps[T], client: aioredis.Redis) -> T:
    """Run ``steps`` to its answer on an asyncio client."""
    try:
        step = next(steps)
        while True:
            try:
                reply = await run_step_async(client, step)
            except Exception as error:  # noqa: BLE001 - handed to the steps, which re-raise it
                step = steps.throw(error)
                continue
            step = steps.send(reply)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
