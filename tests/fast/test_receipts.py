"""Receipts (sales/receipts.py) with no server: the bytes a receipt's signature covers are the
canonical JSON of its five fields (docs/design.md, "The transparency log"), whatever the key
id, sale, seq, leaf and time, and the signature holds under the key's public half."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.core.signals import setting_changed
from hypothesis import given
from hypothesis import strategies as st

from sales import receipts

# What LOG_SIGNING_KEYS admits as a key id: printable ASCII without a space or a colon (the
# colon ends the id), JSON's own escapes ('"', '\') among them.
key_ids = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=":"), min_size=1, max_size=20
)
seed = base64.b64encode(bytes(range(32))).decode()


@pytest.fixture(autouse=True)
def made_afresh() -> Iterator[None]:
    """What the settings made (the keys, the shopper's HMAC) is made again from this test's."""
    receipts._setting_changed(setting="SECRET_KEY")
    yield
    receipts._setting_changed(setting="SECRET_KEY")


@given(
    key_id=key_ids,
    sale_id=st.integers(min_value=1, max_value=2**63 - 1),
    seq=st.integers(min_value=0, max_value=2**63 - 1),
    entry=st.binary(max_size=300),
    time_ms=st.integers(min_value=0, max_value=2**63 - 1),
)
def test_the_signed_bytes_are_the_canonical_json_of_the_five_fields(
    key_id: str, sale_id: int, seq: int, entry: bytes, time_ms: int
) -> None:
    key = receipts._keys((f"{key_id}:{seed}",), "unused")[0]
    leaf_hex = receipts.leaf_hash(entry).hex()
    fields = {"key_id": key_id, "sale_id": sale_id, "seq": seq, "leaf_hash": leaf_hex, "time_ms": time_ms}
    signed = receipts.receipt_signed_bytes(key=key, sale_id=sale_id, seq=seq, leaf_hex=leaf_hex, time_ms=time_ms)
    assert signed == receipts.canonical_json(fields)
    assert json.loads(signed) == fields


def test_a_receipt_is_signed_over_those_bytes_and_a_changed_field_breaks_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(receipts, "settings", SimpleNamespace(LOG_SIGNING_KEYS=[f"k1:{seed}"], SECRET_KEY="unused"))
    entry = b'{"kind":"attempt","outcome":"SUCCESS","sale":7,"seq":41,"shopper":"ab","time_ms":5}'
    receipt = receipts.receipt_for(sale_id=7, seq=41, entry=entry, time_ms=5)
    leaf_hex = hashlib.sha256(b"\x00" + entry).hexdigest()
    assert {name: value for name, value in receipt.items() if name != "signature"} == {
        "key_id": "k1",
        "sale_id": 7,
        "seq": 41,
        "leaf_hash": leaf_hex,
        "time_ms": 5,
    }
    key = receipts.signing_keys()[0]
    signed = receipts.canonical_json({name: value for name, value in receipt.items() if name != "signature"})
    Ed25519PublicKey.from_public_bytes(key.public_raw).verify(base64.b64decode(receipt["signature"]), signed)
    public = {key.key_id: key.public_raw}
    assert receipts.receipt_verify(receipt, public)
    assert not receipts.receipt_verify({**receipt, "seq": 42}, public)
    assert not receipts.receipt_verify({**receipt, "key_id": "k2"}, public)


def test_the_shopper_hash_is_the_hmac_of_sale_and_user_under_the_derived_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(receipts, "settings", SimpleNamespace(LOG_SHOPPER_SECRET="a secret", SECRET_KEY="other"))
    key = hashlib.sha256(b"flashsale.sales.log-shopper" + b"a secret").digest()
    for sale_id, user_id in ((1, 1), (7, 123456789), (2**40, 3), (1, 1)):
        expected = hmac.new(key, f"{sale_id}:{user_id}".encode(), "sha256").hexdigest()[:32]
        assert receipts.shopper_hash(sale_id=sale_id, user_id=user_id) == expected
    # The shared HMAC is only ever copied: its own state is still the key's alone.
    assert receipts._shopper_base().hexdigest() == hmac.new(key, b"", "sha256").hexdigest()
    monkeypatch.setattr(receipts, "settings", SimpleNamespace(LOG_SHOPPER_SECRET="", SECRET_KEY="other"))
    receipts._setting_changed(setting="LOG_SHOPPER_SECRET")  # as override_settings signals it
    fallback = hashlib.sha256(b"flashsale.sales.log-shopper" + b"other").digest()
    assert receipts.shopper_hash(sale_id=1, user_id=1) == hmac.new(fallback, b"1:1", "sha256").hexdigest()[:32]


def test_a_changed_setting_forgets_the_keys_and_the_shopper_hmac(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        receipts, "settings", SimpleNamespace(LOG_SIGNING_KEYS=[f"k1:{seed}"], LOG_SHOPPER_SECRET="", SECRET_KEY="x")
    )
    receipts.signing_keys()
    receipts.shopper_hash(sale_id=1, user_id=1)
    made = (receipts.signing_keys.cache_info, receipts._shopper_base.cache_info)
    setting_changed.send(sender=None, setting="DEBUG", value=True, enter=True)
    assert [info().currsize for info in made] == [1, 1]  # not a setting they are made of
    setting_changed.send(sender=None, setting="LOG_SIGNING_KEYS", value=[], enter=True)
    assert [info().currsize for info in made] == [0, 0]
