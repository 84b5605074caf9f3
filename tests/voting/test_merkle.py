"""Specification of the RFC 6962 / RFC 9162 Merkle log, checked against public test vectors."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest

from voting.merkle import (
    MerkleTree,
    ProofError,
    TreeRangeError,
    check_consistency,
    check_inclusion,
    empty_root,
    leaf_hash,
    node_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)

DATA = Path(__file__).parent / "data"
CONSTANTS = json.loads((DATA / "merkle_constants.json").read_text())
INCLUSION_VECTORS = json.loads((DATA / "merkle_inclusion.json").read_text())
CONSISTENCY_VECTORS = json.loads((DATA / "merkle_consistency.json").read_text())
LEAF_INPUTS = [bytes.fromhex(h) for h in CONSTANTS["leaf_inputs_hex"]]


def _b64_list(values: list[str] | None) -> list[bytes]:
    return [base64.b64decode(v) for v in values or []]


def _reference_root(leaves: list[bytes]) -> bytes:
    """MTH straight from RFC 6962 §2.1, used as an independent oracle."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    left, right = _reference_root(leaves[:k]), _reference_root(leaves[k:])
    return hashlib.sha256(b"\x01" + left + right).digest()


def _tree(n: int) -> tuple[MerkleTree, list[bytes]]:
    leaves = [f"leaf-{i}".encode() for i in range(n)]
    tree = MerkleTree()
    for leaf in leaves:
        tree.append(leaf)
    return tree, leaves


def test_roots_of_the_first_eight_trees_match_transparency_dev_constants() -> None:
    tree = MerkleTree()
    assert tree.root().hex() == CONSTANTS["root_hashes_hex"][0]
    for size, data in enumerate(LEAF_INPUTS, start=1):
        tree.append(data)
        assert tree.root().hex() == CONSTANTS["root_hashes_hex"][size]
    for size in range(9):
        assert tree.root(size).hex() == CONSTANTS["root_hashes_hex"][size]


def test_leaf_hashes_match_transparency_dev_constants() -> None:
    expected = CONSTANTS["node_hashes_hex"][0]
    assert [leaf_hash(data).hex() for data in LEAF_INPUTS] == expected


def test_interior_nodes_match_transparency_dev_constants() -> None:
    levels = [[bytes.fromhex(h) for h in level] for level in CONSTANTS["node_hashes_hex"]]
    for level in range(1, len(levels)):
        for index, expected in enumerate(levels[level]):
            below = levels[level - 1]
            assert node_hash(below[2 * index], below[2 * index + 1]) == expected


def test_empty_tree_root_is_sha256_of_the_empty_string() -> None:
    assert empty_root() == hashlib.sha256(b"").digest()
    assert root_hash([]) == empty_root()


@pytest.mark.parametrize("vector", INCLUSION_VECTORS, ids=lambda v: v["source"])
def test_transparency_dev_inclusion_vectors(vector: dict[str, Any]) -> None:
    ok = verify_inclusion(
        base64.b64decode(vector["leafHash"]),
        vector["leafIdx"],
        vector["treeSize"],
        _b64_list(vector["proof"]),
        base64.b64decode(vector["root"]),
    )
    assert ok is not vector["wantErr"]


@pytest.mark.parametrize("vector", CONSISTENCY_VECTORS, ids=lambda v: v["source"])
def test_transparency_dev_consistency_vectors(vector: dict[str, Any]) -> None:
    ok = verify_consistency(
        vector["size1"],
        vector["size2"],
        _b64_list(vector["proof"]),
        base64.b64decode(vector["root1"]),
        base64.b64decode(vector["root2"]),
    )
    assert ok is not vector["wantErr"]


def test_vector_files_hold_valid_and_corrupted_cases() -> None:
    for vectors in (INCLUSION_VECTORS, CONSISTENCY_VECTORS):
        assert any(v["wantErr"] for v in vectors)
        assert any(not v["wantErr"] for v in vectors)


def test_generated_proofs_reproduce_the_transparency_dev_happy_paths() -> None:
    tree = MerkleTree(leaf_hash(data) for data in LEAF_INPUTS)
    for vector in INCLUSION_VECTORS:
        if not vector["wantErr"]:
            proof = tree.inclusion_proof(vector["leafIdx"], vector["treeSize"])
            assert proof == _b64_list(vector["proof"])
    for vector in CONSISTENCY_VECTORS:
        if not vector["wantErr"]:
            proof = tree.consistency_proof(vector["size1"], vector["size2"])
            assert proof == _b64_list(vector["proof"])


def test_roots_agree_with_the_rfc_recursive_definition_up_to_70_leaves() -> None:
    tree, leaves = _tree(70)
    for size in range(71):
        assert tree.root(size) == _reference_root(leaves[:size])


def test_every_inclusion_proof_verifies_and_every_bit_flip_fails() -> None:
    tree, _ = _tree(33)
    for size in range(1, 34):
        root = tree.root(size)
        for index in range(size):
            proof = tree.inclusion_proof(index, size)
            leaf = tree.leaf_hash_at(index)
            assert verify_inclusion(leaf, index, size, proof, root)
            for position in range(len(proof)):
                bad = list(proof)
                bad[position] = bytes([bad[position][0] ^ 1]) + bad[position][1:]
                assert not verify_inclusion(leaf, index, size, bad, root)
            if index + 1 < size:
                assert not verify_inclusion(leaf, index + 1, size, proof, root)


def test_every_consistency_proof_verifies_and_tampering_fails() -> None:
    tree, _ = _tree(33)
    for new_size in range(1, 34):
        for old_size in range(1, new_size + 1):
            proof = tree.consistency_proof(old_size, new_size)
            old_root, new_root = tree.root(old_size), tree.root(new_size)
            assert verify_consistency(old_size, new_size, proof, old_root, new_root)
            if proof:
                assert not verify_consistency(old_size, new_size, proof[:-1], old_root, new_root)
                assert not verify_consistency(
                    old_size, new_size, proof + [proof[-1]], old_root, new_root
                )
            if old_size < new_size:
                assert not verify_consistency(old_size, new_size, proof, new_root, old_root)


def test_consistency_proof_from_an_empty_tree_is_rejected() -> None:
    tree, _ = _tree(4)
    with pytest.raises(ProofError, match="empty tree"):
        check_consistency(0, 4, [], empty_root(), tree.root())
    with pytest.raises(TreeRangeError):
        tree.consistency_proof(0, 4)


def test_equal_sizes_need_an_empty_proof_and_equal_roots() -> None:
    tree, _ = _tree(5)
    assert verify_consistency(5, 5, [], tree.root(), tree.root())
    assert not verify_consistency(5, 5, [tree.root()], tree.root(), tree.root())
    assert not verify_consistency(5, 5, [], tree.root(), tree.root(4))


@pytest.mark.parametrize("length", [0, 31, 33])
def test_hashes_that_are_not_32_bytes_are_rejected(length: int) -> None:
    tree, _ = _tree(4)
    short = b"\x00" * length
    with pytest.raises(ProofError, match="32 bytes"):
        check_inclusion(short, 0, 4, tree.inclusion_proof(0), tree.root())
    with pytest.raises(ProofError, match="32 bytes"):
        bad_proof = [short, *tree.inclusion_proof(0)[1:]]
        check_inclusion(tree.leaf_hash_at(0), 0, 4, bad_proof, tree.root())
    with pytest.raises(ProofError, match="32 bytes"):
        check_consistency(2, 4, tree.consistency_proof(2), short, tree.root())
    with pytest.raises(ValueError, match="32 bytes"):
        MerkleTree().append_leaf_hash(short)


def test_inclusion_index_outside_the_tree_is_rejected() -> None:
    tree, _ = _tree(4)
    with pytest.raises(ProofError):
        check_inclusion(tree.leaf_hash_at(0), 4, 4, [], tree.root())
    with pytest.raises(TreeRangeError):
        tree.inclusion_proof(4)
    with pytest.raises(TreeRangeError):
        tree.root(5)


def test_tree_built_from_leaf_hashes_equals_tree_built_by_appending() -> None:
    tree, leaves = _tree(20)
    assert root_hash([leaf_hash(leaf) for leaf in leaves]) == tree.root()


def test_proofs_over_ten_thousand_leaves_take_well_under_50_ms() -> None:
    tree = MerkleTree(leaf_hash(i.to_bytes(4, "big")) for i in range(10_000))
    root = tree.root()
    started = time.perf_counter()
    proof = tree.inclusion_proof(6_789)
    consistency = tree.consistency_proof(7_777)
    elapsed = time.perf_counter() - started
    assert elapsed < 0.05
    assert verify_inclusion(tree.leaf_hash_at(6_789), 6_789, 10_000, proof, root)
    assert verify_consistency(7_777, 10_000, consistency, tree.root(7_777), root)
