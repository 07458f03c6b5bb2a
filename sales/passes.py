"""A queue-mode sale's pass: the proof of a place in its line, checked in process.

``q1.<sale id>.<user id>.<number>.<signature>``: HMAC-SHA256 over the rest with a key derived
from ``QUEUE_PASS_SECRET`` (``SECRET_KEY`` when empty). Joining the line hands it out; a
purchase (REST or the TCP door) and a place read carry it. Checking it needs no Redis: the
signature, the sale and the user; whether its number's turn has come is the line's to say
(``sales.line``, ``lua/line.lua``).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac

from django.conf import settings

from core.hmac_sha256 import hmac_sha256

PASS_VERSION = "q1"
PASS_SALT = "sales.queue-pass"
MAX_PASS_LENGTH = 128
"""Longer than any pass this server signs: a longer one is refused unread."""


class PassRefused(Exception):
    """Why a pass does not count; ``reason`` starts with the contract's word."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@functools.cache
def _key(secret: str) -> bytes:
    return hashlib.sha256((PASS_SALT + secret).encode()).digest()


def _signature(payload: str) -> str:
    digest = hmac_sha256(_key(settings.QUEUE_PASS_SECRET or settings.SECRET_KEY), payload.encode())
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def pass_issue(*, sale_id: int, user_id: int, number: int) -> str:
    payload = f"{PASS_VERSION}.{int(sale_id)}.{int(user_id)}.{int(number)}"
    return f"{payload}.{_signature(payload)}"


def pass_number(pass_text: object, *, sale_id: int, user_id: int) -> int:
    """The number a pass holds in this sale's line for this user. Raises ``PassRefused``:
    ``missing``, ``forged``, ``wrong sale``, ``wrong user``."""
    if pass_text is None or pass_text == "":
        raise PassRefused(
            f"missing: this sale lets shoppers in by their place; POST /api/sales/{sale_id}/queue/ first."
        )
    if not isinstance(pass_text, str) or len(pass_text) > MAX_PASS_LENGTH or not pass_text.isascii():
        raise PassRefused("forged: this is not a pass this server issued.")
    parts = pass_text.split(".")
    if len(parts) != 5 or parts[0] != PASS_VERSION or not all(part.isdigit() for part in parts[1:4]):
        raise PassRefused("forged: this is not a pass this server issued.")
    payload, signature = ".".join(parts[:4]), parts[4]
    if not hmac.compare_digest(signature, _signature(payload)):
        raise PassRefused("forged: the pass's signature does not match.")
    if parts[1] != str(sale_id):
        raise PassRefused("wrong sale: the pass is for another sale's line.")
    if parts[2] != str(user_id):
        raise PassRefused("wrong user: the pass was given to another shopper.")
    return int(parts[3])
