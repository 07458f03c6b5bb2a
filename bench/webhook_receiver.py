"""A webhook receiver on loopback for the benchmark (``bench/webhooks_cost.py``): every POST
is answered 200 with an empty body and counted, with how many carried a ``webhook-signature``
and how many distinct (path, ``webhook-id``) pairs came (one path per endpoint: fewer pairs
than posts is an event delivered twice to one endpoint); ``GET /count`` returns the counts
as JSON.
Imports nothing from Django.

    python -m bench.webhook_receiver --port 8123
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.posts = 0
        self.signed = 0
        self.ids: set[tuple[str, str]] = set()
        """(path, webhook-id): each endpoint has a path of its own."""


def _handler(counts: _Counts) -> type[BaseHTTPRequestHandler]:
    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            with counts.lock:
                counts.posts += 1
                counts.signed += bool(self.headers.get("webhook-signature"))
                counts.ids.add((self.path, self.headers.get("webhook-id") or ""))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            with counts.lock:
                body = json.dumps(
                    {"posts": counts.posts, "signed": counts.signed, "distinct_ids": len(counts.ids)}
                ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Receiver


def main() -> int:
    parser = argparse.ArgumentParser(description="a webhook receiver on loopback: every POST answered 200, counted")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), _handler(_Counts()))
    server.daemon_threads = True
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
