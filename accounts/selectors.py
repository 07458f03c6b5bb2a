"""Who is asking, answered without SQL on the purchase path.

An access token (``accounts.tokens``) is verified in process: its signature, its expiry and
the revoked set this process keeps (``accounts.revocation``); no Redis, no SQL. A session
cookie costs a read of the session (Django's cache, one Redis round trip) and the session's
password hash, checked against a short-lived in-process table, then the cache, and only
then PostgreSQL.
"""

from __future__ import annotations

import threading

from cachetools import TTLCache
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.core.cache import cache
from django.http import HttpRequest
from django.middleware.csrf import CsrfViewMiddleware
from django.utils.crypto import constant_time_compare

from core.errors import Forbidden, Unauthenticated
from core.events import event_listener
from core.process_state import forgets_process_state

from .revocation import revocations
from .tokens import TokenRefused, access_token_verify

AUTHORIZATION_SCHEMES = ("Token", "Bearer")
LOCAL_TTL_SECONDS = 30.0
CACHE_TTL_SECONDS = 3600
_LOCAL_MAX_ENTRIES = 200_000
# Request threads share these tables; cachetools' caches are not thread-safe on their own.
_lock = threading.Lock()
_session_hashes: TTLCache[int, str] = TTLCache(maxsize=_LOCAL_MAX_ENTRIES, ttl=LOCAL_TTL_SECONDS)


def session_hash_cache_key(user_id: int) -> str:
    return f"auth:session-hash:{int(user_id)}"


def user_id_for_token(token: str) -> int:
    """The user an access token names, checked in process. Raises ``Unauthenticated``."""
    try:
        claims = access_token_verify(token)
    except TokenRefused as refused:
        raise Unauthenticated(str(refused)) from None
    event_listener.ensure_running()  # Revocations arrive through it.
    # While this process is not listening (starting, or Redis away) it may have missed a
    # revocation: it asks Redis instead, one call, rather than trust what it knows.
    revoked = revocations.refuses(claims) if event_listener.live else revocations.refuses_in_redis(claims)
    if revoked:
        raise Unauthenticated("The token was revoked; ask for a new one.")
    return claims.user_id


def session_auth_hash(user_id: int) -> str | None:
    """The hash Django stores in a session at login; it changes with the password."""
    with _lock:
        hit = _session_hashes.get(user_id)
    if hit is not None:
        return hit or None
    value = cache.get(session_hash_cache_key(user_id))
    if value is None:
        user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
        value = user.get_session_auth_hash() if user is not None else ""
        cache.set(session_hash_cache_key(user_id), value, CACHE_TTL_SECONDS)
    with _lock:
        _session_hashes[user_id] = value
    return value or None


def user_id_for_session(request: HttpRequest) -> int | None:
    """The user logged in to this request's session (same checks as ``auth.get_user``)."""
    session = request.session
    raw_id = session.get(SESSION_KEY)
    if raw_id is None:
        return None
    try:
        user_id = int(raw_id)
    except (TypeError, ValueError):
        return None
    expected = session_auth_hash(user_id)
    given = session.get(HASH_SESSION_KEY)
    if expected is None or not given or not constant_time_compare(given, expected):
        return None
    return user_id


@forgets_process_state
def forget_local_identities() -> None:
    """Drop this process's in-memory tables (tests, and after a mass revocation)."""
    with _lock:
        _session_hashes.clear()


def _csrf_refusal(request: HttpRequest) -> str | None:
    """The CSRF check DRF's SessionAuthentication makes: a reason to refuse, or None."""

    def no_view(_: HttpRequest) -> None:  # pragma: no cover - never called by process_view
        return None

    check = CsrfViewMiddleware(no_view)  # type: ignore[arg-type]
    check.process_request(request)
    refusal = check.process_view(request, None, (), {})  # type: ignore[arg-type]
    if refusal is None:
        return None
    return getattr(refusal, "reason_phrase", "CSRF check failed")


def request_user_id(request: HttpRequest) -> int:
    """The caller's user id, from ``Authorization: Token <token>`` (or ``Bearer <token>``) or
    the session cookie (which must carry a CSRF token, as every cookie-authenticated write
    does).

    Raises ``Unauthenticated`` (401) or ``Forbidden`` (403, CSRF).
    """
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header:
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme not in AUTHORIZATION_SCHEMES or not token or " " in token:
            raise Unauthenticated("Send Authorization: Token <token>.")
        return user_id_for_token(token)
    user_id = user_id_for_session(request)
    if user_id is None:
        raise Unauthenticated()
    if _csrf_refusal(request) is not None:
        raise Forbidden("CSRF check failed: send the csrftoken cookie's value as X-CSRFToken.")
    return user_id
