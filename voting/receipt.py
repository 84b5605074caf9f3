"""Vote receipts: what an owner keeps to show later that the vote is in the ballot's log.

A receipt is JSON:

    {"ballot_id", "origin", "index", "leaf_hash": HEX, "cast_at",
     "signature": {"alg", "kid", "sig"},            # receipt key, over receipt_payload(...)
     "checkpoint": "signed note" | absent/null,     # once a checkpoint covers the vote
     "inclusion_proof": [HEX, ...] | absent/null}   # RFC 9162 §2.1.3 path to that root

The signature is given at cast time, before any checkpoint: it proves the service accepted the
vote at `index` with this leaf. The checkpoint and proof come later and prove the leaf is in the
signed, append-only tree, so the service cannot drop or change the vote without the receipt
showing it. Checking a receipt against a bundle is in voting.verify.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from voting.checkpoint import (
    MalformedCheckpointError,
    MalformedNoteError,
    NoteVerificationError,
    NoteVerifier,
    open_checkpoint,
)
from voting.merkle import ProofError, check_inclusion
from voting.signing import Keyring, KeyPurpose, verify

_HEX64 = re.compile(r"[0-9a-f]{64}")


class InvalidReceipt(ValueError):
    """A receipt is malformed, its signature fails, or its inclusion proof does not hold."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ReceiptState(StrEnum):
    """How far a valid receipt proves the vote."""

    SIGNED = "signed, not yet checkpointed"
    CHECKPOINTED = "signed and included in a signed checkpoint"


@dataclass(frozen=True)
class ReceiptStatus:
    """A receipt that checked: whose key signed it and, if checkpointed, the tree it is in."""

    state: ReceiptState
    ballot_id: str
    index: int
    leaf_hash: str
    cast_at: str
    key_id: str
    tree_size: int | None = None

    def __str__(self) -> str:
        where = f" of size {self.tree_size}" if self.tree_size is not None else ""
        return f"receipt for entry {self.index} of {self.ballot_id}: {self.state.value}{where}"


def receipt_payload(ballot_id: str, index: int, leaf_hash_hex: str, cast_at: str) -> dict[str, Any]:
    """The object whose canonical bytes the receipt key signs."""
    return {"ballot_id": ballot_id, "index": index, "leaf_hash": leaf_hash_hex, "cast_at": cast_at}


def issue_receipt(keyring: Keyring, *, ballot_id: str, origin: str, index: int,
                  leaf_hash: bytes, cast_at: str) -> dict[str, Any]:
    """Sign a new receipt with the active receipt key (no checkpoint yet)."""
    payload = receipt_payload(ballot_id, index, leaf_hash.hex(), cast_at)
    return {"ballot_id": ballot_id, "origin": origin, "index": index,
            "leaf_hash": leaf_hash.hex(), "cast_at": cast_at,
            "signature": keyring.sign(KeyPurpose.RECEIPT, payload)}


def with_checkpoint(receipt: Mapping[str, Any], checkpoint_note: str,
                    inclusion_proof: Sequence[bytes]) -> dict[str, Any]:
    """Return the receipt completed with a signed checkpoint and the leaf's inclusion proof."""
    return {**receipt, "checkpoint": checkpoint_note,
            "inclusion_proof": [node.hex() for node in inclusion_proof]}


def verify_receipt(receipt: Mapping[str, Any], public_keys: Mapping[str, bytes],
                   checkpoint_verifiers: Iterable[NoteVerifier]) -> ReceiptStatus:
    """Check a receipt's signature and, if present, its inclusion in the signed checkpoint.

    `public_keys` are receipt-purpose keys (kid -> raw 32 bytes). Raise InvalidReceipt with a
    reason starting with "receipt:" at the first failure.
    """
    if not isinstance(receipt, Mapping):
        raise InvalidReceipt("receipt: not a JSON object")
    ballot_id = _text(receipt, "ballot_id")
    origin = _text(receipt, "origin")
    cast_at = _text(receipt, "cast_at")
    index = receipt.get("index")
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise InvalidReceipt("receipt: index is not a non-negative integer")
    leaf_hex = _text(receipt, "leaf_hash")
    if not _HEX64.fullmatch(leaf_hex):
        raise InvalidReceipt("receipt: leaf_hash is not 64 lowercase hex digits")
    signature = receipt.get("signature")
    if not isinstance(signature, Mapping):
        raise InvalidReceipt("receipt: signature missing")
    kid = str(signature.get("kid"))
    if kid not in public_keys:
        raise InvalidReceipt(f"receipt: signature key {kid} is not a known receipt key")
    if not verify(signature, receipt_payload(ballot_id, index, leaf_hex, cast_at), public_keys):
        raise InvalidReceipt("receipt: signature does not verify")
    note = receipt.get("checkpoint")
    if note is None:
        return ReceiptStatus(ReceiptState.SIGNED, ballot_id, index, leaf_hex, cast_at, kid)
    if not isinstance(note, str):
        raise InvalidReceipt("receipt: checkpoint is not signed note text")
    try:
        checkpoint = open_checkpoint(note, checkpoint_verifiers, expected_origin=origin)
    except NoteVerificationError as exc:
        raise InvalidReceipt(f"receipt: checkpoint signature: {exc}") from None
    except (MalformedNoteError, MalformedCheckpointError) as exc:
        raise InvalidReceipt(f"receipt: checkpoint: {exc}") from None
    proof = _proof(receipt.get("inclusion_proof"))
    try:
        check_inclusion(bytes.fromhex(leaf_hex), index, checkpoint.tree_size, proof,
                        checkpoint.root_hash)
    except ProofError as exc:
        raise InvalidReceipt(
            f"receipt: inclusion proof does not lead to the checkpoint root ({exc})") from None
    return ReceiptStatus(ReceiptState.CHECKPOINTED, ballot_id, index, leaf_hex, cast_at, kid,
                         checkpoint.tree_size)


def _text(receipt: Mapping[str, Any], name: str) -> str:
    value = receipt.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidReceipt(f"receipt: {name} missing or not a string")
    return value


def _proof(value: object) -> list[bytes]:
    if not isinstance(value, list) or not all(
            isinstance(node, str) and _HEX64.fullmatch(node) for node in value):
        raise InvalidReceipt("receipt: inclusion_proof is not a list of 64-hex hashes")
    return [bytes.fromhex(node) for node in value]
