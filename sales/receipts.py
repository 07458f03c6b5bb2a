"""Receipts: the promise that an attempt (or a join) is in its sale's transparency log.

Every attempt that reaches a sale's sequencer (``purchase.lua``; ``join.lua`` for a join
that gave a number) is appended, in the same atomic call that judges it, to the sale's log
stream as one canonical JSON entry with the next sequence number (docs/design.md, "The
transparency log"). The answer carries a receipt for it, signed here with Ed25519:

``{"key_id", "sale_id", "seq", "leaf_hash", "time_ms", "signature"}``: ``leaf_hash`` the hex
of the RFC 9162 leaf hash of the entry's bytes (SHA-256 of 0x00 and the bytes), ``signature``
base64 Ed25519 over the canonical JSON (sorted keys, no spaces, UTF-8) of the other five.

``LOG_SIGNING_KEYS`` is ``<key id>:<base64 of a 32-byte Ed25519 seed>,...``: the first signs,
every one is published (``GET /api/log/keys/``), so a key can be rotated with overlap; empty,
one key derived from ``SECRET_KEY``, id ``dev`` (for development only). A shopper appears in
the log only as a salted hash: HMAC-SHA256 of the sale and the user id under a key derived
from ``LOG_SHOPPER_SECRET`` (``SECRET_KEY`` when empty), which is never published.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

_DEV_KEY_SALT = b"flashsale.sales.log-signing"
_SHOPPER_SALT = b"flashsale.sales.log-shopper"
SHOPPER_HASH_HEX = 32


@dataclass(frozen=True, slots=True)
class SigningKey:
    key_id: str
    private: Ed25519PrivateKey
    public_raw: bytes
    key_id_json: str
    """``key_id`` as canonical JSON writes it (what ``receipt_for``'s signed bytes start with)."""

    @property
    def public_base64(self) -> str:
        return base64.b64encode(self.public_raw).decode("ascii")


def _keys(configured: tuple[str, ...], fallback_secret: str) -> tuple[SigningKey, ...]:
    entries: list[tuple[str, bytes]] = []
    for item in configured:
        key_id, sep, seed = item.partition(":")
        if not sep or not key_id or not key_id.isascii() or not key_id.isprintable() or " " in key_id:
            raise ImproperlyConfigured("LOG_SIGNING_KEYS entries are <key id>:<base64 Ed25519 seed>.")
        try:
            raw = base64.b64decode(seed, validate=True)
        except ValueError:
            raise ImproperlyConfigured(f"LOG_SIGNING_KEYS: the seed of {key_id!r} is not base64.") from None
        if len(raw) != 32:
            raise ImproperlyConfigured(f"LOG_SIGNING_KEYS: the seed of {key_id!r} is not 32 bytes.")
        entries.append((key_id, raw))
    if not entries:
        entries.append(("dev", hashlib.sha256(_DEV_KEY_SALT + fallback_secret.encode()).digest()))
    keys = []
    for key_id, secret in entries:
        private = Ed25519PrivateKey.from_private_bytes(secret)
        public_raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        keys.append(SigningKey(key_id, private, public_raw, canonical_json(key_id).decode("utf-8")))
    return tuple(keys)


_MADE_OF = frozenset({"LOG_SIGNING_KEYS", "LOG_SHOPPER_SECRET", "SECRET_KEY"})
"""The settings the keys and the shopper's HMAC are made of. Both are made once and kept
until one of these changes (``setting_changed``: a test's override): a receipt reads them on
every sequenced answer, and a cache keyed by the settings' values cost 6 us of a request."""


@receiver(setting_changed)
def _setting_changed(*, setting: str, **_: object) -> None:
    if setting in _MADE_OF:
        signing_keys.cache_clear()
        _shopper_base.cache_clear()


@functools.cache
def signing_keys() -> tuple[SigningKey, ...]:
    """Every configured key, the one that signs first."""
    return _keys(tuple(settings.LOG_SIGNING_KEYS), settings.SECRET_KEY)


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8: the bytes that are hashed and signed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def leaf_hash(entry: bytes) -> bytes:
    """RFC 9162 section 2.1.1: SHA-256 of 0x00 and the leaf's bytes."""
    return hashlib.sha256(b"\x00" + entry).digest()


def _shopper_mac(secret: str) -> hmac.HMAC:
    """The HMAC keyed for ``secret``'s shopper hashes, copied for each (its key schedule done once)."""
    return hmac.new(hashlib.sha256(_SHOPPER_SALT + secret.encode()).digest(), digestmod="sha256")


@functools.cache
def _shopper_base() -> hmac.HMAC:
    return _shopper_mac(settings.LOG_SHOPPER_SECRET or settings.SECRET_KEY)


def shopper_hash(*, sale_id: int, user_id: int) -> str:
    """How a shopper appears in a sale's log: a salted hash, never the user id."""
    mac = _shopper_base().copy()
    mac.update(f"{int(sale_id)}:{int(user_id)}".encode())
    return mac.hexdigest()[:SHOPPER_HASH_HEX]


def receipt_signed_bytes(*, key: SigningKey, sale_id: int, seq: int, leaf_hex: str, time_ms: int) -> bytes:
    """What a receipt's signature covers: the canonical JSON of its five fields, written out
    in their sorted order (``canonical_json`` of the same dict gives the same bytes, in about
    eight times the time; tests/fast/test_receipts.py holds the two equal)."""
    return (
        f'{{"key_id":{key.key_id_json},"leaf_hash":"{leaf_hex}","sale_id":{int(sale_id)},"seq":{int(seq)},'
        f'"time_ms":{int(time_ms)}}}'
    ).encode()


def receipt_for(*, sale_id: int, seq: int, entry: bytes, time_ms: int) -> dict[str, Any]:
    """The signed receipt of one log entry."""
    key = signing_keys()[0]
    leaf_hex = leaf_hash(entry).hex()
    signed = receipt_signed_bytes(key=key, sale_id=sale_id, seq=seq, leaf_hex=leaf_hex, time_ms=time_ms)
    return {
        "key_id": key.key_id,
        "sale_id": int(sale_id),
        "seq": int(seq),
        "leaf_hash": leaf_hex,
        "time_ms": int(time_ms),
        "signature": base64.b64encode(key.private.sign(signed)).decode("ascii"),
    }


def receipt_verify(receipt: dict[str, Any], public_keys: dict[str, bytes]) -> bool:
    """A receipt's signature holds under the published key it names."""
    fields = {name: receipt.get(name) for name in ("key_id", "sale_id", "seq", "leaf_hash", "time_ms")}
    public = public_keys.get(str(fields["key_id"]))
    signature = receipt.get("signature")
    if public is None or not isinstance(signature, str):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(base64.b64decode(signature), canonical_json(fields))
    except (InvalidSignature, ValueError):
        return False
    return True
