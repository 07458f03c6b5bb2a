"""Talking to the TCP front door: one connection (``DoorClient``) and the seed's load
(``load_run``: closed or open loop over many connections). No Django: the benchmark and the
client's load run it against any door."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import uvloop

from .frames import HEADER, HEADER_SIZE, MessageType, json_frame

DEFAULT_PORT = int(os.environ.get("TCP_PORT") or 8002)


class DoorClosed(ConnectionError):
    pass


class DoorClient:
    """One connection to the door; ``ask`` sends a message and reads its answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> DoorClient:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def send(self, frame: bytes) -> None:
        self.writer.write(frame)
        await self.writer.drain()

    async def read(self) -> tuple[int, dict[str, Any]]:
        try:
            header = await self.reader.readexactly(HEADER_SIZE)
            kind, length = HEADER.unpack(header)
            payload = await self.reader.readexactly(length)
        except asyncio.IncompleteReadError as error:
            raise DoorClosed("the door closed the connection") from error
        return kind, json.loads(payload)

    async def ask(self, kind: int, body: dict[str, Any]) -> dict[str, Any]:
        await self.send(json_frame(kind, body))
        _, answer = await self.read()
        return answer

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


@dataclass
class LoadResult:
    """One run: answers by status, latencies (seconds), how long it took."""

    connections: int
    requests: int = 0
    wall_s: float = 0.0
    statuses: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    offered_rps: float = 0.0
    late_sends: int = 0
    cpu_s: float = 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.wall_s if self.wall_s else 0.0

    def percentile_ms(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000 if ordered else 0.0

    @property
    def mean_ms(self) -> float:
        return sum(self.latencies) / len(self.latencies) * 1000 if self.latencies else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "connections": self.connections,
            "attempts": self.requests,
            "seconds": round(self.wall_s, 3),
            "attempts_per_second": round(self.rps, 1),
            "latency_ms": {
                "mean": round(self.mean_ms, 3),
                "p50": round(self.percentile_ms(0.50), 3),
                "p99": round(self.percentile_ms(0.99), 3),
                "max": round(self.percentile_ms(1.0), 3),
            },
            "statuses": dict(self.statuses),
            "errors": dict(self.errors),
        }


async def _drive(
    frames: Iterable[bytes],
    *,
    host: str,
    port: int,
    connections: int,
    keep_bodies: bool,
    rate: float = 0.0,
    duration_s: float = 0.0,
) -> LoadResult:
    """Closed loop (``rate`` 0): each connection sends its next frame as soon as it has its
    answer, until every frame was answered (or ``duration_s``, when set, has passed). Open
    loop (``rate`` > 0): each connection sends one frame every ``connections / rate`` seconds
    for ``duration_s``, latency counted from when the frame was due (no coordinated omission)."""
    result = LoadResult(connections=connections, offered_rps=rate)
    feed = iter(frames)
    period = connections / rate if rate > 0 else 0.0
    clients: list[DoorClient] = []
    for _ in range(connections):
        try:
            clients.append(await DoorClient.connect(host, port))
        except OSError:
            result.errors["connect"] += 1

    async def one(client: DoorClient, start: float) -> None:
        due = start + random.uniform(0, period) if period else start
        stop = start + duration_s if duration_s else float("inf")
        try:
            for frame in feed:
                if not period and time.perf_counter() >= stop:
                    return
                if period:
                    if due >= stop:
                        return
                    now = time.perf_counter()
                    if due > now:
                        await asyncio.sleep(due - now)
                    elif now - due > 0.001:
                        result.late_sends += 1
                    sent = due
                    due += period
                else:
                    sent = time.perf_counter()
                client.writer.write(frame)
                header = await client.reader.readexactly(HEADER_SIZE)
                _, length = HEADER.unpack(header)
                payload = await client.reader.readexactly(length)
                result.latencies.append(time.perf_counter() - sent)
                answer = json.loads(payload)
                result.statuses[str(answer.get("status"))] += 1
                if keep_bodies:
                    result.bodies.append(answer)
        except (OSError, asyncio.IncompleteReadError):
            result.errors["read"] += 1
        finally:
            await client.close()

    began, cpu_before = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(client, began + 0.01) for client in clients))
    result.wall_s = time.perf_counter() - began
    result.cpu_s = time.process_time() - cpu_before
    result.requests = len(result.latencies)
    return result


def load_run(
    frames: Iterable[bytes],
    *,
    port: int,
    connections: int,
    host: str = "127.0.0.1",
    keep_bodies: bool = False,
    rate: float = 0.0,
    duration_s: float = 0.0,
) -> LoadResult:
    """``_drive`` on a uvloop event loop of its own (see there)."""
    loop_factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(
            _drive(
                frames,
                host=host,
                port=port,
                connections=connections,
                keep_bodies=keep_bodies,
                rate=rate,
                duration_s=duration_s,
            )
        )


def attempt_frame(product: str | int, *, token: str = "", user_id: str = "", **fields: str) -> bytes:
    body: dict[str, Any] = {"product_id": product}
    if user_id:
        body["user_id"] = user_id
    else:
        body["token"] = token
    body.update({name: value for name, value in fields.items() if value})
    return json_frame(MessageType.ATTEMPT_PURCHASE, body)
