"""``core.hmac_sha256`` gives ``hmac.digest``'s digest for every key and message length, and
the request id keeps its shape."""

from __future__ import annotations

import hmac
import os
import re

import pytest

from core.client_address import request_id_new
from core.hmac_sha256 import hmac_sha256


@pytest.mark.parametrize("key_length", [0, 1, 32, 63, 64, 65, 200])
@pytest.mark.parametrize("msg_length", [0, 1, 55, 56, 64, 100, 2047, 2048, 5000])
def test_the_digest_is_hmac_digest(key_length: int, msg_length: int) -> None:
    key, msg = os.urandom(key_length), os.urandom(msg_length)
    assert hmac_sha256(key, msg) == hmac.digest(key, msg, "sha256")


def test_a_key_used_again_gives_the_same_digests() -> None:
    key = os.urandom(32)
    first = [hmac_sha256(key, f"payload {n}".encode()) for n in range(3)]
    again = [hmac_sha256(key, f"payload {n}".encode()) for n in range(3)]
    assert first == again == [hmac.digest(key, f"payload {n}".encode(), "sha256") for n in range(3)]
    assert len(set(first)) == 3


def test_request_ids_are_16_hex_digits_and_differ() -> None:
    ids = [request_id_new() for _ in range(10_000)]
    assert all(re.fullmatch(r"[0-9a-f]{16}", request_id) for request_id in ids)
    assert len(set(ids)) == len(ids)
