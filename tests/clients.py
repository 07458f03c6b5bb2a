"""The suites' one way to call the hot path: ``purchase()`` and ``challenge()``, in process
(Django's test ``Client``) or over HTTP against a real server (a ``ChildProcess`` or a base
URL). Both answers have ``status_code``, ``json()`` and ``headers``. Over the TCP door:
``Wire``, a plain blocking socket speaking its frames, and ``tcp_ask()``. A person at a real
server's pages (login, the admin's forms): ``Browser``, whose session the hot path's helpers
take as headers (``session_headers()``)."""

from __future__ import annotations

import json
import socket
import struct
import uuid
from html.parser import HTMLParser
from typing import Any, Protocol

import httpx
from django.test import Client

from tests.factories import auth

RESEND_TRIES = 3
"""A kept-alive connection the server or the balancer closes as a request is sent on it
(granian closes one idle for ``WEB_HEADER_TIMEOUT_MS``, HAProxy after its
``timeout http-keep-alive``, sooner on a loaded machine) fails before any answer: the attempt
is sent again with its Idempotency-Key, as a client should, so a win answered on the lost
connection is answered again, not lost."""


async def purchase_resent(client: httpx.AsyncClient, sale_id: int, token: str) -> httpx.Response:
    """One purchase attempt over ``client``, with a fresh Idempotency-Key, sent again with the
    same key (up to ``RESEND_TRIES`` in all) when its connection was lost before an answer."""
    headers = {"Authorization": f"Token {token}", "Idempotency-Key": str(uuid.uuid4())}
    for tried in range(1, RESEND_TRIES + 1):
        try:
            return await client.post(f"/api/sales/{sale_id}/purchase/", json={}, headers=headers)
        except (httpx.ReadError, httpx.RemoteProtocolError):
            if tried == RESEND_TRIES:
                raise
    raise AssertionError("unreachable")


class Served(Protocol):
    @property
    def url(self) -> str: ...


Target = Client | Served | str
"""Where a request goes: in process, or to a running server."""


def _post(target: Target, path: str, body: bytes, headers: dict[str, str], *, source: str | None = None) -> Any:
    if isinstance(target, Client):
        return target.post(path, body, content_type="application/json", headers=headers)
    base = target if isinstance(target, str) else target.url
    # ``source``: another loopback address to send from (all of 127.0.0.0/8 is this machine).
    transport = httpx.HTTPTransport(local_address=source) if source is not None else None
    with httpx.Client(transport=transport, timeout=30) as client:
        return client.post(
            base.rstrip("/") + path, content=body, headers={"Content-Type": "application/json", **headers}
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
    target: Target,
    sale_id: int,
    token: str | None,
    body: object = None,
    *,
    key: str | None = None,
    source: str | None = None,
    **headers: str,
) -> Any:
    """``POST /api/sales/<id>/purchase/``. ``body``: None (``{}``), a dict (as JSON), or the
    raw text or bytes to send; ``key`` the Idempotency-Key; ``source`` the loopback address
    to send from (over HTTP); ``headers`` any others."""
    sent = {**(auth(token) if token is not None else {}), **headers}
    if key is not None:
        sent["Idempotency-Key"] = key
    return _post(target, f"/api/sales/{sale_id}/purchase/", _body(body), sent, source=source)


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


class Browser:
    """A person at a real server's pages: cookies kept, forms read from the page and posted
    back with what the person changed, as a browser would send them."""

    def __init__(self, target: Served | str) -> None:
        self.http = httpx.Client(base_url=target if isinstance(target, str) else target.url, timeout=30)

    def close(self) -> None:
        self.http.close()

    def form(self, path: str) -> dict[str, str | list[str]]:
        """The fields the page's form (not the admin's logout form) would send untouched."""
        page = self.http.get(path)
        assert page.status_code == 200, (path, page.status_code)
        reader = _FormReader()
        reader.feed(page.text)
        forms = [fields for form_id, fields in reader.forms if form_id != "logout-form"]
        assert len(forms) == 1, (path, len(forms))
        return forms[0]

    def submit(self, path: str, **changes: str | list[str] | None) -> httpx.Response:
        """Post the page's form back with ``changes``; None leaves a field out (an unticked box)."""
        fields = self.form(path)
        for name, value in changes.items():
            if value is None:
                fields.pop(name, None)
            else:
                fields[name] = value
        return self.http.post(path, data=fields)

    def log_in(self, path: str, username: str, password: str) -> None:
        """Log in on a login page (the storefront's or the admin's); fails unless it took."""
        answer = self.submit(path, username=username, password=password)
        assert answer.status_code == 302, (path, answer.status_code)
        assert "sessionid" in self.http.cookies

    def session_headers(self) -> dict[str, str]:
        """What a page's script sends to the hot path: the cookies and the CSRF token."""
        cookies = "; ".join(f"{name}={value}" for name, value in self.http.cookies.items())
        return {"Cookie": cookies, "X-CSRFToken": self.http.cookies["csrftoken"]}


class _FormReader(HTMLParser):
    """Each POST form of a page: its id and the fields a browser would submit unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str | list[str]]]] = []
        self._fields: dict[str, str | list[str]] | None = None
        self._select: str | None = None
        self._first_option = False
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        given = {name: value or "" for name, value in attrs}
        if tag == "form" and given.get("method", "").lower() == "post":
            self._fields = {}
            self.forms.append((given.get("id", ""), self._fields))
        if self._fields is None or ("name" not in given and tag != "option"):
            return
        name = given.get("name", "")
        if tag == "input":
            kind = given.get("type", "text").lower()
            if kind in ("submit", "button", "image", "reset", "file"):
                return
            if kind in ("checkbox", "radio") and "checked" not in given:
                return
            self._fields[name] = given.get("value", "on" if kind in ("checkbox", "radio") else "")
        elif tag == "select":
            self._select = name
            self._fields[name] = [] if "multiple" in given else ""
            self._first_option = "multiple" not in given  # A single choice sends its first option by default.
        elif tag == "option" and self._select is not None:
            chosen = self._fields[self._select]
            if isinstance(chosen, list):
                if "selected" in given:
                    chosen.append(given.get("value", ""))
            elif "selected" in given or self._first_option:
                self._fields[self._select] = given.get("value", "")
            self._first_option = False
        elif tag == "textarea":
            self._textarea = name
            self._fields[name] = ""

    def handle_data(self, data: str) -> None:
        if self._fields is not None and self._textarea is not None:
            self._fields[self._textarea] = str(self._fields[self._textarea]) + data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._fields = None
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None
