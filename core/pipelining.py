"""Automatic pipelining for an asyncio server: the Redis commands its requests issue in one
turn of the event loop go to Redis together, as one pipeline on one connection.

An asyncio server holding many connections (the TCP door) has many attempts waiting on Redis
at once. Sent one by one, each costs a pooled connection taken and given back, a write and a
read; sent together, a turn's worth costs one of each, and Redis reads them in one go. Each
command is still its own: no transaction (``MULTI``) binds them, each gets its own reply or
error, and an atomic script stays the one atomic step it is. A command waits for the next turn
of the loop at most, never for others to arrive.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis

MAX_BATCH = 256


class AutoPipeline:
    """``evalsha``, ``script_load`` and ``execute_command`` of ``client``, batched per turn
    of the event loop (``core.steps.drive_async`` takes it as its client)."""

    def __init__(self, client: aioredis.Redis, *, max_batch: int = MAX_BATCH) -> None:
        self.client = client
        self.max_batch = max_batch
        self._pending: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._scheduled = False
        self._sending: set[asyncio.Future[None]] = set()

    async def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        return await self._queued(("EVALSHA", sha, numkeys, *keys_and_args))

    async def execute_command(self, *command: Any) -> Any:
        return await self._queued(command)

    async def script_load(self, script: Any) -> Any:
        return await self.client.script_load(script)

    async def aclose(self) -> None:
        if self._sending:
            await asyncio.wait(set(self._sending))
        await self.client.aclose()

    def _queued(self, command: tuple[Any, ...]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((command, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        for start in range(0, len(batch), self.max_batch):
            sending = asyncio.ensure_future(self._send(batch[start : start + self.max_batch]))
            self._sending.add(sending)
            sending.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        try:
            if len(batch) == 1:
                replies = [await self.client.execute_command(*batch[0][0])]
            else:
                pipe = self.client.pipeline(transaction=False)
                for command, _ in batch:
                    pipe.execute_command(*command)
                replies = await pipe.execute(raise_on_error=False)
        except Exception as error:  # noqa: BLE001 - every waiting command hears it
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        except BaseException:
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)
