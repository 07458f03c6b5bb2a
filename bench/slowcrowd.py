"""A crowd of slow clients from one address, for scenario 13 (``bench/slowclients.py``):
``python -m bench.slowcrowd``, a process of its own so that its work is not the measuring
client's.

It holds ``--connections`` connections to the web server from ``--source`` (a loopback
address of its own, 127.0.0.2: Linux routes all of 127.0.0.0/8 to ``lo``, so the server sees
another client), half of them sending a header block, half a body, one byte every
``--trickle`` seconds, never finishing:

- ``headers``: ``POST /api/auth/token/`` and the start of a header block;
- ``bodies``: whole headers, then a body that never completes: half anonymous
  ``POST /api/auth/token/`` announcing ``Content-Length: 60000``, half a shopper's
  ``POST /api/sales/<id>/purchase/`` with a short JSON body.

A connection the server answers or closes is recorded (its kind, the status line's code or
``closed``, the seconds it was held) and opened again ``--reopen`` seconds later, so the
crowd stays at its size. Every half second, and once more on SIGTERM (which ends the run),
it writes what it saw to ``--status`` as JSON: what the benchmark waits on and reports.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import uvloop

KINDS = ("headers", "bodies")


class Crowd:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.began = time.monotonic()
        self.open = 0
        self.opened: Counter[str] = Counter()
        # kind -> when each connection open now was opened (the server holds it, unanswered)
        self.holding: dict[str, dict[int, float]] = {kind: {} for kind in KINDS}
        self.refused_connects = 0
        # kind -> answer ("408", "429", "closed", ...) -> seconds each connection was held
        self.ends: dict[str, dict[str, list[float]]] = {kind: defaultdict(list) for kind in KINDS}
        self.stopping = asyncio.Event()

    def _head(self, kind: str, number: int) -> bytes:
        host = f"Host: 127.0.0.1:{self.args.port}\r\n"
        if kind == "headers":
            return f"POST /api/auth/token/ HTTP/1.1\r\n{host}Content-Type: application/json\r\nX-Slow: ".encode()
        if number % 2 == 0:
            return (
                f"POST /api/auth/token/ HTTP/1.1\r\n{host}Content-Type: application/json\r\n"
                "Content-Length: 60000\r\n\r\n"
            ).encode()
        body_length = 64  # announced; never sent whole
        return (
            f"POST /api/sales/{self.args.sale}/purchase/ HTTP/1.1\r\n{host}"
            f"Authorization: Token {self.args.token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {body_length}\r\n\r\n"
        ).encode()

    async def connection(self, kind: str, number: int) -> None:
        while not self.stopping.is_set():
            try:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", self.args.port, local_addr=(self.args.source, 0)
                )
            except OSError:
                self.refused_connects += 1
                await self._pause()
                continue
            self.open += 1
            self.opened[kind] += 1
            opened = time.monotonic()
            self.holding[kind][number] = opened
            answer = await self._hold(kind, number, reader, writer)
            del self.holding[kind][number]
            self.open -= 1
            if answer is not None:
                self.ends[kind][answer].append(time.monotonic() - opened)
            writer.close()
            await self._pause()

    async def _hold(
        self, kind: str, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> str | None:
        """Trickle until the server answers or closes (its answer), or the run ends (None)."""
        reading = asyncio.ensure_future(reader.read(64))
        stop = asyncio.ensure_future(self.stopping.wait())
        try:
            writer.write(self._head(kind, number))
            filler = b"a" if kind == "headers" else b" "
            while True:
                done, _ = await asyncio.wait({reading, stop}, timeout=self.args.trickle, return_when="FIRST_COMPLETED")
                if stop in done:
                    return None
                if reading in done:
                    data = reading.result()
                    return data[9:12].decode("ascii", "replace") if data.startswith(b"HTTP/") else "closed"
                writer.write(filler)
        except (OSError, asyncio.IncompleteReadError):
            return "closed"
        finally:
            for task in (reading, stop):
                task.cancel()

    async def _pause(self, seconds: float | None = None) -> None:
        """Wait ``seconds`` (the reopen pause by default), or less if the run ends."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), self.args.reopen if seconds is None else seconds)

    def summary(self) -> dict[str, Any]:
        def seconds(values: list[float]) -> dict[str, float]:
            ordered = sorted(values)
            return {
                "count": len(ordered),
                "p50_s": round(ordered[len(ordered) // 2], 2),
                "max_s": round(ordered[-1], 2),
            }

        now = time.monotonic()
        return {
            "source": self.args.source,
            "connections": self.args.connections,
            "trickle_s": self.args.trickle,
            "reopen_s": self.args.reopen,
            "running_s": round(time.monotonic() - self.began, 1),
            "open": self.open,
            "opened": dict(self.opened),
            "refused_connects": self.refused_connects,
            "ended": {
                kind: {answer: seconds(values) for answer, values in sorted(answers.items())}
                for kind, answers in self.ends.items()
            },
            "held": {
                kind: {
                    "count": len(since),
                    "longest_s": round(now - min(since.values()), 1) if since else 0.0,
                }
                for kind, since in self.holding.items()
            },
        }

    def write_status(self) -> None:
        path = Path(self.args.status)
        path.with_suffix(".tmp").write_text(json.dumps(self.summary()), encoding="utf-8")
        path.with_suffix(".tmp").replace(path)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        tasks = [
            asyncio.create_task(self.connection(KINDS[number % 2], number // 2))
            for number in range(self.args.connections)
        ]
        while not self.stopping.is_set():
            self.write_status()
            await self._pause(0.5)
        await asyncio.gather(*tasks)
        self.write_status()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.slowcrowd", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sale", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--status", required=True)
    parser.add_argument("--source", default="127.0.0.2")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--trickle", type=float, default=1.0)
    parser.add_argument("--reopen", type=float, default=0.5)
    args = parser.parse_args(argv)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(Crowd(args).run())


if __name__ == "__main__":
    main()
