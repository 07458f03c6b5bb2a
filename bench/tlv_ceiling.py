"""The TCP door's ceiling: an asyncio server on uvloop speaking the door's framing (the seed's
TLV, ``tcpdoor.frames``) and answering every frame with one fixed frame, no Django.

One process, one event loop, one protocol object per connection, frames cut by the door's own
``FrameBuffer``, answers written as they are ready: the door's I/O shape (``tcpdoor/server.py``)
with nothing behind it. ``make bench`` reports each TCP path as a share of it.

``python -m bench.tlv_ceiling --port N`` serves until stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import cast

import uvloop

from tcpdoor.frames import FrameBuffer, FramingError, MessageType, error_frame, json_frame

MAX_PAYLOAD = 4096
ANSWERS: dict[int, bytes] = {
    kind: json_frame(kind, {"status": "SOLD_OUT", "detail": "the TLV ceiling: a fixed frame"})
    for kind in MessageType
    if kind != MessageType.ERROR
}
"""The fixed answer to each request type (an answer carries its request's type)."""


class CeilingConnection(asyncio.Protocol):
    __slots__ = ("buffer", "transport")

    def __init__(self) -> None:
        self.buffer = FrameBuffer(max_payload=MAX_PAYLOAD)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer.feed(data)
        answers = []
        try:
            while (taken := self.buffer.pop()) is not None:
                answers.append(ANSWERS[taken[0]])
        except FramingError as error:
            self.transport.write(b"".join(answers) + error_frame(MessageType.ERROR, str(error)))
            self.transport.close()
            return
        if answers:
            self.transport.write(b"".join(answers))


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(CeilingConnection, host, port, backlog=4096, reuse_address=True)
    stopped = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopped.set)
    async with server:
        await stopped.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tlv_ceiling", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
