"""The log's signed notes and the verifier's rules with no server: checkpoints are C2SP
signed notes byte for byte (the Go sumdb/note vector), the verifier opens them and refuses
a changed one, receipts are checked as the receipt contract says, the fairness rules catch
an unfair log, and salelog/verify.py needs nothing but the standard library and
cryptography."""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from core import merkle
from salelog import checkpoints, verify

ROOT = Path(__file__).resolve().parents[2]
NOTE = json.loads((Path(__file__).parent / "merkle_vectors.json").read_text(encoding="utf-8"))["signed_note"]


def _go_key() -> tuple[str, Ed25519PrivateKey, bytes]:
    """The Go vector's key name, private key and public key (its key strings' last field is
    the base64 of 0x01 and the key)."""
    name, hash_hex, encoded = NOTE["verifier_key"].split("+", 2)
    public = base64.b64decode(encoded)
    assert public[0] == 1 and len(public) == 33
    seed = base64.b64decode(NOTE["private_key"].split("+", 4)[4])
    assert seed[0] == 1 and len(seed) == 33
    private = Ed25519PrivateKey.from_private_bytes(seed[1:])
    assert checkpoints.public_raw(private) == public[1:]
    assert checkpoints.key_hash(name, public[1:]).hex() == hash_hex
    return name, private, public[1:]


def test_a_note_is_signed_as_go_sumdb_note_signs_it() -> None:
    name, private, public = _go_key()

    assert checkpoints.note_sign(NOTE["text"], name=name, private=private) == NOTE["note"]
    text, signatures = verify.note_parse(NOTE["note"])
    assert text == NOTE["text"]
    [(signer, blob)] = signatures
    assert (signer, blob[:4]) == (name, verify.note_key_hash(name, public))


def _checkpoint(size: int = 3) -> tuple[str, bytes, Ed25519PrivateKey]:
    private = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"a test key").digest())
    root = merkle.root([merkle.leaf_hash(bytes([n])) for n in range(size)])
    signed = checkpoints.checkpoint_sign(origin="shop.example/sales/7", size=size, root=root, private=private)
    return signed.note, root, private


def test_a_checkpoint_is_three_lines_a_blank_line_and_one_signature_by_the_origin() -> None:
    note, root, private = _checkpoint()
    public = checkpoints.public_raw(private)

    lines = note.split("\n")
    assert lines[:4] == ["shop.example/sales/7", "3", base64.b64encode(root).decode(), ""]
    assert lines[4].startswith("\u2014 shop.example/sales/7 ")
    assert lines[5:] == [""]
    signature = base64.b64decode(lines[4].rsplit(" ", 1)[1])
    assert signature[:4] == hashlib.sha256(b"shop.example/sales/7\n\x01" + public).digest()[:4]
    parsed, key_id = verify.checkpoint_signer(note, {"k1": public})
    assert (parsed.origin, parsed.size, parsed.root, key_id) == ("shop.example/sales/7", 3, root, "k1")


def test_the_verifier_refuses_a_checkpoint_changed_or_signed_by_another_key() -> None:
    note, _, private = _checkpoint()
    public = checkpoints.public_raw(private)
    stranger = checkpoints.public_raw(Ed25519PrivateKey.generate())

    with pytest.raises(verify.Unreadable, match="does not hold"):
        verify.checkpoint_signer(note.replace("\n3\n", "\n4\n"), {"k1": public})
    with pytest.raises(verify.Unreadable, match="no signature by a published key"):
        verify.checkpoint_signer(note, {"k2": stranger})
    with pytest.raises(verify.Unreadable, match="no signature by a published key"):
        verify.checkpoint_signer(note.replace("shop.example/sales/7\n", "shop.example/sales/8\n", 1), {"k1": public})
    with pytest.raises(verify.Unreadable):
        verify.checkpoint_signer(note.replace("\n\n", "\n"), {"k1": public})


@pytest.mark.parametrize("origin", ["", "has space", "plus+sign", "tab\there", "caf\u00e9"])
def test_an_origin_the_formats_refuse_is_refused(origin: str) -> None:
    with pytest.raises(ValueError):
        checkpoints.checkpoint_text(origin=origin, size=0, root=merkle.EMPTY_ROOT)


def _receipt(private: Ed25519PrivateKey, **fields: Any) -> dict[str, Any]:
    """A receipt as the contract signs it: Ed25519 over the canonical JSON of five fields."""
    signed = {"key_id": "k1", "sale_id": 7, "seq": 12, "leaf_hash": "ab" * 32, "time_ms": 1796160000123} | fields
    canonical = json.dumps(signed, sort_keys=True, separators=(",", ":")).encode()
    return signed | {"signature": base64.b64encode(private.sign(canonical)).decode()}


def test_a_receipt_holds_under_its_key_and_not_once_a_field_changed() -> None:
    private = Ed25519PrivateKey.generate()
    keys = {"k1": checkpoints.public_raw(private)}
    receipt = _receipt(private)

    assert verify.receipt_signature_holds(receipt, keys)
    for name, value in [("seq", 13), ("leaf_hash", "cd" * 32), ("time_ms", 1), ("sale_id", 8), ("key_id", "k2")]:
        assert not verify.receipt_signature_holds(receipt | {name: value}, keys), name
    assert not verify.receipt_signature_holds({k: v for k, v in receipt.items() if k != "time_ms"}, keys)


def _attempt(seq: int, outcome: str, shopper: str | None = None, time_ms: int = 5000) -> dict[str, Any]:
    return {
        "kind": "attempt",
        "outcome": outcome,
        "sale": 7,
        "seq": seq,
        "shopper": shopper or f"s{seq}",
        "time_ms": time_ms,
    }


def _log(*outcomes: str) -> list[dict[str, Any]]:
    return [_attempt(seq, outcome) for seq, outcome in enumerate(outcomes)]


def test_the_winners_are_the_first_attempts_that_could_win() -> None:
    fair = _log("NOT_STARTED", "SUCCESS", "ALREADY_PURCHASED", "SUCCESS", "SOLD_OUT", "ENDED", "SOLD_OUT")
    assert verify.winners_verdict(fair, stock=2).passed
    assert verify.winners_verdict(_log("SUCCESS", "SOLD_OUT"), stock=3).passed is False  # refused with stock left
    assert verify.winners_verdict(_log("SUCCESS", "SOLD_OUT", "SUCCESS"), stock=1).passed is False
    assert verify.winners_verdict(_log("SUCCESS", "SOLD_OUT", "SUCCESS"), stock=1, returned=1).passed
    twice = [_attempt(0, "SUCCESS", "x"), _attempt(1, "SUCCESS", "x")]
    assert "second unit" in verify.winners_verdict(twice, stock=2).detail


@given(stock=st.integers(min_value=1, max_value=20), crowd=st.integers(min_value=0, max_value=60), data=st.data())
def test_a_log_judged_in_arrival_order_passes_and_a_win_moved_later_fails(
    stock: int, crowd: int, data: st.DataObject
) -> None:
    outcomes = ["SUCCESS" if n < stock else "SOLD_OUT" for n in range(crowd)]
    assert verify.winners_verdict(_log(*outcomes), stock=stock).passed
    if stock < crowd:
        winner = data.draw(st.integers(min_value=0, max_value=stock - 1), label="winner")
        loser = data.draw(st.integers(min_value=stock, max_value=crowd - 1), label="loser")
        outcomes[winner], outcomes[loser] = outcomes[loser], outcomes[winner]
        assert not verify.winners_verdict(_log(*outcomes), stock=stock).passed


def test_every_win_is_inside_the_window() -> None:
    inside = [_attempt(0, "SUCCESS", time_ms=1000), _attempt(1, "ENDED", time_ms=3000)]
    assert verify.window_verdict(inside, starts_at_ms=1000, ends_at_ms=2000).passed
    late = [*inside, _attempt(2, "SUCCESS", time_ms=2000)]
    assert not verify.window_verdict(late, starts_at_ms=1000, ends_at_ms=2000).passed


def _join(seq: int, number: int) -> dict[str, Any]:
    return {"kind": "join", "number": number, "outcome": "waiting", "sale": 7, "seq": seq, "shopper": f"s{seq}"}


def test_joins_are_numbered_in_log_order_and_the_seed_is_the_committed_one() -> None:
    line = [_join(0, 1), _attempt(1, "SOLD_OUT"), _join(2, 2), _join(3, 3)]
    assert verify.line_verdict(line).passed
    assert not verify.line_verdict([_join(0, 1), _join(1, 3)]).passed
    assert not verify.line_verdict([_join(0, 2), _join(1, 1)]).passed

    seed = "ab" * 32
    commitment = hashlib.sha256(seed.encode()).hexdigest()
    assert verify.shuffle_verdict(line, seed=seed, commitment=commitment).passed
    assert not verify.shuffle_verdict(line, seed="cd" * 32, commitment=commitment).passed
    logged = [{"kind": "commitment", "seq": 0, "shuffle_commitment": commitment}, _join(1, 1)]
    assert verify.shuffle_verdict(logged, seed=seed, commitment=commitment).passed
    late = [_join(0, 1), {"kind": "commitment", "seq": 1, "shuffle_commitment": commitment}]
    assert not verify.shuffle_verdict(late, seed=seed, commitment=commitment).passed


def _listed(entry: bytes, seq: int) -> dict[str, Any]:
    return {"seq": seq, "entry": base64.b64encode(entry).decode(), "leaf_hash": merkle.leaf_hash(entry).hex()}


def test_the_entries_must_hash_to_their_leaves_name_their_seq_and_be_canonical_json() -> None:
    good = [_listed(verify.canonical_json(_attempt(seq, "SOLD_OUT")), seq) for seq in range(3)]
    verdict, leaves = verify.entries_verdict(good, size=3, sale_id=7)
    assert verdict.passed, verdict.detail
    assert leaves.hashes == [bytes.fromhex(item["leaf_hash"]) for item in good]

    swapped = [good[0], good[2], good[1]]
    assert "index 1 holds the entry of seq 2" in verify.entries_verdict(swapped, size=3, sale_id=7)[0].detail
    lying = [*good[:2], {**good[2], "leaf_hash": "00" * 32}]
    assert "index 2: its leaf_hash is not the hash" in verify.entries_verdict(lying, size=3, sale_id=7)[0].detail
    spaced = [*good[:2], _listed(json.dumps(_attempt(2, "SOLD_OUT")).encode(), 2)]
    assert "index 2 is not canonical JSON" in verify.entries_verdict(spaced, size=3, sale_id=7)[0].detail
    assert "of sale 7" in verify.entries_verdict(good, size=3, sale_id=8)[0].detail
    assert "2 entries for a checkpoint of 3" in verify.entries_verdict(good[:2], size=3, sale_id=7)[0].detail
    junk = verify.entries_verdict(["x", {"seq": 1}, _listed(b"5", 2)], size=3, sale_id=7)[0].detail
    assert junk == "index 0 is not an entry; index 1 is not an entry; index 2 is not a JSON object"


def test_the_verifier_imports_only_the_standard_library_and_cryptography() -> None:
    source = (ROOT / "salelog" / "verify.py").read_text(encoding="utf-8")
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "a relative import would tie the file to this project"
            imported.add((node.module or "").split(".")[0])
    assert imported - set(sys.stdlib_module_names) == {"cryptography"}
