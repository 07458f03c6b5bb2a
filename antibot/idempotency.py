"""Idempotency-Key (IETF httpapi draft semantics): a request carrying a key is named by the
key's digest and fingerprinted by its method, path and body; the same key with another
request is refused (422). Which answers are kept, where and for how long is the caller's to
decide (a sale keeps final answers only, in its own keyspace: ``keys.idempotency_records_key``)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from core.errors import ApplicationError, InvalidRequest


class IdempotencyKeyReused(ApplicationError):
    code = "IDEMPOTENCY_KEY_REUSED"
    default_detail = "This Idempotency-Key was used with a different request body; use a new key."


@dataclass(frozen=True, slots=True)
class IdempotentRequest:
    """A request carrying an Idempotency-Key: the key's digest and the request's fingerprint."""

    digest: str
    fingerprint: str

    @classmethod
    def from_header(cls, key: str, *, method: str, path: str, body: bytes) -> IdempotentRequest:
        if not 1 <= len(key) <= 255 or not key.isascii() or not key.isprintable():
            raise InvalidRequest("Idempotency-Key must be 1 to 255 printable ASCII characters.")
        fingerprint = hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()
        return cls(digest=hashlib.sha256(key.encode()).hexdigest()[:32], fingerprint=fingerprint)
