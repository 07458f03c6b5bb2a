"""HMAC-SHA256 that keeps the GIL: the same digest as ``hmac.digest(key, msg, "sha256")``.

``hmac.digest`` (``_hashlib.hmac_digest``) releases the GIL around OpenSSL's ``HMAC()`` on
every call. A web process's request threads take turns at one GIL, so each release of a
microsecond's work hands the interpreter to another thread and queues this one behind it: on
the hot path, where a token (and a challenge, or a queue pass) is verified per request, that
wait was the largest item of a "no" under load (docs/purchase-path.md, "What a 'no' costs").
Here the key's inner and outer pads are hashed once per key (RFC 2104), and each message
costs two ``copy()``/``update()``/``digest()`` of ``hashlib.sha256`` objects, which hold the
GIL for messages under 2,048 bytes (longer ones release it, as ``hashlib`` does).
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

_BLOCK = 64  # SHA-256's block size
_INNER = bytes(byte ^ 0x36 for byte in range(256))
_OUTER = bytes(byte ^ 0x5C for byte in range(256))


@functools.lru_cache(maxsize=64)
def _pads(key: bytes) -> tuple[Any, Any]:
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    return hashlib.sha256(key.translate(_INNER)), hashlib.sha256(key.translate(_OUTER))


def hmac_sha256(key: bytes, msg: bytes) -> bytes:
    """``hmac.digest(key, msg, "sha256")``, without releasing the GIL for a short message."""
    inner_pad, outer_pad = _pads(key)
    inner = inner_pad.copy()
    inner.update(msg)
    outer = outer_pad.copy()
    outer.update(inner.digest())
    return outer.digest()  # type: ignore[no-any-return]
