from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import transaction
from rest_framework.authtoken.models import Token

from .selectors import CACHE_TTL_SECONDS, session_hash_cache_key, token_cache_key


@dataclass(frozen=True)
class IssuedToken:
    user_id: int
    username: str
    token: str


def token_issue(*, user: User) -> IssuedToken:
    """The user's API token (created once, then reused), warmed into the cache so the
    purchase path never reads the token table."""
    token, _ = Token.objects.get_or_create(user=user)
    transaction.on_commit(lambda: cache.set(token_cache_key(token.key), user.pk, CACHE_TTL_SECONDS))
    return IssuedToken(user_id=user.pk, username=user.get_username(), token=token.key)


def user_register(*, username: str, password: str, email: str = "") -> IssuedToken:
    """Create an active shopper and their token; the caller validated the fields."""
    with transaction.atomic():
        user = get_user_model().objects.create_user(username=username, password=password, email=email)
        issued = token_issue(user=user)
    return issued


def user_session_warm(*, user: User) -> None:
    """Cache what session checks on the purchase path need (called at login)."""
    cache.set(session_hash_cache_key(user.pk), user.get_session_auth_hash(), CACHE_TTL_SECONDS)
