"""The log's Merkle tree with no server: core/merkle.py, which the log builds and proves
with, and the verifier's own (salelog/verify.py, a second implementation anyone runs). Both
give RFC 6962's reference roots, give every transparency-dev probe its verdict, and every
proof the log makes verifies, while a reordered leaf, a dropped leaf or a fork is caught.

The vectors are merkle_vectors.json (its "about" says where each comes from)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from core import merkle
from core.merkle import Frontier, MemoryTree, NodeId
from salelog import verify

VECTORS = json.loads((Path(__file__).parent / "merkle_vectors.json").read_text(encoding="utf-8"))
REFERENCE = VECTORS["reference"]
LEAVES = [merkle.leaf_hash(bytes.fromhex(value)) for value in REFERENCE["leaf_inputs"]]


def _b64(values: list[str]) -> list[bytes]:
    return [base64.b64decode(value) for value in values]


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 2.1.1, word for word: the definition the fast implementations must equal."""
    if not leaves:
        return merkle.EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return merkle.node_hash(_mth(leaves[:k]), _mth(leaves[k:]))


def test_leaves_and_nodes_hash_as_rfc_6962_says_in_both_implementations() -> None:
    hasher = VECTORS["hasher"]
    assert merkle.EMPTY_ROOT.hex() == hasher["empty_root"]
    assert verify.Tree([]).root().hex() == hasher["empty_root"]
    for case in hasher["leaf_cases"]:
        entry = case["input_ascii"].encode()
        assert merkle.leaf_hash(entry).hex() == verify.leaf_hash(entry).hex() == case["leaf_hash"]
    for case in hasher["node_cases"]:
        left, right = case["left_ascii"].encode(), case["right_ascii"].encode()
        assert merkle.node_hash(left, right).hex() == verify.node_hash(left, right).hex() == case["node_hash"]


def test_every_prefix_of_the_reference_tree_has_the_reference_root_and_nodes() -> None:
    tree = MemoryTree(LEAVES)
    theirs = verify.Tree(LEAVES)
    for size, expected in enumerate(REFERENCE["roots"]):
        assert merkle.root(LEAVES[:size]).hex() == expected, size
        assert tree.root(size).hex() == expected, size
        assert theirs.root(size).hex() == expected, size
    for level, hashes in enumerate(REFERENCE["nodes"]):
        for index, expected in enumerate(hashes):
            assert tree.nodes[NodeId(level, index)].hex() == expected
            assert theirs.levels[level][index].hex() == expected
    assert len(tree.nodes) == sum(len(hashes) for hashes in REFERENCE["nodes"])


def test_the_frontier_of_each_prefix_is_its_compact_range_of_reference_nodes() -> None:
    frontier = Frontier()
    for size in range(1, len(LEAVES) + 1):
        frontier, _ = frontier.append(LEAVES[size - 1])
        expected = [REFERENCE["nodes"][node.level][node.index] for node in merkle.range_cover(0, size)]
        assert [value.hex() for value in frontier.hashes] == expected
        assert frontier.root().hex() == REFERENCE["roots"][size]
        assert Frontier.from_bytes(size, frontier.to_bytes()) == frontier


def _probe_id(probe: dict[str, Any]) -> str:
    return str(probe["file"]).removeprefix("testdata/")


@pytest.mark.parametrize("probe", VECTORS["inclusion"], ids=_probe_id)
def test_every_inclusion_probe_gets_its_verdict_from_both_verifiers(probe: dict[str, Any]) -> None:
    arguments = (
        probe["leafIdx"],
        probe["treeSize"],
        base64.b64decode(probe["leafHash"]),
        _b64(probe["proof"]),
        base64.b64decode(probe["root"]),
    )
    assert merkle.verify_inclusion(*arguments) is not probe["wantErr"]
    assert verify.verify_inclusion(*arguments) is not probe["wantErr"]


@pytest.mark.parametrize("probe", VECTORS["consistency"], ids=_probe_id)
def test_every_consistency_probe_gets_its_verdict_from_both_verifiers(probe: dict[str, Any]) -> None:
    arguments = (
        probe["size1"],
        probe["size2"],
        base64.b64decode(probe["root1"]),
        base64.b64decode(probe["root2"]),
        _b64(probe["proof"]),
    )
    assert merkle.verify_consistency(*arguments) is not probe["wantErr"]
    assert verify.verify_consistency(*arguments) is not probe["wantErr"]


def test_the_proofs_the_log_makes_of_the_reference_tree_are_the_published_ones() -> None:
    tree = MemoryTree(LEAVES)
    made = 0
    for probe in VECTORS["inclusion"]:
        if not probe["wantErr"] and base64.b64decode(probe["root"]) == tree.root(min(probe["treeSize"], 8)):
            assert tree.inclusion_proof(probe["leafIdx"], probe["treeSize"]) == _b64(probe["proof"]), probe["file"]
            made += 1
    for probe in VECTORS["consistency"]:
        if not probe["wantErr"] and probe["size1"] and base64.b64decode(probe["root2"]) == tree.root(probe["size2"]):
            assert tree.consistency_proof(probe["size1"], probe["size2"]) == _b64(probe["proof"]), probe["file"]
            made += 1
    assert made >= 8


leaf_lists = st.lists(st.binary(max_size=6), min_size=1, max_size=300).map(
    lambda entries: [merkle.leaf_hash(entry) for entry in entries]
)


@given(leaves=leaf_lists, data=st.data())
def test_every_inclusion_proof_verifies_and_names_only_its_own_leaf(leaves: list[bytes], data: st.DataObject) -> None:
    tree = MemoryTree(leaves)
    size = data.draw(st.integers(min_value=1, max_value=len(leaves)), label="size")
    index = data.draw(st.integers(min_value=0, max_value=size - 1), label="index")
    root = tree.root(size)
    assert root == _mth(leaves[:size])
    proof = tree.inclusion_proof(index, size)

    assert merkle.verify_inclusion(index, size, leaves[index], proof, root)
    assert verify.verify_inclusion(index, size, leaves[index], proof, root)
    assert len(proof) == len(merkle.inclusion_ranges(index, size)) <= size.bit_length()
    stranger = merkle.leaf_hash(b"not in the log")
    assert not merkle.verify_inclusion(index, size, stranger, proof, root)
    assert not verify.verify_inclusion(index, size, stranger, proof, root)
    if proof:
        flipped = [proof[0][:-1] + bytes([proof[0][-1] ^ 1]), *proof[1:]]
        assert not merkle.verify_inclusion(index, size, leaves[index], flipped, root)
        assert not verify.verify_inclusion(index, size, leaves[index], flipped, root)
        assert not merkle.verify_inclusion(index, size, leaves[index], proof[:-1], root)


@given(leaves=leaf_lists, data=st.data())
def test_every_consistency_proof_between_two_sizes_verifies(leaves: list[bytes], data: st.DataObject) -> None:
    tree = MemoryTree(leaves)
    second = data.draw(st.integers(min_value=1, max_value=len(leaves)), label="second")
    first = data.draw(st.integers(min_value=1, max_value=second), label="first")
    proof = tree.consistency_proof(first, second)

    assert merkle.verify_consistency(first, second, tree.root(first), tree.root(second), proof)
    assert verify.verify_consistency(first, second, tree.root(first), tree.root(second), proof)
    assert verify.verify_consistency(first, second, verify.Tree(leaves).root(first), tree.root(second), proof)
    if first < second:
        assert not merkle.verify_consistency(first, second, tree.root(first), tree.root(second - 1), proof)


@given(leaves=leaf_lists, data=st.data())
def test_a_reordered_leaf_is_caught(leaves: list[bytes], data: st.DataObject) -> None:
    assume(len(set(leaves)) > 1)
    i = data.draw(st.integers(min_value=0, max_value=len(leaves) - 1), label="i")
    j = data.draw(st.integers(min_value=0, max_value=len(leaves) - 1).filter(lambda j: leaves[j] != leaves[i]))
    swapped = list(leaves)
    swapped[i], swapped[j] = swapped[j], swapped[i]
    honest, other = MemoryTree(leaves), MemoryTree(swapped)
    size = len(leaves)

    assert other.root() != honest.root()
    # The honest log's audit path for leaf i does not fit the reordered tree, nor the other's.
    assert not merkle.verify_inclusion(i, size, leaves[i], honest.inclusion_proof(i, size), other.root())
    assert not merkle.verify_inclusion(i, size, leaves[i], other.inclusion_proof(i, size), other.root())
    # Whoever saw a checkpoint covering the first changed leaf sees the reordered tree as a fork.
    first = min(i, j) + 1
    if first < size:
        assert not merkle.verify_consistency(
            first, size, honest.root(first), other.root(), other.consistency_proof(first, size)
        )
        assert not verify.verify_consistency(
            first, size, honest.root(first), other.root(), other.consistency_proof(first, size)
        )


@given(leaves=leaf_lists.filter(lambda leaves: len(leaves) >= 2), data=st.data())
def test_a_dropped_leaf_is_caught(leaves: list[bytes], data: st.DataObject) -> None:
    dropped = data.draw(st.integers(min_value=0, max_value=len(leaves) - 2), label="dropped")
    assume(leaves[dropped] != leaves[dropped + 1])
    shorter = leaves[:dropped] + leaves[dropped + 1 :]
    honest, other = MemoryTree(leaves), MemoryTree(shorter)

    # The shorter log extends no checkpoint the honest one signed past the drop...
    for first in range(dropped + 1, len(shorter)):
        proof = other.consistency_proof(first, len(shorter))
        assert not merkle.verify_consistency(first, len(shorter), honest.root(first), other.root(), proof)
        assert not verify.verify_consistency(first, len(shorter), honest.root(first), other.root(), proof)
    # ...and the receipt of the dropped entry finds another entry at its seq.
    proof = other.inclusion_proof(dropped, len(shorter))
    assert not merkle.verify_inclusion(dropped, len(shorter), leaves[dropped], proof, other.root())


@given(prefix=leaf_lists, tail_a=leaf_lists, tail_b=leaf_lists, data=st.data())
def test_a_forked_checkpoint_is_caught(
    prefix: list[bytes], tail_a: list[bytes], tail_b: list[bytes], data: st.DataObject
) -> None:
    assume(tail_a[0] != tail_b[0])
    fork_a, fork_b = MemoryTree(prefix + tail_a), MemoryTree(prefix + tail_b)
    shared = len(prefix)
    # A checkpoint of the shared prefix is consistent with both branches...
    for fork in (fork_a, fork_b):
        proof = fork.consistency_proof(shared, fork.size)
        assert merkle.verify_consistency(shared, fork.size, fork_a.root(shared), fork.root(), proof)
    # ...but one of branch A past the fork is consistent with no checkpoint of branch B.
    second = data.draw(st.integers(min_value=shared + 1, max_value=fork_b.size), label="second")
    first = data.draw(st.integers(min_value=shared + 1, max_value=min(fork_a.size, second)), label="first")
    proof = fork_b.consistency_proof(first, second)
    assert not merkle.verify_consistency(first, second, fork_a.root(first), fork_b.root(second), proof)
    assert not verify.verify_consistency(first, second, fork_a.root(first), fork_b.root(second), proof)


@given(leaves=leaf_lists)
def test_appending_to_the_frontier_reports_every_complete_subtree_once(leaves: list[bytes]) -> None:
    frontier, completed = Frontier(), {}
    for leaf in leaves:
        frontier, new = frontier.append(leaf)
        for node, value in new:
            assert node not in completed
            completed[node] = value
    tree = MemoryTree(leaves)
    assert completed == {node: value for node, value in tree.nodes.items() if node.level > 0}
    assert frontier.root() == _mth(leaves) == verify.Tree(leaves).root()
    assert len(frontier.hashes) == len(leaves).bit_count()
    assert Frontier.from_bytes(len(leaves), frontier.to_bytes()) == frontier
    with pytest.raises(ValueError):
        Frontier.from_bytes(len(leaves) + 1, frontier.to_bytes() + b"\x00" * 3)


@given(start_level=st.integers(min_value=0, max_value=20), data=st.data())
def test_a_proofs_range_is_covered_by_aligned_complete_subtrees(start_level: int, data: st.DataObject) -> None:
    size = data.draw(st.integers(min_value=1, max_value=1 << start_level), label="size")
    start = data.draw(st.integers(min_value=0, max_value=1000), label="block") << start_level
    cover = merkle.range_cover(start, start + size)
    position = start
    for node in cover:
        assert node.start == position
        position = node.end
    assert position == start + size
    assert [node.level for node in cover] == sorted((node.level for node in cover), reverse=True)
    assert len(cover) == size.bit_count()
