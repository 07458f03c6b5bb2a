"""The login and registration throttles (docs/accounts.md, "Throttles").

Every door that checks a password (``/api/auth/token/``, the storefront's login, the admin's)
and every door that creates an account (``/api/auth/register/``, the storefront's sign-up)
calls these, per client address and per account name, counted in Redis so that all web
processes share one count (``core.throttle``):

- ``LOGIN_THROTTLE_IP``: password checks from one address (each costs a password hash on
  the workers that serve the sale), refused past it;
- ``LOGIN_THROTTLE_ACCOUNT``: failed password checks against one username *from one
  address*; past it, that address's checks for that username are answered
  ``LOGIN_SLOW_SECONDS`` later, right password or wrong;
- ``LOGIN_THROTTLE_ACCOUNT_ANY``: failed checks against one username from every address
  together (guessing spread over many addresses); past it, every check for that username
  is answered that much later;
- ``REGISTER_THROTTLE_IP`` and ``REGISTER_THROTTLE_ACCOUNT``: sign-ups from one address, and
  attempts at one username.

The per-address throttles raise ``TooManyAttempts`` (429, Retry-After). No count against an
account refuses a password check: a refusal keyed by a username alone would let anyone who
knows a rival's name lock them out (OWASP's lockout as denial of service). An owner's correct
password from an address that has not failed is answered at once while only other addresses
guess, and at worst later, never refused; holders of a valid token are not concerned (renewal
and purchases check no password). A username is counted lower-cased and hashed, so any text
makes a short key.
"""

from __future__ import annotations

import hashlib
import time

from django.conf import settings

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


def _pair_key(username: object, client_ip: str) -> str:
    return _key("login", "account-ip", f"{_name_key(username)}:{client_ip}")


def _reached(key: str, rate: Rate | None) -> bool:
    return rate is not None and window_count(key, rate, add=0)[0] >= rate.limit


def login_attempt_slowed(*, client_ip: str, username: object) -> bool:
    """Whether a password check for ``username`` from ``client_ip`` is answered late: this
    address failed ``LOGIN_THROTTLE_ACCOUNT`` times for it, or every address together
    ``LOGIN_THROTTLE_ACCOUNT_ANY`` times. Two reads, no count."""
    return _reached(_pair_key(username, client_ip), configured_rate("LOGIN_THROTTLE_ACCOUNT")) or _reached(
        _key("login", "account", _name_key(username)), configured_rate("LOGIN_THROTTLE_ACCOUNT_ANY")
    )


def login_attempt_begin(*, client_ip: str, username: object) -> None:
    """Count a password check from ``client_ip``; refuse it when that address is over
    ``LOGIN_THROTTLE_IP`` (raises ``TooManyAttempts``). A check ``login_attempt_slowed``
    names returns ``LOGIN_SLOW_SECONDS`` later: the guesser's next try waits, the owner's
    sign-in still goes through."""
    _check(_key("login", "ip", client_ip), configured_rate("LOGIN_THROTTLE_IP"), add=1, reason="ip",
           what="login attempts from your address")  # fmt: skip
    if login_attempt_slowed(client_ip=client_ip, username=username):
        # A sleeping thread costs no CPU, and LOGIN_THROTTLE_IP bounds how many one
        # address keeps asleep; a refusal here is what would lock the owner out.
        time.sleep(settings.LOGIN_SLOW_SECONDS)


def login_attempt_failed(*, client_ip: str, username: object) -> None:
    """A wrong password for ``username`` from ``client_ip``: counted against the pair and
    against the account."""
    pair_rate = configured_rate("LOGIN_THROTTLE_ACCOUNT")
    if pair_rate is not None:
        window_count(_pair_key(username, client_ip), pair_rate)
    any_rate = configured_rate("LOGIN_THROTTLE_ACCOUNT_ANY")
    if any_rate is not None:
        window_count(_key("login", "account", _name_key(username)), any_rate)


def registration_attempt(*, client_ip: str, username: object) -> None:
    """Count a sign-up from ``client_ip`` at ``username`` (None: the body names none).
    Raises ``TooManyAttempts``."""
    _check(_key("register", "ip", client_ip), configured_rate("REGISTER_THROTTLE_IP"), add=1, reason="ip",
           what="sign-ups from your address")  # fmt: skip
    if username is None:
        return
    _check(_key("register", "account", _name_key(username)), configured_rate("REGISTER_THROTTLE_ACCOUNT"), add=1,
           reason="account", what="sign-ups at this username")  # fmt: skip
