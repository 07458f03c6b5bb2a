"""Request bodies, read before the application runs: as HTTP frames them, within the size
limit, and by no more than ``WEB_BODIES_PER_IP`` of one address's requests at once
(docs/design.md, "Slow clients and bodies"; the rules are ``core.body_rules``).

What granian 2.8's WSGI interface allows, measured (docs/reliability.md):

- ``wsgi.input.read(n)`` returns only once ``n`` bytes, or the end of the body, have come; it
  has no timeout and never returns part of a body, and granian has no body timeout of its own.
  A request thread reading a body that never finishes is held until its client sends the
  rest or closes the connection.
- The read cannot be handed to another thread so that the request can be answered 408 at a
  deadline: when a request returns while another thread is still reading its body, granian's
  thread waits for that read while holding the GIL, and the whole worker process stops
  answering until the read ends.

So a slow body holds its request thread; what this middleware bounds is how many one address
holds: a request with a body from an address that already has ``WEB_BODIES_PER_IP`` bodies
being read by this process, one of them arriving for ``PATIENCE_SECONDS`` already, is
answered 429 before a byte of its body is read (granian then closes the connection), and the
other threads serve everyone else. When the address's bodies are all fresh, as a busy
client's are (a thread whose body came may still wait its turn for the interpreter), the
request waits for one of them to end instead, at most until one turns slow. A body that arrives whole
but later than ``WEB_BODY_TIMEOUT_SECONDS`` after its read began is answered 408 and changes
nothing. Header blocks have their own deadline in granian (``WEB_HEADER_TIMEOUT_MS``, in the
procfile); behind HAProxy, the balancer buffers whole requests and times out slow ones itself
(devstack/loadbalancer.py).

A request without a body (``GET``, the challenge, ``Content-Length: 0``) goes straight to the
application: it pays one framing check and nothing else.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.http import HttpResponse

from .body_rules import PATIENCE_SECONDS, Admission, admission_wait, arrived_late, body_admission, body_framing
from .client_address import client_ip_of
from .errors import (
    API_PREFIX,
    ApplicationError,
    InvalidRequest,
    RequestTimeout,
    body_too_large,
    error_json_response,
    page_error_response,
)
from .throttle import TooManyAttempts

StartResponse = Callable[..., Any]
WSGIApplication = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def bodies_refusal() -> TooManyAttempts:
    return TooManyAttempts(
        retry_after_seconds=1, reason="slow", what="requests from your address are still sending their bodies"
    )


class RequestBodies:
    """WSGI middleware in front of the whole application (module docstring)."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app
        self.timeout: float = settings.WEB_BODY_TIMEOUT_SECONDS
        self.cap: int = settings.WEB_BODIES_PER_IP
        self.limit: int | None = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        # address -> when each of its bodies being read began (monotonic seconds)
        self._reading: dict[str, list[float]] = {}
        self._lock = threading.Lock()
        self._read_ended = threading.Condition(self._lock)
        self._waiting = 0

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        framing = body_framing(
            content_length=environ.get("CONTENT_LENGTH"),
            transfer_encoding=environ.get("HTTP_TRANSFER_ENCODING"),
            protocol=environ.get("SERVER_PROTOCOL", ""),
            method=environ.get("REQUEST_METHOD", ""),
            limit=self.limit,
        )
        if framing.too_large:
            return self._refuse(environ, start_response, body_too_large())
        if framing.refusal:
            return self._refuse(environ, start_response, InvalidRequest(framing.refusal))
        if framing.length == 0:
            return self.app(environ, start_response)
        body = self._read(environ, length=framing.length)
        if isinstance(body, ApplicationError):
            return self._refuse(environ, start_response, body)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)  # what the application reads is no longer chunked
        return self.app(environ, start_response)

    def _read(self, environ: dict[str, Any], *, length: int | None) -> bytes | ApplicationError:
        """The whole body, or the error to answer instead."""
        address = client_ip_of(environ)
        began = self._begin(address)
        if began is None:
            return bodies_refusal()
        try:
            body = self._read_body(environ["wsgi.input"], length=length)
        finally:
            self._end(address, began)
        if arrived_late(began=began, ended=time.monotonic(), timeout=self.timeout):
            return RequestTimeout()
        if body is None or (length is not None and len(body) < length):
            return InvalidRequest("The body ended before its Content-Length; nothing was changed.")
        if length is None and self.limit is not None and len(body) > self.limit:
            return body_too_large()
        return body

    def _begin(self, address: str) -> float | None:
        """Count one more body of ``address`` being read, and when it began; None: refused."""
        with self._lock:
            while True:
                reading = self._reading.setdefault(address, [])
                now = time.monotonic()
                admission = body_admission(reading, now=now, cap=self.cap, patience=PATIENCE_SECONDS)
                if admission is Admission.START:
                    reading.append(now)
                    return now
                if admission is Admission.REFUSE:
                    return None
                self._waiting += 1
                try:
                    self._read_ended.wait(admission_wait(reading, now=now, patience=PATIENCE_SECONDS))
                finally:
                    self._waiting -= 1

    def _end(self, address: str, began: float) -> None:
        with self._lock:
            reading = self._reading[address]
            reading.remove(began)  # any equal start time would do: only the times count
            if not reading:
                del self._reading[address]
            if self._waiting:
                self._read_ended.notify_all()

    def _read_body(self, stream: Any, *, length: int | None) -> bytes | None:
        try:
            if length is not None:
                return stream.read(length)  # type: ignore[no-any-return]
            if self.limit is not None:
                # One byte past the limit tells a body over it from one exactly at it.
                return stream.read(self.limit + 1)  # type: ignore[no-any-return]
            return stream.read()  # type: ignore[no-any-return]
        except Exception:  # noqa: BLE001 - a connection that broke mid-body: no body
            return None

    @staticmethod
    def _refuse(environ: dict[str, Any], start_response: StartResponse, error: ApplicationError) -> Iterable[bytes]:
        """The contract's answer, and the connection closed after it: a client told to slow
        down or send again should come back on a fresh connection, and a connection whose
        body was not read cannot carry another request. (PEP 3333 leaves hop-by-hop headers
        to the server; granian passes this one on.)"""
        path = environ.get("PATH_INFO", "")
        response: HttpResponse = (
            error_json_response(error) if path.startswith(API_PREFIX) else page_error_response(error)
        )
        response["Content-Length"] = str(len(response.content))
        response["Connection"] = "close"
        start_response(f"{response.status_code} {response.reason_phrase}", [*response.items()])
        return [response.content]
