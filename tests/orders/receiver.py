"""A real HTTP receiver for webhooks, on loopback, that the tests start, stop and steer.

It verifies every request with the Standard Webhooks library and the endpoint's secret,
keeps each one (headers, body, when, what it answered), and answers as the test tells it:
accept (204), refuse with a status, or hold the request open until released. Stopping it
closes its socket, so a delivery meets a refused connection, as with a receiver that is down.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError

from devstack.localservers import free_port


@dataclass
class Received:
    webhook_id: str
    timestamp: str
    signature: str
    body: str
    signed: bool
    at: float
    answered: int | None = None

    @property
    def document(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    @property
    def type(self) -> str:
        return str(self.document["type"])

    @property
    def order_id(self) -> str:
        return str(self.document["data"]["order"]["id"])


Answer = Callable[[Received], int | None]
"""What to answer a request: a status code, or None to hold it until ``release()``."""


@dataclass
class Receiver:
    secret: str
    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    answer: Answer = lambda request: 204
    _server: ThreadingHTTPServer | None = None
    _released: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                headers = {name.lower(): value for name, value in self.headers.items()}
                try:
                    Webhook(receiver.secret).verify(body, headers, json_parse=False)
                    signed = True
                except WebhookVerificationError:
                    signed = False
                request = Received(
                    webhook_id=headers.get("webhook-id", ""),
                    timestamp=headers.get("webhook-timestamp", ""),
                    signature=headers.get("webhook-signature", ""),
                    body=body,
                    signed=signed,
                    at=time.monotonic(),
                )
                with receiver._lock:
                    receiver.received.append(request)
                status = receiver.answer(request)
                if status is None:
                    receiver._released.wait(timeout=120)
                    status = 204
                # Kept before the answer goes out: the sender may act on it (mark the delivery
                # done) before this thread runs again.
                request.answered = status
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:  # The sender went away (a worker killed mid-request).
                    request.answered = None

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def release(self) -> None:
        self._released.set()

    def requests(self, *, webhook_id: str | None = None) -> list[Received]:
        with self._lock:
            return [one for one in self.received if webhook_id is None or one.webhook_id == webhook_id]

    def accepted(self) -> list[Received]:
        """Requests answered 2xx, in the order they arrived."""
        return [one for one in self.requests() if one.answered is not None and 200 <= one.answered < 300]
