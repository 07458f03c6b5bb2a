"""``GET /metrics`` of a TCP door process, for a door that runs in a container of its own.

Under ``make run`` every process writes its metrics where the web's ``/metrics`` sums them
(prometheus_client's multiprocess mode); a container has no such shared directory, so the
door answers Prometheus itself, on a port of its own (``tcpserver --metrics-port``), with the
same rule as the web's endpoint (``core.metrics.scrape_allowed``: the scrape token, loopback,
``METRICS_ALLOWED_NETWORKS``). A minimal HTTP/1.0 responder: one request per connection, its
head at most ``MAX_HEAD`` bytes and ``HEAD_TIMEOUT`` seconds, then closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.registry import REGISTRY

from core.metrics import scrape_allowed

MAX_HEAD = 8192
HEAD_TIMEOUT = 5.0


def _registry() -> CollectorRegistry:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    return registry


def _response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = (
        f"HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            return
        lines = head.decode("latin-1").split("\r\n")
        method, _, rest = lines[0].partition(" ")
        path = rest.partition(" ")[0]
        authorization = next(
            (line.partition(":")[2].strip() for line in lines[1:] if line.lower().startswith("authorization:")), ""
        )
        peer = writer.get_extra_info("peername")
        if method not in ("GET", "HEAD") or path.partition("?")[0] != "/metrics":
            writer.write(_response("404 Not Found", b"GET /metrics only\n"))
        elif not scrape_allowed(peer=str(peer[0]) if peer else "", authorization=authorization):
            writer.write(_response("403 Forbidden", b"metrics are for the monitoring network or the scrape token\n"))
        else:
            body = await asyncio.to_thread(generate_latest, _registry())
            writer.write(_response("200 OK", b"" if method == "HEAD" else body, "text/plain; version=0.0.4"))
        with contextlib.suppress(OSError):
            await writer.drain()
    finally:
        writer.close()


async def metrics_listen(host: str, port: int) -> asyncio.Server:
    """Serve ``GET /metrics`` on ``host:port`` until the returned server is closed."""
    return await asyncio.start_server(_answer, host, port, limit=MAX_HEAD)
