"""The login and registration throttles (docs/accounts.md, "Throttles").

Every door that checks a password (``/api/auth/token/``, the storefront's login, the admin's)
and every door that creates an account (``/api/auth/register/``, the storefront's sign-up)
calls these, per client address and per account name, counted in Redis so that all web
processes share one count (``core.throttle``):

- ``LOGIN_THROTTLE_IP``: password checks from one address (each costs a password hash on
  the workers that serve the sale);
- ``LOGIN_THROTTLE_ACCOUNT``: failed password checks against one username (a guessed
  password), refused before the hash is computed; a success does not count;
- ``REGISTER_THROTTLE_IP`` and ``REGISTER_THROTTLE_ACCOUNT``: sign-ups from one address, and
  attempts at one username.

Each raises ``TooManyAttempts`` (429, Retry-After). A username is counted lower-cased and
hashed, so any text makes a short key.
"""

from __future__ import annotations

import hashlib

from core.throttle import Rate, TooManyAttempts, configured_rate, window_count


def _name_key(username: object) -> str:
    return hashlib.sha256(str(username).lower().encode("utf-8", "replace")).hexdigest()[:32]


def _key(scope: str, kind: str, subject: str) -> str:
    return f"throttle:{scope}:{kind}:{subject}"


def _check(key: str, rate: Rate | None, *, add: int, reason: str, what: str) -> None:
    if rate is None:
        return
    count, retry_after = window_count(key, rate, add=add)
    if count > rate.limit or (add == 0 and count >= rate.limit):
        raise TooManyAttempts(retry_after_seconds=retry_after, reason=reason, what=what)


def login_attempt_begin(*, client_ip: str, username: object) -> None:
    """Count a password check from ``client_ip``; refuse it when that address or this
    username is over its limit. Raises ``TooManyAttempts``."""
    _check(_key("login", "ip", client_ip), configured_rate("LOGIN_THROTTLE_IP"), add=1, reason="ip",
           what="login attempts from your address")  # fmt: skip
    _check(_key("login", "account", _name_key(username)), configured_rate("LOGIN_THROTTLE_ACCOUNT"), add=0,
           reason="account", what="failed logins for this account")  # fmt: skip


def login_attempt_failed(*, username: object) -> None:
    """A wrong password for ``username``: counted against the account."""
    rate = configured_rate("LOGIN_THROTTLE_ACCOUNT")
    if rate is not None:
        window_count(_key("login", "account", _name_key(username)), rate)


def registration_attempt(*, client_ip: str, username: object) -> None:
    """Count a sign-up from ``client_ip`` at ``username`` (None: the body names none).
    Raises ``TooManyAttempts``."""
    _check(_key("register", "ip", client_ip), configured_rate("REGISTER_THROTTLE_IP"), add=1, reason="ip",
           what="sign-ups from your address")  # fmt: skip
    if username is None:
        return
    _check(_key("register", "account", _name_key(username)), configured_rate("REGISTER_THROTTLE_ACCOUNT"), add=1,
           reason="account", what="sign-ups at this username")  # fmt: skip
