"""The suites' one way to call the hot path: ``purchase()`` and ``challenge()``, in process
(Django's test ``Client``) or over HTTP against a real server (a ``ChildProcess`` or a base
URL). Both answers have ``status_code``, ``json()`` and ``headers``. Over the TCP door:
``Wire``, a plain blocking socket speaking its frames, and ``tcp_ask()``."""

from __future__ import annotations

import json
import socket
import struct
from typing import Any, Protocol

import httpx
from django.test import Client

from tests.factories import auth


class Served(Protocol):
    @property
    def url(self) -> str: ...


Target = Client | Served | str
"""Where a request goes: in process, or to a running server."""


def _post(target: Target, path: str, body: bytes, headers: dict[str, str]) -> Any:
    if isinstance(target, Client):
        return target.post(path, body, content_type="application/json", headers=headers)
    base = target if isinstance(target, str) else target.url
    return httpx.post(
        base.rstrip("/") + path, content=body, headers={"Content-Type": "application/json", **headers}, timeout=30
    )


def _body(body: object) -> bytes:
    if body is None:
        return b"{}"
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8", "surrogatepass")
    return json.dumps(body).encode()


def purchase(
    target: Target, sale_id: int, token: str | None, body: object = None, *, key: str | None = None, **headers: str
) -> Any:
    """``POST /api/sales/<id>/purchase/``. ``body``: None (``{}``), a dict (as JSON), or the
    raw text or bytes to send; ``key`` the Idempotency-Key; ``headers`` any others."""
    sent = {**(auth(token) if token is not None else {}), **headers}
    if key is not None:
        sent["Idempotency-Key"] = key
    return _post(target, f"/api/sales/{sale_id}/purchase/", _body(body), sent)


def challenge(target: Target, sale_id: int, token: str | None, **headers: str) -> Any:
    """``POST /api/sales/<id>/challenge/``."""
    sent = {**(auth(token) if token is not None else {}), **headers}
    return _post(target, f"/api/sales/{sale_id}/challenge/", b"", sent)


class Wire:
    """A blocking connection to the TCP door, bytes exactly as sent (hostile ones too)."""

    def __init__(self, port: int, *, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_frame(self, kind: int, payload: bytes | dict[str, Any]) -> None:
        raw = json.dumps(payload).encode() if isinstance(payload, dict) else payload
        self.send(frame(kind, raw))

    def _exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError(f"closed after {len(data)} of {size} bytes")
            data += chunk
        return data

    def read(self) -> tuple[int, dict[str, Any]]:
        kind, length = struct.unpack(">BI", self._exactly(5))
        return kind, json.loads(self._exactly(length))

    def ask(self, kind: int, payload: bytes | dict[str, Any]) -> dict[str, Any]:
        self.send_frame(kind, payload)
        answered, body = self.read()
        assert answered == kind, (answered, body)
        return body

    def closed_by_server(self) -> bool:
        """The server closed its side: a read returns end-of-file (or a reset)."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True


def frame(kind: int, payload: bytes) -> bytes:
    return struct.pack(">BI", kind, len(payload)) + payload


def tcp_ask(target: Served | int, kind: int, payload: dict[str, Any]) -> dict[str, Any]:
    """One message on a fresh connection to the TCP door."""
    port = target if isinstance(target, int) else int(target.url.rsplit(":", 1)[1])
    with Wire(port) as wire:
        return wire.ask(kind, payload)
