"""Idempotency-Key (IETF httpapi draft semantics): the first answer for a key is stored and
replayed; the same key with another request is refused; a request still being answered holds
the key for a bounded time. The caller names the record's Redis key (``keys``), so the record
lives beside the data the request changes."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from core.errors import ApplicationError, InvalidRequest
from core.redis_store import lua_script
from core.steps import CommandCall, ScriptCall

IDEMPOTENCY_BEGIN_SCRIPT = lua_script(Path(__file__).resolve().parent / "lua" / "idempotency_begin.lua")


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


def idempotency_begin_call(*, record_key: str, request: IdempotentRequest) -> ScriptCall:
    """Claim the key for this request (``lua/idempotency_begin.lua``); read the reply with
    ``idempotency_held``."""
    in_flight = json.dumps({"fingerprint": request.fingerprint, "status": "IN_FLIGHT"})
    return ScriptCall(
        IDEMPOTENCY_BEGIN_SCRIPT, (record_key,), (in_flight, settings.ANTIBOT_IDEMPOTENCY_IN_FLIGHT_SECONDS)
    )


def idempotency_held(reply: str | None, *, request: IdempotentRequest) -> dict[str, Any] | None:
    """None when this request holds the key now; otherwise the record already stored: an
    earlier answer to replay, or ``{"status": "IN_FLIGHT"}`` while the first request is still
    being answered. Raises ``IdempotencyKeyReused`` when the key came with another request."""
    if not reply:
        return None
    record: dict[str, Any] = json.loads(reply)
    if record.get("fingerprint") != request.fingerprint:
        raise IdempotencyKeyReused()
    return record


def idempotency_finish_call(*, record_key: str, request: IdempotentRequest, record: dict[str, Any]) -> CommandCall:
    """Store an answer decided outside the caller's script (which stores its own)."""
    stored = json.dumps({"fingerprint": request.fingerprint, **record})
    return CommandCall(("SET", record_key, stored, "EX", settings.ANTIBOT_IDEMPOTENCY_TTL_SECONDS))


def idempotency_release_call(*, record_key: str) -> CommandCall:
    """Drop the in-flight claim of a request that ended in an error, so a corrected retry
    with the same key is not refused."""
    return CommandCall(("DEL", record_key))
