"""The log's Ed25519 keys (``LOG_SIGNING_KEYS``): the first signs checkpoints, every one is
published at ``GET /api/log/keys/`` so a key can be rotated with overlap.

``LOG_SIGNING_KEYS`` is ``<key id>:<base64 of a 32-byte Ed25519 seed>,...``; empty, one key
derived from ``SECRET_KEY`` with key id ``dev`` (for development only). The receipts the web
processes sign carry the same keys' ids, so both must read one list: the derivation here
matches the receipts' byte for byte.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .checkpoints import public_raw

_DEV_KEY_SALT = b"flashsale.sales.log-signing"
DEV_KEY_ID = "dev"
SEED_SIZE = 32


@dataclass(frozen=True, slots=True)
class SigningKey:
    key_id: str
    private: Ed25519PrivateKey
    public: bytes
    """The raw 32-byte public key."""

    @property
    def public_base64(self) -> str:
        return base64.b64encode(self.public).decode("ascii")


def _key_id_acceptable(key_id: str) -> bool:
    return bool(key_id) and key_id.isascii() and key_id.isprintable() and " " not in key_id


@functools.cache
def _keys(configured: tuple[str, ...], fallback_secret: str) -> tuple[SigningKey, ...]:
    seeds: list[tuple[str, bytes]] = []
    for item in configured:
        key_id, separator, encoded = item.partition(":")
        if not separator or not _key_id_acceptable(key_id):
            raise ImproperlyConfigured("LOG_SIGNING_KEYS: each entry is <key id>:<base64 Ed25519 seed>.")
        try:
            seed = base64.b64decode(encoded, validate=True)
        except ValueError:
            raise ImproperlyConfigured(f"LOG_SIGNING_KEYS: the seed of {key_id!r} is not base64.") from None
        if len(seed) != SEED_SIZE:
            raise ImproperlyConfigured(f"LOG_SIGNING_KEYS: the seed of {key_id!r} is not 32 bytes.")
        seeds.append((key_id, seed))
    if len({key_id for key_id, _ in seeds}) != len(seeds):
        raise ImproperlyConfigured("LOG_SIGNING_KEYS: a key id appears twice.")
    if not seeds:
        seeds.append((DEV_KEY_ID, hashlib.sha256(_DEV_KEY_SALT + fallback_secret.encode()).digest()))
    keys = []
    for key_id, seed in seeds:
        private = Ed25519PrivateKey.from_private_bytes(seed)
        keys.append(SigningKey(key_id=key_id, private=private, public=public_raw(private)))
    return tuple(keys)


def signing_keys() -> tuple[SigningKey, ...]:
    """Every configured key, the one that signs first."""
    return _keys(tuple(settings.LOG_SIGNING_KEYS), settings.SECRET_KEY)
