"""RFC 6962 / RFC 9162 §2.1 Merkle tree hashing with inclusion and consistency proofs."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

HASH_SIZE_BYTES = 32
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


class ProofError(ValueError):
    """A Merkle proof is malformed or does not verify."""


class TreeRangeError(ValueError):
    """A requested tree size or leaf index lies outside the tree."""


def leaf_hash(data: bytes) -> bytes:
    """Return SHA-256(0x00 || data), the RFC 6962 leaf hash."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return SHA-256(0x01 || left || right), the RFC 6962 interior node hash."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def empty_root() -> bytes:
    """Return the root of the empty tree: SHA-256 of the empty string."""
    return hashlib.sha256(b"").digest()


def _largest_power_of_two_below(n: int) -> int:
    """Return the largest power of two k with k < n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE_BYTES


class MerkleTree:
    """An append-only tree of leaf hashes that caches every complete subtree for fast proofs."""

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        # _levels[k][i] is the hash of the complete subtree over leaves [i*2**k, (i+1)*2**k).
        self._levels: list[list[bytes]] = [[]]
        for value in leaf_hashes:
            self.append_leaf_hash(value)

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return len(self._levels[0])

    def append(self, data: bytes) -> int:
        """Append a leaf by its data; return its index."""
        return self.append_leaf_hash(leaf_hash(data))

    def append_leaf_hash(self, value: bytes) -> int:
        """Append an already-hashed leaf; return its index."""
        if not _is_hash(value):
            raise ValueError("a leaf hash must be exactly 32 bytes")
        self._levels[0].append(value)
        level = 0
        while len(self._levels[level]) % 2 == 0:
            pair = self._levels[level][-2:]
            if level + 1 == len(self._levels):
                self._levels.append([])
            self._levels[level + 1].append(node_hash(pair[0], pair[1]))
            level += 1
        return self.size - 1

    def leaf_hash_at(self, index: int) -> bytes:
        """Return the leaf hash stored at `index`."""
        self._check_index(index, self.size)
        return self._levels[0][index]

    def root(self, tree_size: int | None = None) -> bytes:
        """Return the root hash of the first `tree_size` leaves (default: all)."""
        size = self._resolve_size(tree_size)
        return empty_root() if size == 0 else self._subtree(0, size)

    def inclusion_proof(self, index: int, tree_size: int | None = None) -> list[bytes]:
        """Return the RFC 9162 §2.1.3.1 audit path of leaf `index` in the tree of `tree_size`."""
        size = self._resolve_size(tree_size)
        self._check_index(index, size)
        return self._path(index, 0, size)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """Return the RFC 9162 §2.1.4.1 proof that tree `old_size` is a prefix of `new_size`."""
        size = self._resolve_size(new_size)
        if not 0 < old_size <= size:
            raise TreeRangeError(f"old size {old_size} must be in 1..{size}")
        return self._subproof(old_size, 0, size, True)

    def _resolve_size(self, tree_size: int | None) -> int:
        size = self.size if tree_size is None else tree_size
        if not 0 <= size <= self.size:
            raise TreeRangeError(f"tree size {size} outside 0..{self.size}")
        return size

    @staticmethod
    def _check_index(index: int, size: int) -> None:
        if not 0 <= index < size:
            raise TreeRangeError(f"leaf index {index} outside 0..{size - 1}")

    def _subtree(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for the ranges RFC 6962 recursion produces (start aligned)."""
        width = end - start
        if width & (width - 1) == 0 and start % width == 0:
            level = width.bit_length() - 1
            return self._levels[level][start >> level]
        k = _largest_power_of_two_below(width)
        return node_hash(self._subtree(start, start + k), self._subtree(start + k, end))

    def _path(self, index: int, start: int, end: int) -> list[bytes]:
        """PATH(m, D[start:end]) from RFC 9162 §2.1.3.1, with m relative to start."""
        width = end - start
        if width == 1:
            return []
        k = _largest_power_of_two_below(width)
        if index < k:
            return self._path(index, start, start + k) + [self._subtree(start + k, end)]
        return self._path(index - k, start + k, end) + [self._subtree(start, start + k)]

    def _subproof(self, m: int, start: int, end: int, whole: bool) -> list[bytes]:
        """SUBPROOF(m, D[start:end], b) from RFC 9162 §2.1.4.1."""
        width = end - start
        if m == width:
            return [] if whole else [self._subtree(start, end)]
        k = _largest_power_of_two_below(width)
        if m <= k:
            return self._subproof(m, start, start + k, whole) + [self._subtree(start + k, end)]
        return self._subproof(m - k, start + k, end, False) + [self._subtree(start, start + k)]


def root_hash(leaf_hashes: Sequence[bytes]) -> bytes:
    """Return the Merkle tree hash of a list of leaf hashes."""
    return MerkleTree(leaf_hashes).root()


def check_inclusion(
    leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Verify an inclusion proof per RFC 9162 §2.1.3.2; raise ProofError if it does not hold."""
    if not (_is_hash(leaf) and _is_hash(root)):
        raise ProofError("leaf hash and root must be exactly 32 bytes")
    if not all(_is_hash(p) for p in proof):
        raise ProofError("every proof hash must be exactly 32 bytes")
    if not 0 <= index < tree_size:
        raise ProofError(f"leaf index {index} not below tree size {tree_size}")
    fn, sn, r = index, tree_size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("proof is shorter than the path to the root")
    if r != root:
        raise ProofError("computed root does not match")


def verify_inclusion(
    leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Return whether the inclusion proof holds (see check_inclusion)."""
    try:
        check_inclusion(leaf, index, tree_size, proof, root)
    except ProofError:
        return False
    return True


def check_consistency(
    old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
) -> None:
    """Verify a consistency proof per RFC 9162 §2.1.4.2; raise ProofError if it does not hold."""
    if not (_is_hash(old_root) and _is_hash(new_root)):
        raise ProofError("roots must be exactly 32 bytes")
    if not all(_is_hash(p) for p in proof):
        raise ProofError("every proof hash must be exactly 32 bytes")
    if old_size <= 0:
        # An empty tree is a prefix of every tree; a "proof" from it proves nothing.
        raise ProofError("consistency proofs from an empty tree are rejected")
    if new_size < old_size:
        raise ProofError(f"new size {new_size} is smaller than old size {old_size}")
    if old_size == new_size:
        if proof:
            raise ProofError("equal sizes need an empty proof")
        if old_root != new_root:
            raise ProofError("equal sizes but different roots")
        return
    if not proof:
        raise ProofError("empty consistency proof")
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("proof is longer than needed")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("proof is shorter than needed")
    if fr != old_root or sr != new_root:
        raise ProofError("computed roots do not match")


def verify_consistency(
    old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
) -> bool:
    """Return whether the consistency proof holds (see check_consistency)."""
    try:
        check_consistency(old_size, new_size, proof, old_root, new_root)
    except ProofError:
        return False
    return True
