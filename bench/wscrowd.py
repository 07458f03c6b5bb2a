"""Scenario 9's client side: processes that each hold thousands of storefront WebSockets.

A client here is as small as a WebSocket client can be, so the measurement is of the server
and not of the client: an asyncio ``Protocol`` on uvloop that sends the opening handshake,
then reads frames by hand (the server's frames are unmasked), answers pings, and stamps the
arrival of ``sale_started`` with ``time.time()``. A process opens its sockets from a loopback
address of its own (127.0.0.N), so its ports and the others' never collide.

A ``CrowdProcess`` is driven over a pipe by the coordinator (``bench/websocket.py``): open N
more sockets, arm a round, collect the round's arrivals, close. It imports nothing from Django.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import multiprocessing
import os
import resource
import struct
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import uvloop

HANDSHAKE_TIMEOUT_S = 60.0
CONNECT_BATCH = 250
STARTED = b'"type":"sale_started"'
HELLO = b'"type":"hello"'


@dataclass
class CrowdState:
    """What one client process knows about its sockets."""

    opened: int = 0
    held: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    closed_by_server: dict[int, int] = field(default_factory=dict)
    round_arrivals: list[float] = field(default_factory=list)
    round_open: bool = False
    everyone_heard: asyncio.Event | None = None

    def fail(self, reason: str) -> None:
        self.failures[reason] = self.failures.get(reason, 0) + 1


class SaleListener(asyncio.Protocol):
    """One storefront page's socket, listening only."""

    __slots__ = ("buffer", "closed", "counted", "crowd", "heard_round", "hello", "request", "transport", "upgraded")

    def __init__(self, crowd: CrowdState, request: bytes, hello: asyncio.Future[bool]) -> None:
        self.crowd = crowd
        self.request = request
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.upgraded = False
        self.hello = hello
        self.heard_round = False
        self.closed = False
        self.counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buffer
                return
            status = buffer[: buffer.find(b"\r\n")]
            if b" 101 " not in status:
                self._finish_hello(f"HTTP {status[9:12].decode(errors='replace')}")
                self.transport.close()  # type: ignore[union-attr]
                return
            self.upgraded = True
            buffer = buffer[end + 4 :]
        self.buffer = self._frames(buffer)

    def _frames(self, buffer: bytes) -> bytes:
        while len(buffer) >= 2:
            opcode = buffer[0] & 0x0F
            length = buffer[1] & 0x7F
            start = 2
            if length == 126:
                if len(buffer) < 4:
                    break
                length = struct.unpack_from("!H", buffer, 2)[0]
                start = 4
            elif length == 127:
                if len(buffer) < 10:
                    break
                length = struct.unpack_from("!Q", buffer, 2)[0]
                start = 10
            end = start + length
            if len(buffer) < end:
                break
            payload = buffer[start:end]
            buffer = buffer[end:]
            if opcode == 0x1:
                self._text(payload)
            elif opcode == 0x9:
                self._send(0xA, payload)
            elif opcode == 0x8:
                code = struct.unpack_from("!H", payload)[0] if len(payload) >= 2 else 1005
                self.crowd.closed_by_server[code] = self.crowd.closed_by_server.get(code, 0) + 1
                self._finish_hello(f"closed {code}")
                with contextlib.suppress(Exception):
                    self._send(0x8, payload[:2])
                self.transport.close()  # type: ignore[union-attr]
                return b""
        return buffer

    def _text(self, payload: bytes) -> None:
        if not self.hello.done():
            self._finish_hello("" if HELLO in payload else "first message not hello")
            return
        if STARTED in payload and self.crowd.round_open and not self.heard_round:
            self.heard_round = True
            crowd = self.crowd
            crowd.round_arrivals.append(time.time())
            if len(crowd.round_arrivals) >= crowd.held and crowd.everyone_heard is not None:
                crowd.everyone_heard.set()

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
        self.transport.write(bytes((0x80 | opcode, 0x80 | len(payload))) + mask + masked)  # type: ignore[union-attr]

    def _finish_hello(self, failure: str) -> None:
        if not self.hello.done():
            self.hello.set_result(failure == "")
            if failure:
                self.crowd.fail(failure)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._finish_hello("connection lost")
        if self.counted:
            self.counted = False
            crowd = self.crowd
            crowd.held -= 1
            if crowd.round_open and len(crowd.round_arrivals) >= crowd.held and crowd.everyone_heard is not None:
                crowd.everyone_heard.set()


def _handshake(host: str, port: int, path: str, origin: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\r\n"
    ).encode()


class Crowd:
    """The sockets of one client process."""

    listener_class: type[SaleListener] = SaleListener
    """What each socket is (a subclass may listen for another message: ``bench/queue_sockets.py``)."""

    def __init__(self, source_address: str) -> None:
        self.source_address = source_address
        self.state = CrowdState()
        self.listeners: list[SaleListener] = []

    async def open(self, *, host: str, port: int, path: str, origin: str, count: int) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        began = time.perf_counter()

        async def one() -> None:
            hello: asyncio.Future[bool] = loop.create_future()
            listener = self.listener_class(self.state, _handshake(host, port, path, origin), hello)
            try:
                await loop.create_connection(lambda: listener, host, port, local_addr=(self.source_address, 0))
            except OSError as error:
                self.state.fail(f"connect: {error.strerror or type(error).__name__}")
                return
            self.state.opened += 1
            try:
                ok = await asyncio.wait_for(asyncio.shield(hello), HANDSHAKE_TIMEOUT_S)
            except TimeoutError:
                self.state.fail("no hello in time")
                listener.transport.close()  # type: ignore[union-attr]
                return
            if ok and not listener.closed:
                listener.counted = True
                self.state.held += 1
                self.listeners.append(listener)

        for first in range(0, count, CONNECT_BATCH):
            await asyncio.gather(*(one() for _ in range(min(CONNECT_BATCH, count - first))))
        return {"held": self.state.held, "open_s": time.perf_counter() - began, "failures": dict(self.state.failures)}

    def arm(self) -> None:
        state = self.state
        state.round_arrivals = []
        state.round_open = True
        state.everyone_heard = asyncio.Event()
        for listener in self.listeners:
            listener.heard_round = False

    async def collect(self, deadline: float) -> dict[str, Any]:
        state = self.state
        assert state.everyone_heard is not None
        if len(state.round_arrivals) < state.held:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.everyone_heard.wait(), max(0.0, deadline - time.time()))
        state.round_open = False
        return {
            "arrivals": list(state.round_arrivals),
            "held": state.held,
            "failures": dict(state.failures),
            "closed_by_server": dict(state.closed_by_server),
        }

    async def close(self) -> None:
        for listener in self.listeners:
            if listener.transport is not None and not listener.closed:
                listener.transport.abort()
        self.listeners.clear()


async def _serve(pipe: Connection, source_address: str, crowd_class: type[Crowd] = Crowd) -> None:
    loop = asyncio.get_running_loop()
    crowd = crowd_class(source_address)
    while True:
        command, arguments = await loop.run_in_executor(None, pipe.recv)
        if command == "open":
            pipe.send(await crowd.open(**arguments))
        elif command == "arm":
            crowd.arm()
            pipe.send({"armed": True})
        elif command == "collect":
            pipe.send(await crowd.collect(arguments["deadline"]))
        elif command == "close":
            await crowd.close()
            pipe.send({"closed": True})
            return


def _run(pipe: Connection, source_address: str, crowd_class: type[Crowd] = Crowd) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve(pipe, source_address, crowd_class))


class CrowdProcess:
    """A client process and the pipe that drives it."""

    def __init__(self, index: int, crowd_class: type[Crowd] = Crowd) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipe, child_end = context.Pipe()
        self.source_address = f"127.0.0.{10 + index}"
        self.process = context.Process(target=_run, args=(child_end, self.source_address, crowd_class), daemon=True)
        self.process.start()
        child_end.close()

    def ask(self, command: str, **arguments: Any) -> None:
        self.pipe.send((command, arguments))

    def answer(self, timeout: float) -> dict[str, Any]:
        if not self.pipe.poll(timeout):
            raise TimeoutError(f"client process {self.process.pid} did not answer in {timeout:.0f} s")
        reply: dict[str, Any] = self.pipe.recv()
        return reply

    def stop(self) -> None:
        with contextlib.suppress(OSError, TimeoutError, EOFError):
            self.ask("close")
            self.answer(30.0)
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


def crowd_started(processes: int, crowd_class: type[Crowd] = Crowd) -> list[CrowdProcess]:
    return [CrowdProcess(index, crowd_class) for index in range(processes)]
