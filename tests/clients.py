"""The suites' one way to call the hot path: ``purchase()`` and ``challenge()``, in process
(Django's test ``Client``) or over HTTP against a real server (a ``ChildProcess`` or a base
URL). Both answers have ``status_code``, ``json()`` and ``headers``."""

from __future__ import annotations

import json
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
