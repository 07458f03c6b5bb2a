"""Writes of the accounts app: shoppers, their access tokens, revocation.

Revocation (docs/accounts.md) has one entry point, ``user_access_revoke``: the services here
call it, and a save of the user row that deactivates the user or changes their password
calls it too (``accounts.receivers``), whichever route made the save.
"""

from __future__ import annotations

import functools
import secrets
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import transaction

from .revocation import user_tokens_revoke
from .selectors import CACHE_TTL_SECONDS, session_hash_cache_key
from .tokens import access_token_issue


@dataclass(frozen=True)
class IssuedToken:
    user_id: int
    username: str
    token: str
    expires_at: int


def token_issue(*, user: User) -> IssuedToken:
    """A fresh signed access token for the user: nothing is stored, the purchase path
    verifies it in process."""
    issued = access_token_issue(user_id=user.pk)
    return IssuedToken(user_id=user.pk, username=user.get_username(), token=issued.token, expires_at=issued.expires_at)


def user_register(*, username: str, password: str, email: str = "") -> IssuedToken:
    """Create an active shopper and their token; the caller validated the fields."""
    with transaction.atomic():
        user = get_user_model().objects.create_user(username=username, password=password, email=email)
    return token_issue(user=user)


def shoppers_create(
    *, count: int, prefix: str = "", password: str | None = None, email_domain: str = "example.com"
) -> list[IssuedToken]:
    """``count`` active shoppers at once (bulk inserts, one transaction) and a token each,
    for load tests and rehearsals that need thousands of accounts from one address, which
    the registration throttles refuse by design. Usernames are ``<prefix>-<n>``, the prefix
    random unless given, each with the address ``<username>@<email_domain>`` (winners get
    their confirmation there); with ``password`` every one can also log in with it (hashed
    once, shared), without one none can. Raises ``IntegrityError`` when a username is taken."""
    prefix = prefix or f"shopper-{secrets.token_hex(4)}"
    stored = make_password(password)  # None: an unusable password
    model = get_user_model()
    with transaction.atomic():
        users = model.objects.bulk_create(
            [
                model(username=f"{prefix}-{n}", email=f"{prefix}-{n}@{email_domain}", password=stored, is_active=True)
                for n in range(1, count + 1)
            ],
            batch_size=1000,
        )
    return [token_issue(user=user) for user in users]


def user_session_warm(*, user: User) -> None:
    """Cache what session checks on the purchase path need (called at login)."""
    cache.set(session_hash_cache_key(user.pk), user.get_session_auth_hash(), CACHE_TTL_SECONDS)


def user_access_revoke(*, user: User) -> int:
    """Refuse what the user holds from before now, by every process within a second: every
    access token issued until now, and every session whose hash is not the one ``user``'s
    row now gives (none for an inactive user). The session hash the purchase path checks is
    written first, then the revocation is recorded and announced (``user_tokens_revoke``);
    the announcement also drops what each process kept of the user (``accounts.selectors``).
    Idempotent. Returns the revocation instant (Redis ms); raises ``RedisUnavailable``.

    ``user`` is the row as it is (or is about to be) stored. Call it before writing the row,
    so that a write that cannot be announced is not made, and again once it is committed, so
    that a process that read the old row in between reads it again."""
    current = user.get_session_auth_hash() if user.is_active else ""
    cache.set(session_hash_cache_key(user.pk), current, CACHE_TTL_SECONDS)
    return user_tokens_revoke(user_id=user.pk)


def user_access_revoke_committed(*, user_id: int) -> None:
    """``user_access_revoke`` for the user row as committed (on commit of the write)."""
    user = get_user_model().objects.filter(pk=user_id).first()
    if user is not None:
        user_access_revoke(user=user)


def user_deactivate(*, user: User) -> int:
    """Lock the shopper out: inactive from now (no login, no session) and every access token
    and session they hold refused by every process within a second, even if they were
    already inactive. Returns the revocation instant (Redis ms)."""
    user.is_active = False
    revoked_at = user_access_revoke(user=user)
    with transaction.atomic():
        get_user_model().objects.filter(pk=user.pk).update(is_active=False)
        transaction.on_commit(functools.partial(user_access_revoke_committed, user_id=user.pk), robust=True)
    return revoked_at


@dataclass(frozen=True)
class AdminPassword:
    username: str
    password: str
    created: bool


def admin_password_set(*, username: str, email: str = "", password: str | None = None) -> AdminPassword:
    """The site administrator ``username`` (staff, superuser, active) with a new password:
    created if missing, else its password replaced, which revokes its earlier sessions and
    tokens (``accounts.receivers``). ``password`` None: a random one, returned once."""
    chosen = password or secrets.token_urlsafe(18)
    users = get_user_model().objects
    with transaction.atomic():
        user = users.select_for_update().filter(username=username).first()
        created = user is None
        if user is None:
            user = users.create_superuser(username=username, email=email, password=chosen)
        else:
            user.is_staff = user.is_superuser = user.is_active = True
            if email:
                user.email = email
            user.set_password(chosen)
            user.save()
    return AdminPassword(username=username, password=chosen, created=created)
