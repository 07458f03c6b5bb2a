"""Checkpoints: a sale's signed tree heads, as C2SP tlog-checkpoint notes.

A checkpoint is a C2SP signed note whose text is three lines: the log's origin, the tree
size in decimal, the base64 of the RFC 9162 root hash. One signature line follows a blank
line: an em dash, a space, the key name (the origin, as tlog-checkpoint recommends), a
space, and the base64 of the 4-byte key hash followed by the Ed25519 signature of the text.
The key hash is the first four bytes of SHA-256(key name || 0x0A || 0x01 || public key), 0x01
being the signed-note type of Ed25519. Pure: no Django, no I/O.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ED25519_TYPE = b"\x01"
SIGNATURE_DASH = "\u2014 "
KEY_HASH_SIZE = 4


def origin_acceptable(origin: str) -> bool:
    """An origin (and key name) the formats take: printable ASCII with no space and no plus."""
    return bool(origin) and origin.isascii() and origin.isprintable() and " " not in origin and "+" not in origin


def public_raw(private: Ed25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_hash(name: str, public: bytes) -> bytes:
    """The signed note's 4-byte id of an Ed25519 key under ``name``."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + ED25519_TYPE + public).digest()[:KEY_HASH_SIZE]


def checkpoint_text(*, origin: str, size: int, root: bytes) -> str:
    """The note text of a checkpoint, final newline included."""
    if not origin_acceptable(origin):
        raise ValueError(f"{origin!r} cannot be a log's origin")
    return f"{origin}\n{int(size)}\n{base64.b64encode(root).decode('ascii')}\n"


def note_sign(text: str, *, name: str, private: Ed25519PrivateKey) -> str:
    """The signed note: ``text``, a blank line, one Ed25519 signature line by ``name``."""
    if not text.endswith("\n"):
        raise ValueError("a note's text ends with a newline")
    signature = key_hash(name, public_raw(private)) + private.sign(text.encode("utf-8"))
    return f"{text}\n{SIGNATURE_DASH}{name} {base64.b64encode(signature).decode('ascii')}\n"


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    size: int
    root: bytes
    note: str


def checkpoint_sign(*, origin: str, size: int, root: bytes, private: Ed25519PrivateKey) -> SignedCheckpoint:
    """The checkpoint of the tree of ``size`` leaves hashing to ``root``, signed under the
    origin's name."""
    text = checkpoint_text(origin=origin, size=size, root=root)
    return SignedCheckpoint(size=size, root=root, note=note_sign(text, name=origin, private=private))
