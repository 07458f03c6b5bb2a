#!/usr/bin/env python3
"""Check a flash sale's transparency log from the outside.

    python verify.py verify <base url> <sale id> [--receipt FILE]... [--checkpoint FILE]...
                     [--entries FILE] [--returned N]

(or ``python -m salelog.verify verify ...`` inside the project). One file, Python 3.11 or
newer and the ``cryptography`` package: copy it anywhere and run it; it imports nothing of
the shop it checks, and its Merkle tree is its own, written from RFC 9162 and tested
against the same vectors as the shop's.

It reads the shop's public log API (``/api/log/keys/``, ``/api/sales/<id>/``, and under
``/api/sales/<id>/log/``: ``checkpoint``, ``entries``, ``proof/inclusion``,
``proof/consistency``) and checks, one line each, PASS or FAIL:

- **keys, checkpoint**: the newest checkpoint (after the sale: the final one) is a C2SP
  signed note signed by a published Ed25519 key under the log's origin;
- **entries**: every page of entries, each entry's bytes hash to its leaf hash, each says
  its own seq and sale, the seqs run 0, 1, ... without a gap, as many as the checkpoint says
  (``--entries FILE``: a JSON list in the entries endpoint's shape, read instead of fetched);
- **tree**: the entries, hashed as RFC 9162 says, give the checkpoint's root; when they do
  not, consistency proofs from the API find the first entry where they part from the log;
- **receipt FILE** (a receipt, or an answer carrying one): its signature, and its entry's
  inclusion both by the API's audit path and in the recomputed tree;
- **checkpoint FILE** (a note seen earlier, say on the sale's socket): its signature and its
  consistency with the newest checkpoint, by the API's proof and in the recomputed tree;
- **winners**: the SUCCESS attempts are exactly the first ``total_stock`` attempts whose
  outcome could win (SUCCESS or SOLD_OUT), in log order. A unit that came back during the
  sale (a cancelled or expired order) goes on sale again and makes a later SUCCESS; the log
  does not record it, so such a win FAILs unless ``--returned N`` says N units came back (the
  line then says how many wins it excused);
- **window**: every SUCCESS was judged inside the sale's window;
- **line** (a queue-mode sale, whose log holds joins): the joins' numbers are 1, 2, ... in log
  order; **shuffle**: a shuffled pre-queue's revealed seed has the SHA-256 committed before.

Exit status: 0 when every check passed, 1 when one failed, 2 when the log could not be read.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

HASH_SIZE = 32
PAGE = 1000
TIMEOUT_SECONDS = 30.0
COULD_WIN = frozenset({"SUCCESS", "SOLD_OUT"})
EM_DASH = "\u2014"


# --- The tree (RFC 9162 section 2.1) -------------------------------------------------------


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


class Tree:
    """Every complete subtree of a list of leaf hashes, level by level, so the root of any
    prefix costs O(log n)."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self.levels: list[list[bytes]] = [list(leaves)]
        while len(self.levels[-1]) > 1:
            below = self.levels[-1]
            self.levels.append([node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)])

    @property
    def size(self) -> int:
        return len(self.levels[0])

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (all of them by default)."""
        size = self.size if size is None else size
        if not 0 <= size <= self.size:
            raise ValueError(f"no tree of {size} leaves among {self.size}")
        return self._subtree(0, size) if size else hashlib.sha256(b"").digest()

    def _subtree(self, start: int, size: int) -> bytes:
        if size & (size - 1) == 0:  # a complete subtree: stored
            level = size.bit_length() - 1
            return self.levels[level][start >> level]
        k = 1 << ((size - 1).bit_length() - 1)
        return node_hash(self._subtree(start, k), self._subtree(start + k, size - k))


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 2.1.3.2."""
    if not 0 <= index < size or len(leaf) != HASH_SIZE or any(len(p) != HASH_SIZE for p in proof):
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = node_hash(p, r)
            while fn % 2 == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]) -> bool:
    """RFC 9162 2.1.4.2; nothing is proved from the empty tree, and equal sizes need an
    empty proof and equal roots."""
    if first <= 0 or second < first or any(len(p) != HASH_SIZE for p in proof):
        return False
    if first == second:
        return len(proof) == 0 and first_root == second_root
    if not proof:
        return False
    path = [first_root, *proof] if first & (first - 1) == 0 else list(proof)
    fn, sn = first - 1, second - 1
    while fn % 2 == 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while fn % 2 == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == first_root and sr == second_root


# --- Signed notes and checkpoints (C2SP signed-note, tlog-checkpoint) -----------------------


class Unreadable(Exception):
    """Something the verifier was given or fetched is not what the formats say."""


def note_key_hash(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode("utf-8") + b"\n\x01" + public).digest()[:4]


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    note: str


def note_parse(note: str) -> tuple[str, list[tuple[str, bytes]]]:
    """A signed note's text (final newline included) and its signatures: (key name, the 4-byte
    key hash followed by the signature)."""
    text, separator, signatures = note.rpartition("\n\n")
    if not separator or not signatures.endswith("\n"):
        raise Unreadable("not a signed note: no blank line before the signatures")
    signed = []
    for line in signatures[:-1].split("\n"):
        if not line.startswith(EM_DASH + " "):
            raise Unreadable(f"not a signature line: {line!r}")
        name, _, encoded = line[2:].rpartition(" ")
        try:
            blob = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise Unreadable(f"a signature of {name!r} is not base64") from None
        if not name or len(blob) < 5:
            raise Unreadable(f"a malformed signature line: {line!r}")
        signed.append((name, blob))
    return text + "\n", signed


def checkpoint_parse(note: str) -> tuple[Checkpoint, str, list[tuple[str, bytes]]]:
    """(the checkpoint, the signed text, its signatures)."""
    text, signed = note_parse(note)
    lines = text.split("\n")[:-1]
    if len(lines) < 3 or not lines[1].isascii() or not lines[1].isdigit():
        raise Unreadable("not a checkpoint: origin, size and root hash lines expected")
    if lines[1] != "0" and lines[1].startswith("0"):
        raise Unreadable("the checkpoint's size has a leading zero")
    try:
        root = base64.b64decode(lines[2], validate=True)
    except binascii.Error:
        raise Unreadable("the checkpoint's root hash is not base64") from None
    if len(root) != HASH_SIZE:
        raise Unreadable("the checkpoint's root hash is not 32 bytes")
    return Checkpoint(origin=lines[0], size=int(lines[1]), root=root, note=note), text, signed


def checkpoint_signer(note: str, keys: dict[str, bytes]) -> tuple[Checkpoint, str]:
    """The checkpoint and the id of the published key whose signature under the origin's
    name holds. Raises ``Unreadable`` when none does."""
    checkpoint, text, signatures = checkpoint_parse(note)
    for name, blob in signatures:
        if name != checkpoint.origin:
            continue
        for key_id, public in keys.items():
            if blob[:4] != note_key_hash(name, public):
                continue
            try:
                Ed25519PublicKey.from_public_bytes(public).verify(blob[4:], text.encode("utf-8"))
            except (InvalidSignature, ValueError):
                raise Unreadable(f"the signature of key {key_id} does not hold") from None
            return checkpoint, key_id
    raise Unreadable(f"no signature by a published key under the origin {checkpoint.origin!r}")


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


RECEIPT_FIELDS = ("key_id", "sale_id", "seq", "leaf_hash", "time_ms")


def receipt_signature_holds(receipt: dict[str, Any], keys: dict[str, bytes]) -> bool:
    """Ed25519 over the canonical JSON of the receipt's five other fields."""
    public = keys.get(str(receipt.get("key_id")))
    signature = receipt.get("signature")
    if public is None or not isinstance(signature, str) or any(name not in receipt for name in RECEIPT_FIELDS):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(
            base64.b64decode(signature, validate=True), canonical_json({name: receipt[name] for name in RECEIPT_FIELDS})
        )
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


# --- Fairness -------------------------------------------------------------------------------


@dataclass
class Verdict:
    passed: bool
    detail: str


def winners_verdict(entries: Sequence[dict[str, Any]], *, stock: int, returned: int = 0) -> Verdict:
    """The SUCCESS attempts are the first ``stock`` of those that could win, in log order; a
    later SUCCESS needs a unit that came back (``returned`` of them are excused), and no
    attempt that could win was refused SOLD_OUT while a unit was left."""
    units, excused, taken, candidates = stock, 0, 0, 0
    shoppers: set[Any] = set()
    for entry in entries:
        if entry.get("kind") != "attempt" or entry.get("outcome") not in COULD_WIN:
            continue
        candidates += 1
        seq = entry.get("seq")
        if entry["outcome"] == "SOLD_OUT":
            if units > 0:
                return Verdict(False, f"seq {seq} was refused SOLD_OUT while {units} of {stock} units were left")
            continue
        if entry.get("shopper") in shoppers:
            return Verdict(False, f"seq {seq}: shopper {entry.get('shopper')} won a second unit")
        shoppers.add(entry.get("shopper"))
        if units > 0:
            units -= 1
            taken += 1
        elif excused < returned:
            excused += 1
        else:
            return Verdict(
                False,
                f"seq {seq} won after all {stock} units were taken; only a unit that came back during the sale "
                "(a cancelled or expired order) explains it, which the log does not record (--returned N)",
            )
    detail = f"the {taken} SUCCESS attempts are the first {taken} of {candidates} that could win (stock {stock})"
    if excused:
        detail += f"; {excused} later win(s) taken as units that came back (--returned)"
    return Verdict(True, detail)


def window_verdict(entries: Sequence[dict[str, Any]], *, starts_at_ms: int, ends_at_ms: int) -> Verdict:
    for entry in entries:
        if entry.get("outcome") == "SUCCESS" and not starts_at_ms <= int(entry.get("time_ms", -1)) < ends_at_ms:
            return Verdict(False, f"seq {entry.get('seq')} won at {entry.get('time_ms')}, outside the sale's window")
    wins = sum(entry.get("outcome") == "SUCCESS" for entry in entries)
    return Verdict(True, f"all {wins} SUCCESS attempts were judged inside [starts_at, ends_at)")


def line_verdict(entries: Sequence[dict[str, Any]]) -> Verdict:
    """A queue-mode sale's joins are numbered 1, 2, ... in the order they reached the log."""
    expected = 1
    for entry in entries:
        if entry.get("kind") != "join":
            continue
        if entry.get("number") != expected:
            return Verdict(False, f"seq {entry.get('seq')} joined as number {entry.get('number')}, not {expected}")
        expected += 1
    return Verdict(True, f"{expected - 1} joins numbered 1..{expected - 1} in log order")


def shuffle_verdict(entries: Sequence[dict[str, Any]], *, seed: str, commitment: str) -> Verdict:
    """The revealed seed is the one committed to; a commitment the log holds comes before the
    first join."""
    if hashlib.sha256(seed.encode()).hexdigest() != commitment.lower():
        return Verdict(False, "the revealed shuffle seed does not hash to the published commitment")
    first_join = next((entry.get("seq") for entry in entries if entry.get("kind") == "join"), None)
    for entry in entries:
        logged = entry.get("shuffle_commitment")
        if logged is None:
            continue
        if logged != commitment:
            return Verdict(False, f"seq {entry.get('seq')} logged another commitment than the sale publishes")
        if first_join is not None and int(entry.get("seq", 0)) > int(first_join):
            return Verdict(False, f"the commitment reached the log at seq {entry.get('seq')}, after the first join")
        return Verdict(True, f"the revealed seed hashes to the commitment the log holds at seq {entry.get('seq')}")
    return Verdict(True, "the revealed seed hashes to the published commitment (the log does not date it)")


# --- Reading the shop -----------------------------------------------------------------------


class Shop:
    def __init__(self, base_url: str, sale_id: int) -> None:
        self.base = base_url.rstrip("/")
        self.sale_id = sale_id

    def _get(self, path: str, query: dict[str, int] | None = None) -> bytes:
        url = self.base + path + ("?" + urllib.parse.urlencode(query) if query else "")
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as answer:
                return bytes(answer.read())
        except urllib.error.HTTPError as error:
            raise Unreadable(f"GET {url}: {error.code} {error.read()[:200]!r}") from None
        except (urllib.error.URLError, OSError) as error:
            raise Unreadable(f"GET {url}: {error}") from None

    def json(self, path: str, query: dict[str, int] | None = None) -> Any:
        try:
            return json.loads(self._get(path, query))
        except ValueError:
            raise Unreadable(f"GET {path}: not JSON") from None

    def log(self, suffix: str) -> str:
        return f"/api/sales/{self.sale_id}/log/{suffix}"

    def keys(self) -> dict[str, bytes]:
        listed = self.json("/api/log/keys/")
        try:
            return {str(key["key_id"]): base64.b64decode(key["public_key"], validate=True) for key in listed}
        except (KeyError, TypeError, binascii.Error):
            raise Unreadable("GET /api/log/keys/: not a list of {key_id, public_key}") from None

    def sale(self) -> dict[str, Any]:
        return dict(self.json(f"/api/sales/{self.sale_id}/"))

    def checkpoint(self) -> str:
        return self._get(self.log("checkpoint")).decode("utf-8")

    def entries(self, size: int) -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = []
        while len(listed) < size:
            page = self.json(self.log("entries"), {"start": len(listed), "end": min(size, len(listed) + PAGE)})
            if not page:
                break
            listed.extend(page)
        return listed

    def proof(self, kind: str, query: dict[str, int]) -> list[bytes]:
        answer = self.json(self.log(f"proof/{kind}"), query)
        try:
            return [base64.b64decode(value, validate=True) for value in answer["hashes"]]
        except (KeyError, TypeError, binascii.Error):
            raise Unreadable(f"the {kind} proof is not {{'hashes': [base64, ...]}}") from None


# --- The checks -----------------------------------------------------------------------------


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    checks: int = 0
    failed: int = 0
    write: Callable[[str], None] = print

    def check(self, name: str, passed: bool, detail: str) -> bool:
        self.checks += 1
        self.failed += not passed
        line = f"{'PASS' if passed else 'FAIL'} {name}: {detail}"
        self.lines.append(line)
        self.write(line)
        return passed

    def info(self, detail: str) -> None:
        self.lines.append(f"INFO {detail}")
        self.write(f"INFO {detail}")


@dataclass
class Leaves:
    """The entries as read, decoded: bytes, leaf hashes and parsed JSON, by index."""

    raw: list[bytes]
    hashes: list[bytes]
    parsed: list[dict[str, Any]]


def entries_verdict(listed: Sequence[Any], *, size: int, sale_id: int) -> tuple[Verdict, Leaves]:
    """The entries as listed (the entries endpoint's shape): each one's bytes hash to its
    leaf hash, it is a canonical JSON object of this sale naming its own seq, and there are
    as many as the checkpoint says."""
    raw: list[bytes] = []
    hashes: list[bytes] = []
    parsed: list[dict[str, Any]] = []
    problems: list[str] = []
    for index, listed_item in enumerate(listed):
        item = listed_item if isinstance(listed_item, dict) else {}
        try:
            entry = base64.b64decode(item["entry"], validate=True)
            stated = bytes.fromhex(item["leaf_hash"])
            value = json.loads(entry)
        except (KeyError, TypeError, ValueError, binascii.Error):
            problems.append(f"index {index} is not an entry")
            raw.append(b"")
            hashes.append(leaf_hash(b""))
            parsed.append({})
            continue
        raw.append(entry)
        hashes.append(leaf_hash(entry))
        parsed.append(value if isinstance(value, dict) else {})
        if stated != hashes[-1]:
            problems.append(f"index {index}: its leaf_hash is not the hash of its bytes")
        if not isinstance(value, dict):
            problems.append(f"index {index} is not a JSON object")
        else:
            if item.get("seq") != index or value.get("seq") != index:
                problems.append(f"index {index} holds the entry of seq {value.get('seq')} (listed {item.get('seq')})")
            if "sale" in value and value["sale"] != sale_id:
                problems.append(f"index {index} is an entry of sale {value['sale']}")
            if canonical_json(value) != entry:
                problems.append(f"index {index} is not canonical JSON")
    if len(listed) != size:
        problems.append(f"{len(listed)} entries for a checkpoint of {size}")
    if problems:
        more = f" (and {len(problems) - 6} more)" if len(problems) > 6 else ""
        verdict = Verdict(False, "; ".join(problems[:6]) + more)
    else:
        verdict = Verdict(True, f"{size} entries, seq 0..{size - 1}, each hashing to its leaf hash" if size else "none")
    return verdict, Leaves(raw=raw, hashes=hashes, parsed=parsed)


def _parting_point(shop: Shop, tree: Tree, head: Checkpoint) -> int:
    """The number of leading entries that agree with the log (by the API's consistency
    proofs): the entries part from it at that seq."""
    low, high = 0, min(tree.size, head.size)  # the first ``low`` agree; beyond ``high`` unknown
    while low < high:
        middle = (low + high + 1) // 2
        proof = shop.proof("consistency", {"first": middle, "second": head.size})
        if verify_consistency(middle, head.size, tree.root(middle), head.root, proof):
            low = middle
        else:
            high = middle - 1
    return low


def _receipt(report: Report, name: str, receipt: dict[str, Any], *, ctx: Context) -> None:
    label = f"receipt {name}"
    signed = receipt_signature_holds(receipt, ctx.keys)
    if not report.check(f"{label} signature", signed, f"by key {receipt.get('key_id')}" if signed else "does not hold"):
        return
    seq, sale = receipt.get("seq"), receipt.get("sale_id")
    if sale != ctx.shop.sale_id or not isinstance(seq, int) or not 0 <= seq < ctx.head.size:
        report.check(f"{label} inclusion", False, f"seq {seq} of sale {sale} is not in this log of {ctx.head.size}")
        return
    try:
        leaf = bytes.fromhex(str(receipt.get("leaf_hash")))
    except ValueError:
        leaf = b""
    proof = ctx.shop.proof("inclusion", {"index": seq, "size": ctx.head.size})
    included = verify_inclusion(seq, ctx.head.size, leaf, proof, ctx.head.root)
    report.check(
        f"{label} inclusion (audit path)",
        included,
        f"the API's audit path of {len(proof)} hashes proves seq {seq} in the checkpoint of {ctx.head.size}"
        if included
        else f"the API's audit path for seq {seq} does not lead to the checkpoint's root",
    )
    ours = seq < len(ctx.leaves.hashes) and ctx.leaves.hashes[seq] == leaf
    ours = ours and ctx.leaves.parsed[seq].get("time_ms") == receipt.get("time_ms")
    if not ours:
        detail = f"entry {seq} of the entries is not the receipt's"
    elif not ctx.tree_holds:
        detail = f"entry {seq} is the receipt's, but the entries do not hash to the checkpoint (see tree)"
    else:
        detail = f"entry {seq} of the entries is the receipt's, and the entries hash to the checkpoint"
    report.check(f"{label} inclusion (entries)", ours and ctx.tree_holds, detail)


def _seen_checkpoint(report: Report, name: str, note: str, *, ctx: Context) -> None:
    label = f"checkpoint {name}"
    try:
        seen, key_id = checkpoint_signer(note, ctx.keys)
    except Unreadable as problem:
        report.check(f"{label} signature", False, str(problem))
        return
    report.check(f"{label} signature", True, f"size {seen.size}, signed by key {key_id}")
    if seen.origin != ctx.head.origin or seen.size > ctx.head.size:
        report.check(f"{label} consistency", False, f"{seen.origin} {seen.size} is not a past size of this log")
        return
    if seen.size == 0:
        report.check(f"{label} consistency", seen.root == hashlib.sha256(b"").digest(), "the empty tree")
        return
    proof = ctx.shop.proof("consistency", {"first": seen.size, "second": ctx.head.size})
    holds = verify_consistency(seen.size, ctx.head.size, seen.root, ctx.head.root, proof)
    report.check(
        f"{label} consistency (proof)",
        holds,
        f"the API's proof shows the checkpoint of {ctx.head.size} extends it"
        if holds
        else f"the API's consistency proof from {seen.size} to {ctx.head.size} does not verify: a fork",
    )
    agrees = seen.size <= ctx.tree.size and ctx.tree.root(seen.size) == seen.root
    report.check(
        f"{label} consistency (entries)",
        agrees,
        f"the first {seen.size} entries hash to its root"
        if agrees
        else f"the first {seen.size} entries do not hash to its root",
    )


@dataclass
class Context:
    shop: Shop
    keys: dict[str, bytes]
    head: Checkpoint
    leaves: Leaves
    tree: Tree
    tree_holds: bool


def _ms(moment: str) -> int:
    return int(datetime.fromisoformat(moment.replace("Z", "+00:00")).timestamp() * 1000)


def verify(
    *,
    base_url: str,
    sale_id: int,
    receipts: Sequence[Path] = (),
    checkpoints: Sequence[Path] = (),
    entries_file: Path | None = None,
    returned: int = 0,
    write: Callable[[str], None] = print,
) -> Report:
    """Run every check; raises ``Unreadable`` when the log cannot be read at all."""
    report = Report(write=write)
    shop = Shop(base_url, sale_id)
    keys = shop.keys()
    report.check("keys", bool(keys), f"{len(keys)} published: {', '.join(keys)}" if keys else "none published")
    sale = shop.sale()
    note = shop.checkpoint()
    try:
        head, signer = checkpoint_signer(note, keys)
    except Unreadable as problem:
        report.check("checkpoint signature", False, str(problem))
        return report
    report.check("checkpoint signature", True, f"{head.origin}, size {head.size}, signed by key {signer}")
    report.info(f"sale {sale_id}: status {sale.get('status')}, stock {sale.get('total_stock')}")

    if entries_file is not None:
        listed = json.loads(entries_file.read_text(encoding="utf-8"))
        if not isinstance(listed, list):
            raise Unreadable(f"{entries_file}: not a JSON list of entries")
    else:
        listed = shop.entries(head.size)
    verdict, leaves = entries_verdict(listed, size=head.size, sale_id=sale_id)
    report.check("entries", verdict.passed, verdict.detail)
    tree = Tree(leaves.hashes)
    tree_holds = tree.size == head.size and tree.root() == head.root
    if tree_holds:
        report.check("tree", True, f"the {head.size} entries hash to the checkpoint's root")
    else:
        agree = _parting_point(shop, tree, head)
        report.check(
            "tree",
            False,
            f"the entries do not hash to the checkpoint's root: consistency proofs from the API hold for the first "
            f"{agree} entries and fail from seq {agree} on (the first entry that is not the log's)",
        )
    ctx = Context(shop=shop, keys=keys, head=head, leaves=leaves, tree=tree, tree_holds=tree_holds)

    for path in receipts:
        body = json.loads(path.read_text(encoding="utf-8"))
        receipt = body.get("receipt", body) if isinstance(body, dict) else {}
        _receipt(report, path.name, receipt if isinstance(receipt, dict) else {}, ctx=ctx)
    for path in checkpoints:
        _seen_checkpoint(report, path.name, path.read_text(encoding="utf-8"), ctx=ctx)

    parsed = leaves.parsed
    if any(entry.get("kind") == "join" for entry in parsed):
        verdict = line_verdict(parsed)
        report.check("line", verdict.passed, verdict.detail)
        if sale.get("shuffle_commitment"):
            seed = str(sale.get("shuffle_seed") or "")
            if seed or sale.get("status") != "scheduled":
                verdict = shuffle_verdict(parsed, seed=seed, commitment=str(sale["shuffle_commitment"]))
                report.check("shuffle", verdict.passed, verdict.detail)
    stock = sale.get("total_stock")
    if isinstance(stock, int):
        verdict = winners_verdict(parsed, stock=stock, returned=returned)
        report.check("winners", verdict.passed, verdict.detail)
    if sale.get("starts_at") and sale.get("ends_at"):
        verdict = window_verdict(parsed, starts_at_ms=_ms(sale["starts_at"]), ends_at_ms=_ms(sale["ends_at"]))
        report.check("window", verdict.passed, verdict.detail)
    report.info(f"{report.checks} checks, {report.failed} failed")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="verify.py", description="Check a flash sale's transparency log.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("verify", help="check a sale's log, receipts and checkpoints")
    run.add_argument("base_url", help="the shop, e.g. https://shop.example")
    run.add_argument("sale", type=int, help="the sale's id")
    run.add_argument("--receipt", action="append", type=Path, default=[], help="a receipt (or an answer with one)")
    run.add_argument("--checkpoint", action="append", type=Path, default=[], help="a checkpoint note seen earlier")
    run.add_argument("--entries", type=Path, help="the entries as a JSON file (the entries endpoint's shape)")
    run.add_argument("--returned", type=int, default=0, help="units the shop says came back during the sale")
    args = parser.parse_args(argv)
    try:
        report = verify(
            base_url=args.base_url,
            sale_id=args.sale,
            receipts=args.receipt,
            checkpoints=args.checkpoint,
            entries_file=args.entries,
            returned=args.returned,
        )
    except (Unreadable, OSError, ValueError) as problem:
        print(f"ERROR {problem}", file=sys.stderr)
        return 2
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
