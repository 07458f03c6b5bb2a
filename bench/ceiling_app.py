"""The HTTP ceiling: a bare WSGI callable, no Django, answering one fixed JSON body.

``make bench`` serves it with the web process's own command line (``devstack.procfile``:
granian, the same workers x threads and backpressure), only the app target differing, so its
row is what this machine's server can do with no application at all. Every HTTP path is
reported as a share of it beside the Django control: a ratio that carries to another machine,
where an absolute number does not.

It reads the request body, as the purchase view and the control do, and answers as the
control does (200, ``application/json``, a small fixed body).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

BODY = b'{"status":"OK","detail":"the WSGI ceiling: no Django"}'
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    length = environ.get("CONTENT_LENGTH")
    if length:
        environ["wsgi.input"].read(int(length))
    start_response("200 OK", HEADERS)
    return [BODY]
