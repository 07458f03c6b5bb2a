"""Who is asking, answered without SQL on the purchase path.

An access token (``accounts.tokens``) is verified in process: its signature, its expiry and
the revoked set this process keeps (``accounts.revocation``); no Redis, no SQL. A session
cookie costs a read of the session (Django's cache, one Redis round trip) and the session's
password hash, checked against a short-lived in-process table, then the cache, and only
then PostgreSQL.

The in-process tables (session hashes; the TCP gateway's active users) are only as fresh as
the revocations this process heard: each entry keeps the user's "not before" from when it
was read, and is read again once a revocation moved it (a deactivation, a password change:
``accounts.services.user_access_revoke``), so a revocation's one message drops them in every
process with no extra round trip here. A read that overlapped a revocation keeps no mark
(``_UNMARKED``): it is read again on its next use.
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
from core.events import subscription
from core.process_state import forgets_process_state
from core.steps import DatabaseWork, Steps
from core.strict_json import utf8_encodable

from .revocation import not_before_of_record, refused_by_record, revocation_record_call, revocations
from .tokens import TokenClaims, TokenRefused, access_token_verify

AUTHORIZATION_SCHEMES = ("Token", "Bearer")
LOCAL_TTL_SECONDS = 30.0
CACHE_TTL_SECONDS = 3600
_LOCAL_MAX_ENTRIES = 200_000
# Request threads share these tables; cachetools' caches are not thread-safe on their own.
_lock = threading.Lock()
# user id -> (session hash, "" for no active user; the user's "not before" when it was read).
_session_hashes: TTLCache[int, tuple[str, int]] = TTLCache(maxsize=_LOCAL_MAX_ENTRIES, ttl=LOCAL_TTL_SECONDS)
# A gateway's user reference (id or username) -> (user id, 0 for no active user; "not before").
_gateway_users: TTLCache[str, tuple[int, int]] = TTLCache(maxsize=_LOCAL_MAX_ENTRIES, ttl=LOCAL_TTL_SECONDS)
_UNMARKED = -1
MAX_USER_REFERENCE_LENGTH = 150  # Django's username length


def session_hash_cache_key(user_id: int) -> str:
    return f"auth:session-hash:{int(user_id)}"


def _verified(token: str) -> TokenClaims:
    try:
        claims = access_token_verify(token)
    except TokenRefused as refused:
        raise Unauthenticated(str(refused)) from None
    return claims


def user_id_for_token_steps(token: str) -> Steps[int]:
    """``user_id_for_token`` as steps (``core.steps``), for an asyncio server: no round trip
    while the subscription is live, one ``HGET`` while it is not."""
    claims = _verified(token)
    if subscription.live:
        revoked = revocations.refuses(claims)
    else:
        revoked = refused_by_record(claims, (yield revocation_record_call(claims.user_id)))
    if revoked:
        raise Unauthenticated("The token was revoked; ask for a new one.")
    return claims.user_id


def user_id_for_token(token: str) -> int:
    """The user an access token names, checked in process. Raises ``Unauthenticated``."""
    claims = _verified(token)
    # While this process is not listening (starting, or Redis away) it may have missed a
    # revocation: it asks Redis instead, one call, rather than trust what it knows.
    revoked = revocations.refuses(claims) if subscription.live else revocations.refuses_in_redis(claims)
    if revoked:
        raise Unauthenticated("The token was revoked; ask for a new one.")
    return claims.user_id


def _mark_after(read_began: int, user_id: int) -> int:
    """The mark of something of ``user_id`` read while ``revocations.heard_count`` was
    ``read_began``: the user's "not before", unless a revocation was heard meanwhile."""
    return revocations.not_before(user_id) if revocations.heard_count == read_began else _UNMARKED


def _not_before_steps(user_id: int) -> Steps[int]:
    """The user's "not before": from memory while the subscription is live, else one ``HGET``
    (a process not listening may have missed a revocation)."""
    if subscription.live:
        return revocations.not_before(user_id)
    return max(revocations.not_before(user_id), not_before_of_record((yield revocation_record_call(user_id))))


def user_id_for_gateway_steps(reference: str | int) -> Steps[int]:
    """The active user a trusted gateway names (the TCP door's trusted mode): a user id (a
    number, or digits) or a username. Checked against PostgreSQL once per reference and
    process every ``LOCAL_TTL_SECONDS`` (a ``DatabaseWork`` step), so a win always names a user
    whose order row can exist, and again as soon as the user is revoked (no round trip while
    the subscription is live, one ``HGET`` while it is not). Raises ``Unauthenticated``."""
    if isinstance(reference, bool) or not isinstance(reference, str | int):
        raise Unauthenticated("user_id must be a user id or a username.")
    key = str(reference)
    if not key or len(key) > MAX_USER_REFERENCE_LENGTH or not key.isprintable() or not utf8_encodable(key):
        raise Unauthenticated("user_id must be a user id or a username.")
    with _lock:
        known = _gateway_users.get(key)
    if known is not None:
        user_id, mark = known
        if not user_id:
            raise Unauthenticated(f"No active user {key!r}.")
        if (yield from _not_before_steps(user_id)) <= mark:
            return user_id
    read_began = revocations.heard_count
    user_id = yield DatabaseWork(lambda: _gateway_user_lookup(key))
    with _lock:
        _gateway_users[key] = (user_id, _mark_after(read_began, user_id))
    if not user_id:
        raise Unauthenticated(f"No active user {key!r}.")
    return user_id


def _gateway_user_lookup(key: str) -> int:
    users = get_user_model().objects.filter(is_active=True)
    if key.isdigit() and key.isascii():
        found = users.filter(pk=int(key)).values_list("pk", flat=True).first() if int(key) < 2**63 else None
    else:
        found = users.filter(username=key).values_list("pk", flat=True).first()
    return int(found or 0)


def session_auth_hash(user_id: int) -> str | None:
    """The hash Django stores in a session at login; it changes with the password. None for
    no active user. The in-process table is trusted only while the subscription is live."""
    if subscription.live:
        with _lock:
            hit = _session_hashes.get(user_id)
        if hit is not None and revocations.not_before(user_id) <= hit[1]:
            return hit[0] or None
    read_began = revocations.heard_count
    value = cache.get(session_hash_cache_key(user_id))
    if value is None:
        user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
        value = user.get_session_auth_hash() if user is not None else ""
        # add, not set: a revocation's fresh value, written meanwhile, wins over this read.
        cache.add(session_hash_cache_key(user_id), value, CACHE_TTL_SECONDS)
    with _lock:
        _session_hashes[user_id] = (value, _mark_after(read_began, user_id))
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
        _gateway_users.clear()


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
