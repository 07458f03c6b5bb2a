"""Admission control and anti-bot measures on the purchase path.

- Proof of work: HMAC-signed challenges bound to user, sale, expiry and a random nonce; the
  difficulty adapts to the sale's challenge rate (``adaptive_difficulty``).
- Per-user and per-IP windows and the sale's token bucket run inside the purchase script
  (one round trip); this module supplies their settings.
- Idempotency-Key: the first answer for a key is stored and replayed (IETF httpapi draft).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils.crypto import salted_hmac

from flashsale_project.api_errors import ApplicationError, InvalidRequest
from flashsale_project.redis_store import LuaScript, inventory_redis
from sales import keys
from sales.inventory import AdmissionLimits

from .proof_of_work import solution_is_valid

_LUA = Path(__file__).resolve().parent / "lua"
CHALLENGE_SCRIPT = LuaScript(_LUA / "challenge.lua")
IDEMPOTENCY_BEGIN_SCRIPT = LuaScript(_LUA / "idempotency_begin.lua")

CHALLENGE_VERSION = "v1"


def admission_limits() -> AdmissionLimits:
    return AdmissionLimits(
        user_limit=settings.ANTIBOT_USER_LIMIT,
        ip_limit=settings.ANTIBOT_IP_LIMIT,
        window_seconds=settings.ANTIBOT_RATE_WINDOW_SECONDS,
        challenge_ttl_seconds=settings.ANTIBOT_CHALLENGE_TTL_SECONDS,
    )


# --- Proof of work -----------------------------------------------------------------------


class RateLimited(ApplicationError):
    http_status = 429
    code = "RATE_LIMITED"

    def __init__(self, retry_after_ms: int) -> None:
        seconds = max(1, math.ceil(retry_after_ms / 1000))
        super().__init__(f"Too many attempts; try again in {seconds} s.", headers={"Retry-After": str(seconds)})


def adaptive_difficulty(*, floor: int, rate: int) -> int:
    """Leading zero bits to ask for when the sale issues ``rate`` challenges a second.

    At or below ``ANTIBOT_POW_BASE_RATE`` a challenge costs the sale's floor. Each doubling
    of the rate above it adds one bit, doubling the expected work per challenge, so the
    hashing a crowd must do grows with the crowd; capped at ``ANTIBOT_POW_MAX_DIFFICULTY``.
    A floor of 0 (proof of work off) stays 0.
    """
    if floor <= 0:
        return 0
    base = settings.ANTIBOT_POW_BASE_RATE
    extra = math.ceil(math.log2(rate / base)) if rate > base else 0
    return max(floor, min(floor + extra, settings.ANTIBOT_POW_MAX_DIFFICULTY))


@dataclass(frozen=True)
class Challenge:
    challenge: str
    difficulty: int
    expires_at: datetime


def _signature(payload: str) -> str:
    secret = settings.ANTIBOT_CHALLENGE_SECRET or settings.SECRET_KEY
    digest = salted_hmac("antibot.challenge", payload, secret=secret, algorithm="sha256").digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def challenge_issue(*, sale_id: int, user_id: int, floor_difficulty: int, client_ip: str = "") -> Challenge:
    """Sign a fresh challenge for this user and sale. Raises ``RateLimited`` when the user or
    IP is over its window (the same windows purchases count)."""
    limits = admission_limits()
    rate_key = keys.challenge_rate_key(sale_id)
    script_keys = [
        rate_key,
        keys.user_rate_key(sale_id, user_id) if limits.user_limit else rate_key,
        keys.ip_rate_key(sale_id, client_ip) if limits.ip_limit and client_ip else rate_key,
    ]
    status, rate, now_ms, retry_after_ms = CHALLENGE_SCRIPT(
        inventory_redis(),
        script_keys,
        [limits.user_limit, limits.ip_limit if client_ip else 0, limits.window_seconds],
    )
    if status == "RATE_LIMITED":
        raise RateLimited(int(retry_after_ms))
    difficulty = adaptive_difficulty(floor=floor_difficulty, rate=int(rate))
    expires_ms = int(now_ms) + settings.ANTIBOT_CHALLENGE_TTL_SECONDS * 1000
    nonce = secrets.token_urlsafe(12)
    payload = f"{CHALLENGE_VERSION}.{sale_id}.{user_id}.{expires_ms}.{difficulty}.{nonce}"
    return Challenge(
        challenge=f"{payload}.{_signature(payload)}",
        difficulty=difficulty,
        expires_at=datetime.fromtimestamp(expires_ms / 1000, tz=UTC),
    )


class ChallengeRefused(Exception):
    """Why a proof of work does not count; ``reason`` starts with the contract's word."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def challenge_verify(*, challenge: str | None, solution: str | None, sale_id: int, user_id: int, now_ms: int) -> str:
    """Check a proof of work without Redis: signature, sale, user, expiry, solution.
    Returns the challenge's nonce, which the purchase script then spends (single use).
    Raises ``ChallengeRefused``."""
    if not challenge:
        raise ChallengeRefused(f"missing: this sale needs a proof of work; POST /api/sales/{sale_id}/challenge/ first.")
    parts = challenge.split(".")
    if len(parts) != 7 or parts[0] != CHALLENGE_VERSION:
        raise ChallengeRefused("forged: this is not a challenge this server issued.")
    payload, signature = ".".join(parts[:6]), parts[6]
    if not hmac.compare_digest(signature, _signature(payload)):
        raise ChallengeRefused("forged: the challenge's signature does not match.")
    _, challenge_sale, challenge_user, expires_ms, difficulty, nonce = parts[:6]
    if challenge_sale != str(sale_id):
        raise ChallengeRefused("wrong sale: the challenge was issued for another sale.")
    if challenge_user != str(user_id):
        raise ChallengeRefused("wrong user: the challenge was issued to another user.")
    if now_ms >= int(expires_ms):
        raise ChallengeRefused("expired: ask for a new challenge.")
    if not solution:
        raise ChallengeRefused("wrong solution: no solution was sent.")
    if not solution_is_valid(challenge, solution, int(difficulty)):
        raise ChallengeRefused(f"wrong solution: the hash has fewer than {difficulty} leading zero bits.")
    return nonce


# --- Idempotency-Key ------------------------------------------------------------------------


class IdempotencyKeyReused(ApplicationError):
    http_status = 422
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


def idempotency_begin(*, sale_id: int, user_id: int, request: IdempotentRequest) -> dict[str, Any] | None:
    """Claim the key for this request. Returns None when this request holds it now, or the
    record already stored: an earlier answer to replay, or ``{"status": "IN_FLIGHT"}`` while
    the first request is still being answered. Raises ``IdempotencyKeyReused`` when the key
    came with another request."""
    in_flight = json.dumps({"fingerprint": request.fingerprint, "status": "IN_FLIGHT"})
    held = IDEMPOTENCY_BEGIN_SCRIPT(
        inventory_redis(),
        [keys.idempotency_key(sale_id, user_id, request.digest)],
        [in_flight, settings.ANTIBOT_IDEMPOTENCY_IN_FLIGHT_SECONDS],
    )
    if not held:
        return None
    record: dict[str, Any] = json.loads(held)
    if record.get("fingerprint") != request.fingerprint:
        raise IdempotencyKeyReused()
    return record


def idempotency_finish(*, sale_id: int, user_id: int, request: IdempotentRequest, record: dict[str, Any]) -> None:
    """Store an answer decided before the purchase script (which stores its own)."""
    inventory_redis().set(
        keys.idempotency_key(sale_id, user_id, request.digest),
        json.dumps({"fingerprint": request.fingerprint, **record}),
        ex=settings.ANTIBOT_IDEMPOTENCY_TTL_SECONDS,
    )


def idempotency_release(*, sale_id: int, user_id: int, request: IdempotentRequest) -> None:
    """Drop the in-flight claim of a request that ended in an error, so a corrected retry
    with the same key is not refused."""
    inventory_redis().delete(keys.idempotency_key(sale_id, user_id, request.digest))
