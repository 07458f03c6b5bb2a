"""The web server's rules for request bodies, as pure functions: how a body is framed, whether
an address may begin sending one more, and whether one came too late (docs/design.md, "Slow
clients and bodies").

``core.request_bodies`` applies them; nothing here reads a clock, takes a lock, starts a
thread or reads a socket, so each rule is tested on its own (``tests/fast/``).

Framing, as HTTP says: a ``Content-Length`` is read exactly, and refused before a byte is
read when it is over the limit; ``Transfer-Encoding: chunked`` (the server has removed the
chunks, and any ``Content-Length`` with them) is read to its end, up to the limit; any other
transfer coding is refused. An HTTP/2 request gives no length when its client does not know
it: its body is read to the end of its stream. An HTTP/1 request with neither header has no
body.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

HTTP2_AND_LATER = ("HTTP/2", "HTTP/3")
PATIENCE_SECONDS = 0.05
"""A body arriving this long already is slow. Far longer than a whole body's read takes when
it came with its headers, even when its thread then waits its turn for the interpreter;
short enough that a slow address's first burst holds threads only this long."""
BODILESS_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True, slots=True)
class Framing:
    """How much of a request's body to read, or why it is refused before any is read."""

    length: int | None
    """Bytes to read; None: to the end of the body (chunked, or an HTTP/2 stream)."""
    refusal: str = ""
    too_large: bool = False


NO_BODY = Framing(0)


def body_framing(
    *, content_length: str | None, transfer_encoding: str | None, protocol: str, method: str, limit: int | None
) -> Framing:
    """The framing of a request with these CGI variables (``CONTENT_LENGTH``,
    ``HTTP_TRANSFER_ENCODING``, ``SERVER_PROTOCOL``, ``REQUEST_METHOD``); ``limit`` is the
    largest body taken (None: no limit)."""
    if transfer_encoding:
        codings = [coding.strip().lower() for coding in transfer_encoding.split(",") if coding.strip()]
        if codings != ["chunked"]:
            refusal = f"Transfer-Encoding {transfer_encoding!r} is not supported: send the body as it is, or chunked."
            return Framing(0, refusal=refusal)
        return Framing(None)
    if content_length:
        try:
            length = int(content_length)
        except ValueError:
            length = -1
        if length < 0:
            return Framing(0, refusal="Content-Length must be a number of bytes.")
        if limit is not None and length > limit:
            return Framing(0, too_large=True)
        return Framing(length) if length else NO_BODY
    if protocol.startswith(HTTP2_AND_LATER) and method not in BODILESS_METHODS:
        return Framing(None)
    return NO_BODY


class Admission(Enum):
    START = "start"
    WAIT = "wait"
    REFUSE = "refuse"


def body_admission(reading: Sequence[float], *, now: float, cap: int, patience: float) -> Admission:
    """May an address whose bodies being read by this process began at ``reading`` (seconds)
    begin one more? Below ``cap`` (0: no limit), yes. At it, no when one of them has been
    arriving for ``patience`` already: that address sends slowly. Otherwise they are all
    fresh, as a busy client's are when their threads wait for the interpreter after the body
    came: wait for one to end (``admission_wait``), at most until one turns ``patience`` old."""
    if cap <= 0 or len(reading) < cap:
        return Admission.START
    if any(began + patience <= now for began in reading):
        return Admission.REFUSE
    return Admission.WAIT


def admission_wait(reading: Sequence[float], *, now: float, patience: float) -> float:
    """Seconds until the oldest of ``reading`` turns ``patience`` old: how long a ``WAIT``
    may last before it is decided again."""
    return max(0.0, min(reading) + patience - now)


def arrived_late(*, began: float, ended: float, timeout: float) -> bool:
    """A body whose read began at ``began`` and ended at ``ended`` (seconds) took longer than
    ``timeout`` to arrive (0: no deadline)."""
    return timeout > 0 and ended - began > timeout
