"""Proof-of-work challenges: HMAC-signed, bound to a user, a scope (the caller's: a sale),
an expiry and a random nonce; the difficulty adapts to the scope's challenge rate.

Verifying needs no Redis: the signature, scope, user, expiry and solution are checked in
process, and the caller's atomic script spends the nonce (single use).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings

from core.hmac_sha256 import hmac_sha256
from core.redis_store import lua_script
from core.steps import ScriptCall, Steps
from core.strict_json import utf8_encodable

from . import keys
from .proof_of_work import solution_is_valid

CHALLENGE_SCRIPT = lua_script(Path(__file__).resolve().parent / "lua" / "challenge.lua")
CHALLENGE_VERSION = "v1"
CHALLENGE_SALT = "antibot.challenge"
MAX_CHALLENGE_LENGTH = 512
"""Longer than any challenge this server signs: a client's longer one is refused unread."""


def adaptive_difficulty(*, floor: int, rate: int) -> int:
    """Leading zero bits to ask for when the scope issues ``rate`` challenges a second.

    At or below ``ANTIBOT_POW_BASE_RATE`` a challenge costs the floor. Each doubling of the
    rate above it adds one bit, doubling the expected work per challenge, so the hashing a
    crowd must do grows with the crowd; capped at ``ANTIBOT_POW_MAX_DIFFICULTY``. A floor of
    0 (proof of work off) stays 0.
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
    key = _signing_key(settings.ANTIBOT_CHALLENGE_SECRET or settings.SECRET_KEY)
    digest = hmac_sha256(key, payload.encode())
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


@functools.cache
def _signing_key(secret: str) -> bytes:
    """Django's ``salted_hmac`` key for the challenge salt, derived once per secret instead of
    at every verification (the same signatures: ``salted_hmac(CHALLENGE_SALT, payload, secret)``)."""
    return hashlib.sha256((CHALLENGE_SALT + secret).encode()).digest()


def challenge_issue_steps(*, keyspace: str, scope_id: int, user_id: int, floor_difficulty: int) -> Steps[Challenge]:
    """Sign a fresh challenge for this user and scope, as steps (one script call that counts
    the scope's challenge rate, which raises the difficulty). Who may ask how often is the
    caller's to decide before this."""
    now_ms, rate = yield ScriptCall(CHALLENGE_SCRIPT, (keys.challenge_rate_key(keyspace),), ())
    difficulty = adaptive_difficulty(floor=floor_difficulty, rate=int(rate))
    expires_ms = int(now_ms) + settings.ANTIBOT_CHALLENGE_TTL_SECONDS * 1000
    nonce = secrets.token_urlsafe(12)
    payload = f"{CHALLENGE_VERSION}.{scope_id}.{user_id}.{expires_ms}.{difficulty}.{nonce}"
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


def challenge_verify(*, challenge: str | None, solution: str | None, scope_id: int, user_id: int, now_ms: int) -> str:
    """Check a proof of work without Redis: signature, scope, user, expiry, solution.
    Returns the challenge's nonce, which the caller's script then spends (single use).
    Raises ``ChallengeRefused``."""
    if not challenge:
        raise ChallengeRefused(
            f"missing: this sale needs a proof of work; POST /api/sales/{scope_id}/challenge/ first."
        )
    parts = challenge.split(".")
    # Ours are ASCII; anything else is forged (and hmac.compare_digest refuses non-ASCII text).
    if not challenge.isascii() or len(parts) != 7 or parts[0] != CHALLENGE_VERSION:
        raise ChallengeRefused("forged: this is not a challenge this server issued.")
    payload, signature = ".".join(parts[:6]), parts[6]
    if not hmac.compare_digest(signature, _signature(payload)):
        raise ChallengeRefused("forged: the challenge's signature does not match.")
    _, challenge_scope, challenge_user, expires_ms, difficulty, nonce = parts[:6]
    if challenge_scope != str(scope_id):
        raise ChallengeRefused("wrong sale: the challenge was issued for another sale.")
    if challenge_user != str(user_id):
        raise ChallengeRefused("wrong user: the challenge was issued to another user.")
    if now_ms >= int(expires_ms):
        raise ChallengeRefused("expired: ask for a new challenge.")
    if not solution:
        raise ChallengeRefused("wrong solution: no solution was sent.")
    if not utf8_encodable(solution):
        raise ChallengeRefused("wrong solution: it is not valid Unicode text.")
    if not solution_is_valid(challenge, solution, int(difficulty)):
        raise ChallengeRefused(f"wrong solution: the hash has fewer than {difficulty} leading zero bits.")
    return nonce
