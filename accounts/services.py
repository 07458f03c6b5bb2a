"""Writes of the accounts app: shoppers, their access tokens, revocation."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
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


def user_session_warm(*, user: User) -> None:
    """Cache what session checks on the purchase path need (called at login)."""
    cache.set(session_hash_cache_key(user.pk), user.get_session_auth_hash(), CACHE_TTL_SECONDS)


def user_deactivate(*, user: User) -> int:
    """Lock the shopper out: inactive from now (no login, no session) and every access token
    they hold refused by every process. Returns the revocation instant (Redis ms)."""
    get_user_model().objects.filter(pk=user.pk).update(is_active=False)
    cache.delete(session_hash_cache_key(user.pk))
    return user_tokens_revoke(user_id=user.pk)
