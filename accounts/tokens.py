"""Signed, expiring access tokens, verified in process: no Redis and no SQL per request.

A token is ``v1.<key id>.<user id>.<issued ms>.<expires s>.<signature>``, the signature an
HMAC-SHA256 of everything before it under the key named by the key id. It is what
``/api/auth/register/`` and ``/api/auth/token/`` answer in their ``token`` field, sent as
``Authorization: Token <token>`` (or ``Bearer <token>``).

Revocation (docs/accounts.md):

- expiry: ``ACCESS_TOKEN_LIFETIME_SECONDS`` (one hour by default), judged by this process's
  clock at every request;
- key rotation: ``ACCESS_TOKEN_KEYS`` lists the keys that verify, the first one signs;
  removing a key refuses every token it signed, at once, in every process that restarts
  with the new list;
- a revoked-token set: revoking a user refuses every token issued to them before that
  instant, pushed to every process by pub/sub (``accounts.revocation``).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from core.hmac_sha256 import hmac_sha256

TOKEN_VERSION = "v1"
MAX_TOKEN_LENGTH = 200
_KEY_SALT = b"flashsale.accounts.access-token"


@dataclass(frozen=True, slots=True)
class AccessToken:
    token: str
    user_id: int
    issued_at_ms: int
    expires_at: int


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a verified token says: who, and when it was issued (for revocation)."""

    user_id: int
    issued_at_ms: int
    expires_at: int


class TokenRefused(Exception):
    """Why a token does not identify anyone; the message is the API's ``detail``."""


@functools.cache
def _signing_keys(configured: tuple[str, ...], fallback_secret: str) -> tuple[tuple[str, bytes], ...]:
    """(key id, derived key) pairs, the signing key first. Each configured entry is
    ``<key id>:<secret>``; none configured means one key derived from ``SECRET_KEY``."""
    entries = configured or (f"k1:{fallback_secret}",)
    keys = []
    for entry in entries:
        key_id, separator, secret = entry.partition(":")
        if not separator or not key_id.isalnum() or not secret:
            raise ImproperlyConfigured("ACCESS_TOKEN_KEYS: each entry is <key id>:<secret>, the key id alphanumeric.")
        keys.append((key_id, hashlib.sha256(_KEY_SALT + secret.encode()).digest()))
    return tuple(keys)


def _keys() -> tuple[tuple[str, bytes], ...]:
    return _signing_keys(tuple(settings.ACCESS_TOKEN_KEYS), settings.SECRET_KEY)


def _keys_by_id() -> dict[str, bytes]:
    return _verifying_keys(_keys())


@functools.cache
def _verifying_keys(keys: tuple[tuple[str, bytes], ...]) -> dict[str, bytes]:
    return dict(keys)


def _signature(key: bytes, payload: str) -> str:
    digest = hmac_sha256(key, payload.encode("ascii"))
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def access_token_issue(*, user_id: int, now: float | None = None) -> AccessToken:
    """A fresh token for the user, signed with the first key."""
    moment = now if now is not None else time.time()
    issued_ms = int(moment * 1000)
    expires = int(moment) + settings.ACCESS_TOKEN_LIFETIME_SECONDS
    key_id, key = _keys()[0]
    payload = f"{TOKEN_VERSION}.{key_id}.{int(user_id)}.{issued_ms}.{expires}"
    return AccessToken(f"{payload}.{_signature(key, payload)}", int(user_id), issued_ms, expires)


def access_token_verify(token: str, *, now: float | None = None) -> TokenClaims:
    """The claims of a token this site signed and that has not expired. Raises
    ``TokenRefused``. Revocation is the caller's second check (``accounts.revocation``)."""
    if len(token) > MAX_TOKEN_LENGTH or not token.isascii():
        raise TokenRefused("The token is not valid.")
    parts = token.split(".")
    if len(parts) != 6 or parts[0] != TOKEN_VERSION:
        raise TokenRefused("The token is not valid.")
    _, key_id, user, issued, expires, signature = parts
    key = _keys_by_id().get(key_id)
    if key is None:
        raise TokenRefused("The token was signed with a retired key; ask for a new one.")
    if not hmac.compare_digest(signature, _signature(key, token[: -len(signature) - 1])):
        raise TokenRefused("The token is not valid.")
    # Signed by us, so the numbers are ours; still, a malformed one is refused, not a crash.
    if not (user.isdigit() and issued.isdigit() and expires.isdigit()):
        raise TokenRefused("The token is not valid.")
    if (now if now is not None else time.time()) >= int(expires):
        raise TokenRefused("The token has expired; ask for a new one.")
    return TokenClaims(user_id=int(user), issued_at_ms=int(issued), expires_at=int(expires))
