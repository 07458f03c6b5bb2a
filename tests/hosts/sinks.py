"""The operator's side of the multi-host test: the servers the stack talks to that the test
itself runs, on the machine's address on the stack's subnet.

- ``MailSink``: an SMTP server (aiosmtpd) that keeps each message it is handed as a file of
  its decoded text parts (the order confirmations the workers send, Alertmanager's alerts),
  one file a message, the way the file email backend keeps them;
- ``HookSink``: the webhook receiver Alertmanager posts its notifications to.
"""

from __future__ import annotations

import email
import email.policy
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


class _KeepMessages:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        # Written beside the directory, then moved in: who lists the directory (the verdict,
        # polling for the emails) sees a message whole or not at all.
        self.partial = directory.with_name(f"{directory.name}.partial")
        self.partial.mkdir(parents=True, exist_ok=True)
        self.count = itertools.count(1)
        self.lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        message = email.message_from_bytes(raw if isinstance(raw, bytes) else raw.encode(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        parts = [message["Subject"] or "", f"To: {', '.join(envelope.rcpt_tos)}"]
        for part in message.walk():
            if part.get_content_maintype() == "text":
                parts.append(str(part.get_content()))
        with self.lock:
            number = next(self.count)
        written = self.partial / f"{number}.tmp"
        written.write_text("\n".join(parts), encoding="utf-8")
        written.rename(self.directory / f"{number:06d}.txt")  # whole, or not there
        return "250 Message accepted for delivery"


class MailSink:
    """SMTP on ``host:port``; every message accepted becomes a file in ``directory``."""

    def __init__(self, directory: Path, *, host: str, port: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.controller = Controller(_KeepMessages(directory), hostname=host, port=port)

    def start(self) -> MailSink:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def messages(self) -> list[str]:
        return [path.read_text(encoding="utf-8") for path in sorted(self.directory.glob("*.txt"))]


@dataclass
class Notice:
    at: float  # time.monotonic() when it arrived
    path: str
    body: dict[str, Any]


@dataclass
class HookSink:
    """An HTTP server on ``host:port`` that keeps every JSON body posted to it."""

    host: str
    port: int
    notices: list[Notice] = field(default_factory=list)

    def start(self) -> HookSink:
        notices = self.notices

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                notices.append(Notice(time.monotonic(), self.path, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer((self.host, self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def firing(self, alertname: str, *, since: float = 0.0) -> Notice | None:
        """The first notice since ``since`` that says ``alertname`` fires."""
        for notice in list(self.notices):
            if notice.at < since:
                continue
            for alert in notice.body.get("alerts", []):
                if alert.get("status") == "firing" and alert.get("labels", {}).get("alertname") == alertname:
                    return notice
        return None
