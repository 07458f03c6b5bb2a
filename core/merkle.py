"""The Merkle tree of an append-only log, exactly as RFC 9162 section 2.1 defines it.

SHA-256; a leaf hashes as ``SHA-256(0x00 || bytes)``, a node as ``SHA-256(0x01 || left ||
right)``, and a tree of n > 1 leaves splits at k, the largest power of two below n. The
empty tree's hash is ``SHA-256()``. Pure: no Django, no I/O, no clock.

Three parts:

- **Hashes and proofs from stored nodes.** A log stores the hash of every complete
  ("perfect") subtree as it grows: ``NodeId(level, index)`` covers leaves
  ``[index * 2**level, (index + 1) * 2**level)``, level 0 being the leaves. Every hash a proof
  carries is the hash of a range ``[a, b)`` that RFC 9162's recursion cuts out, and each such
  range is a few perfect subtrees side by side (``range_cover``). So a proof is: the ranges
  (``inclusion_ranges``, ``consistency_ranges``), the nodes they need (``nodes_needed``, one
  read of at most a few dozen rows), then the hashes (``proof_hashes``).
- **Verification**, RFC 9162 sections 2.1.3.2 and 2.1.4.2 step by step
  (``verify_inclusion``, ``verify_consistency``).
- **The frontier** (a compact range from 0): the hashes of the perfect subtrees a tree of n
  leaves decomposes into, one per set bit of n. Appending a leaf merges the equal-sized
  subtrees at the right end and reports each subtree it completed, so a log appends k
  leaves at the cost of O(k) hashes amortized (O(log n) each at worst) and O(log n) state.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()
"""The hash of the tree with no leaves (RFC 9162: the hash of an empty string)."""


def leaf_hash(entry: bytes) -> bytes:
    """The hash of one leaf: the exact bytes of the entry, prefixed with 0x00."""
    return hashlib.sha256(LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an interior node from its two children, prefixed with 0x01."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def split_point(size: int) -> int:
    """k: the largest power of two smaller than ``size`` (``size`` >= 2)."""
    if size < 2:
        raise ValueError(f"a tree of {size} leaves does not split")
    return 1 << ((size - 1).bit_length() - 1)


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """The tree hash of the leaves, computed whole (the definition, for tests and audits)."""
    return Frontier.of(leaf_hashes).root()


@dataclass(frozen=True, order=True, slots=True)
class NodeId:
    """A perfect subtree: leaves ``[index * 2**level, (index + 1) * 2**level)``."""

    level: int
    index: int

    @property
    def start(self) -> int:
        return self.index << self.level

    @property
    def end(self) -> int:
        return (self.index + 1) << self.level


Range = tuple[int, int]
"""Leaves ``[start, end)``."""


def range_cover(start: int, end: int) -> list[NodeId]:
    """The perfect subtrees that make up the range, left to right, largest first. ``start``
    must be a multiple of the smallest power of two at least ``end - start``, as every range
    RFC 9162's recursion cuts out is."""
    size = end - start
    if size <= 0:
        raise ValueError(f"the range [{start}, {end}) is empty")
    if start % (1 << (size - 1).bit_length()):
        raise ValueError(f"the range [{start}, {end}) is not a subtree of the log")
    cover = []
    position = start
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            cover.append(NodeId(level, position >> level))
            position += 1 << level
    return cover


def range_hash(start: int, end: int, nodes: Mapping[NodeId, bytes]) -> bytes:
    """MTH of leaves ``[start, end)`` from the perfect subtrees covering it: RFC 9162 splits
    the range at its largest power of two first, so the cover folds from the right."""
    cover = range_cover(start, end)
    value = nodes[cover[-1]]
    for node in reversed(cover[:-1]):
        value = node_hash(nodes[node], value)
    return value


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The ranges whose hashes form the audit path of leaf ``index`` in the tree of ``size``
    leaves (RFC 9162 2.1.3.1, PATH), in the proof's order: the leaf's sibling first."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size}")
    path: list[Range] = []
    start, end = 0, size
    while end - start > 1:
        k = split_point(end - start)
        if index < start + k:
            path.append((start + k, end))
            end = start + k
        else:
            path.append((start, start + k))
            start += k
    path.reverse()
    return path


def consistency_ranges(first: int, second: int) -> list[Range]:
    """The ranges whose hashes form the consistency proof from the tree of ``first`` leaves to
    the tree of ``second`` (RFC 9162 2.1.4.1, PROOF and SUBPROOF), in the proof's order. Empty
    when the sizes are equal; undefined (ValueError) from the empty tree."""
    if not 0 < first <= second:
        raise ValueError(f"no consistency proof from {first} to {second} leaves")
    proof: list[Range] = []
    start, end, size, whole = 0, second, first, True
    # SUBPROOF(m, D[start:end], whole): m is ``size``, counted from ``start``.
    while True:
        if size == end - start:
            if not whole:
                proof.append((start, end))
            break
        k = split_point(end - start)
        if size <= k:
            proof.append((start + k, end))
            end = start + k
        else:
            proof.append((start, start + k))
            start += k
            size -= k
            whole = False
    proof.reverse()
    return proof


def nodes_needed(ranges: Iterable[Range]) -> set[NodeId]:
    """Every perfect subtree the hashes of ``ranges`` are made of."""
    return {node for start, end in ranges for node in range_cover(start, end)}


def proof_hashes(ranges: Iterable[Range], nodes: Mapping[NodeId, bytes]) -> list[bytes]:
    return [range_hash(start, end, nodes) for start, end in ranges]


def _shift_to_set_bit(fn: int, sn: int) -> tuple[int, int]:
    """Right-shift both until the lowest bit of ``fn`` is set or ``fn`` is 0."""
    while fn and not fn & 1:
        fn >>= 1
        sn >>= 1
    return fn, sn


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes | None:
    """RFC 9162 2.1.3.2: the root the audit path leads to from the leaf, or None when the
    path cannot belong to leaf ``index`` of a tree of ``size`` (wrong length, bad hash size)."""
    if not 0 <= index < size or len(leaf) != HASH_SIZE or any(len(p) != HASH_SIZE for p in proof):
        return None
    fn, sn = index, size - 1
    value = leaf
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            value = node_hash(p, value)
            if not fn & 1:
                fn, sn = _shift_to_set_bit(fn, sn)
        else:
            value = node_hash(value, p)
        fn >>= 1
        sn >>= 1
    return value if sn == 0 else None


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], tree_root: bytes) -> bool:
    """The audit path proves that ``leaf`` is leaf ``index`` of the tree of ``size`` leaves
    whose hash is ``tree_root``."""
    return root_from_inclusion(index, size, leaf, proof) == tree_root


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]) -> bool:
    """RFC 9162 2.1.4.2: the proof shows that the tree of ``second`` leaves hashing to
    ``second_root`` extends the tree of ``first`` leaves hashing to ``first_root``. As
    transparency-dev/merkle does: refused from the empty tree (it proves nothing), and for
    equal sizes only an empty proof between equal roots holds."""
    if not 0 < first <= second or any(len(p) != HASH_SIZE for p in proof):
        return False
    if first == second:
        return not proof and first_root == second_root
    if not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # an exact power of two: its root is a node of the proof
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                fn, sn = _shift_to_set_bit(fn, sn)
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


@dataclass(frozen=True, slots=True)
class Frontier:
    """The tree of ``size`` leaves as the perfect subtrees it decomposes into, left to right
    (one per set bit of ``size``, largest first): all a log keeps to append and to hash."""

    size: int = 0
    hashes: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        if self.size < 0 or len(self.hashes) != self.size.bit_count():
            raise ValueError(f"a frontier of {self.size} leaves holds {self.size.bit_count()} hashes")

    @classmethod
    def of(cls, leaf_hashes: Iterable[bytes]) -> Frontier:
        frontier = cls()
        for leaf in leaf_hashes:
            frontier, _ = frontier.append(leaf)
        return frontier

    def append(self, leaf: bytes) -> tuple[Frontier, list[tuple[NodeId, bytes]]]:
        """The frontier with one more leaf, and the perfect subtrees of level 1 and above that
        the leaf completed (bottom up), each with its hash."""
        if len(leaf) != HASH_SIZE:
            raise ValueError("a leaf hash is 32 bytes")
        hashes = list(self.hashes)
        completed: list[tuple[NodeId, bytes]] = []
        value, level, position = leaf, 0, self.size
        while position & 1:
            value = node_hash(hashes.pop(), value)
            level += 1
            position >>= 1
            completed.append((NodeId(level, position), value))
        hashes.append(value)
        return Frontier(self.size + 1, tuple(hashes)), completed

    def nodes(self) -> list[NodeId]:
        """The ids of the subtrees ``hashes`` holds: the cover of ``[0, size)``."""
        return range_cover(0, self.size) if self.size else []

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        value = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            value = node_hash(left, value)
        return value

    def to_bytes(self) -> bytes:
        return b"".join(self.hashes)

    @classmethod
    def from_bytes(cls, size: int, packed: bytes) -> Frontier:
        if len(packed) != HASH_SIZE * size.bit_count():
            raise ValueError(f"a frontier of {size} leaves is {HASH_SIZE * size.bit_count()} bytes")
        return cls(size, tuple(packed[i : i + HASH_SIZE] for i in range(0, len(packed), HASH_SIZE)))


class MemoryTree:
    """A whole tree in memory: every perfect subtree of its leaves, for proofs over a list of
    leaves (tests, audits). A log in a database keeps the same nodes in rows."""

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self.frontier = Frontier()
        self.nodes: dict[NodeId, bytes] = {}
        for leaf in leaf_hashes:
            self.append(leaf)

    @property
    def size(self) -> int:
        return self.frontier.size

    def append(self, leaf: bytes) -> None:
        self.nodes[NodeId(0, self.frontier.size)] = leaf
        self.frontier, completed = self.frontier.append(leaf)
        self.nodes.update(completed)

    def root(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        if not 0 <= size <= self.size:
            raise ValueError(f"no tree of {size} leaves in a log of {self.size}")
        return range_hash(0, size, self.nodes) if size else EMPTY_ROOT

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        if size > self.size:
            raise ValueError(f"no tree of {size} leaves in a log of {self.size}")
        return proof_hashes(inclusion_ranges(index, size), self.nodes)

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        if second > self.size:
            raise ValueError(f"no tree of {second} leaves in a log of {self.size}")
        return proof_hashes(consistency_ranges(first, second), self.nodes)
