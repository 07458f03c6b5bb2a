"""Who is asking, answered without SQL on the purchase path.

A token or a session resolves to a user id through a short-lived in-process table, then
Django's cache (Redis), and only then PostgreSQL; every answer from PostgreSQL is written
back to the cache. Revoking a token deletes its cache entry; a process keeps what it knew
for at most ``LOCAL_TTL_SECONDS``.
"""

from __future__ import annotations

import hashlib
import threading

from cachetools import TTLCache
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.core.cache import cache
from django.http import HttpRequest
from django.middleware.csrf import CsrfViewMiddleware
from django.utils.crypto import constant_time_compare
from rest_framework.authtoken.models import Token

from core.errors import Forbidden, Unauthenticated
from core.process_state import forgets_process_state

LOCAL_TTL_SECONDS = 30.0
CACHE_TTL_SECONDS = 3600
_LOCAL_MAX_ENTRIES = 200_000
_MISSING = -1  # cached "no such token / inactive user", so a bad token cannot hammer SQL

# Request threads share these tables; cachetools' caches are not thread-safe on their own.
_lock = threading.Lock()
_tokens: TTLCache[str, int] = TTLCache(maxsize=_LOCAL_MAX_ENTRIES, ttl=LOCAL_TTL_SECONDS)
_session_hashes: TTLCache[int, str] = TTLCache(maxsize=_LOCAL_MAX_ENTRIES, ttl=LOCAL_TTL_SECONDS)


def token_cache_key(token_key: str) -> str:
    return "auth:token:" + hashlib.sha256(token_key.encode()).hexdigest()


def session_hash_cache_key(user_id: int) -> str:
    return f"auth:session-hash:{int(user_id)}"


def user_id_for_token(token_key: str) -> int | None:
    """The active user owning ``token_key``, or None."""
    with _lock:
        hit = _tokens.get(token_key)
    if hit is not None:
        return hit if hit != _MISSING else None
    user_id = cache.get(token_cache_key(token_key))
    if user_id is None:
        row = Token.objects.filter(key=token_key, user__is_active=True).values_list("user_id", flat=True).first()
        user_id = row if row is not None else _MISSING
        cache.set(token_cache_key(token_key), user_id, CACHE_TTL_SECONDS if row else 60)
    with _lock:
        _tokens[token_key] = int(user_id)
    return int(user_id) if user_id != _MISSING else None


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
        _tokens.clear()
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
    """The caller's user id, from ``Authorization: Token <key>`` or the session cookie
    (which must carry a CSRF token, as every cookie-authenticated write does).

    Raises ``Unauthenticated`` (401) or ``Forbidden`` (403, CSRF).
    """
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header:
        scheme, _, token_key = header.partition(" ")
        token_key = token_key.strip()
        if scheme != "Token" or not token_key or len(token_key) > 64 or " " in token_key:
            raise Unauthenticated("Send Authorization: Token <key>.")
        user_id = user_id_for_token(token_key)
        if user_id is None:
            raise Unauthenticated("The token is not valid.")
        return user_id
    user_id = user_id_for_session(request)
    if user_id is None:
        raise Unauthenticated()
    if _csrf_refusal(request) is not None:
        raise Forbidden("CSRF check failed: send the csrftoken cookie's value as X-CSRFToken.")
    return user_id
