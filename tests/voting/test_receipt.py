"""Specification of vote receipts: signed at cast time, later proved to be in the signed log."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.voting.bundle_factory import BallotBuilder, remove_entry, reseal
from voting.canonical import canonical_bytes
from voting.checkpoint import Checkpoint, NoteSigner, parse_note, sign_checkpoint
from voting.receipt import (
    InvalidReceipt,
    ReceiptState,
    receipt_payload,
    verify_receipt,
)
from voting.signing import KeyPurpose
from voting.verify import VerificationFailed, check_receipt_in_bundle

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built() -> tuple[BallotBuilder, dict[str, Any]]:
    builder = BallotBuilder.story(persons=12)
    return builder, builder.bundle()


@pytest.fixture()
def builder(built: tuple[BallotBuilder, dict[str, Any]]) -> BallotBuilder:
    return built[0]


@pytest.fixture()
def bundle(built: tuple[BallotBuilder, dict[str, Any]]) -> dict[str, Any]:
    return copy.deepcopy(built[1])


def vote_index(bundle: dict[str, Any], nth: int) -> int:
    return [i for i, e in enumerate(bundle["entries"]) if e["type"] == "vote"][nth]


def check(receipt: dict[str, Any], builder: BallotBuilder):  # type: ignore[no-untyped-def]
    return verify_receipt(receipt, builder.keys.keyring.verifier_keys(KeyPurpose.RECEIPT),
                          [builder.keys.note_signer.verifier()])


def reason(receipt: dict[str, Any], builder: BallotBuilder) -> str:
    with pytest.raises(InvalidReceipt) as caught:
        check(receipt, builder)
    return caught.value.reason


def test_receipt_signs_canonical_ballot_index_leaf_and_time(
        bundle: dict[str, Any], builder: BallotBuilder) -> None:
    receipt = builder.receipt(bundle, vote_index(bundle, 2), checkpointed=False)
    payload = receipt_payload(receipt["ballot_id"], receipt["index"], receipt["leaf_hash"],
                              receipt["cast_at"])
    assert set(payload) == {"ballot_id", "index", "leaf_hash", "cast_at"}
    assert canonical_bytes(payload).startswith(b'{"ballot_id":"bl_test","cast_at":')
    assert receipt["signature"]["kid"].startswith("receipt-")


def test_receipt_before_any_checkpoint_is_signed_but_not_yet_checkpointed(
        bundle: dict[str, Any], builder: BallotBuilder) -> None:
    receipt = builder.receipt(bundle, vote_index(bundle, 2), checkpointed=False)
    status = check(receipt, builder)
    assert status.state is ReceiptState.SIGNED
    assert status.state.value == "signed, not yet checkpointed"
    assert status.tree_size is None


def test_checkpointed_receipt_proves_the_vote_is_in_the_signed_tree(
        bundle: dict[str, Any], builder: BallotBuilder) -> None:
    i = vote_index(bundle, 5)
    status = check(builder.receipt(bundle, i), builder)
    assert status.state is ReceiptState.CHECKPOINTED
    assert status.index == i and status.tree_size is not None and status.tree_size > i


@pytest.mark.parametrize("field,value", [("leaf_hash", "00" * 32), ("index", 3),
                                         ("cast_at", "2026-11-11T00:00:00.000Z"),
                                         ("ballot_id", "bl_other")])
def test_receipt_with_a_changed_field_fails_its_signature(
        bundle: dict[str, Any], builder: BallotBuilder, field: str, value: object) -> None:
    receipt = builder.receipt(bundle, vote_index(bundle, 2), checkpointed=False)
    receipt[field] = value
    assert reason(receipt, builder) == "receipt: signature does not verify"


def test_receipt_signed_with_a_result_key_is_not_a_receipt(
        bundle: dict[str, Any], builder: BallotBuilder) -> None:
    receipt = builder.receipt(bundle, vote_index(bundle, 2), checkpointed=False)
    receipt["signature"] = builder.keys.keyring.sign(KeyPurpose.RESULT, receipt_payload(
        receipt["ballot_id"], receipt["index"], receipt["leaf_hash"], receipt["cast_at"]))
    assert reason(receipt, builder).endswith("is not a known receipt key")


def test_receipt_with_a_wrong_inclusion_proof_fails(
        bundle: dict[str, Any], builder: BallotBuilder) -> None:
    receipt = builder.receipt(bundle, vote_index(bundle, 5))
    receipt["inclusion_proof"][0] = "11" * 32
    assert reason(receipt, builder).startswith(
        "receipt: inclusion proof does not lead to the checkpoint root")


def test_receipt_with_a_checkpoint_from_an_unknown_key_fails(
        bundle: dict[str, Any], builder: BallotBuilder) -> None:
    receipt = builder.receipt(bundle, vote_index(bundle, 5))
    cp = Checkpoint.from_text(parse_note(receipt["checkpoint"]).text)
    forger = NoteSigner("smartproperty.example", Ed25519PrivateKey.generate())
    receipt["checkpoint"] = sign_checkpoint(cp, [forger])
    assert reason(receipt, builder) == (
        "receipt: checkpoint signature: no signature from a known key")


def test_receipt_matches_its_bundle(bundle: dict[str, Any], builder: BallotBuilder) -> None:
    i = vote_index(bundle, 5)
    status = check_receipt_in_bundle(builder.receipt(bundle, i), bundle)
    assert status.index == i and status.state is ReceiptState.CHECKPOINTED


def test_cli_checks_a_receipt_against_the_bundle(
        bundle: dict[str, Any], builder: BallotBuilder, tmp_path: Path) -> None:
    (tmp_path / "b.json").write_text(json.dumps(bundle), encoding="utf-8")
    (tmp_path / "r.json").write_text(json.dumps(builder.receipt(bundle, vote_index(bundle, 5))))
    done = subprocess.run([sys.executable, "-m", "voting.verify", str(tmp_path / "b.json"),
                           "--receipt", str(tmp_path / "r.json")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "receipt: entry" in done.stdout and "included in a signed checkpoint" in done.stdout


def test_vote_dropped_and_recounted_by_the_operator_is_exposed_by_its_receipt(
        bundle: dict[str, Any], builder: BallotBuilder) -> None:
    i = vote_index(bundle, 6)
    receipt = builder.receipt(bundle, i)
    remove_entry(bundle, i)
    reseal(bundle, builder.keys, recount=True)
    with pytest.raises(VerificationFailed) as caught:
        check_receipt_in_bundle(receipt, bundle)
    assert caught.value.reason == (
        f"receipt: entry {i} in the bundle is not the receipted record (leaf hash differs)")


def test_receipt_exposes_a_history_rewritten_around_its_vote(
        bundle: dict[str, Any], builder: BallotBuilder) -> None:
    void = next(i for i, e in enumerate(bundle["entries"]) if e["type"] == "void")
    i = next(j for j in vote_index_list(bundle) if j > void)
    receipt = builder.receipt(bundle, i)
    size = Checkpoint.from_text(parse_note(receipt["checkpoint"]).text).tree_size
    bundle["entries"][void]["reason"] = "rewritten"
    reseal(bundle, builder.keys)
    with pytest.raises(VerificationFailed) as caught:
        check_receipt_in_bundle(receipt, bundle)
    assert caught.value.reason == (
        f"receipt: its checkpoint (size {size}) does not match the bundle's log")


def vote_index_list(bundle: dict[str, Any]) -> list[int]:
    return [i for i, e in enumerate(bundle["entries"]) if e["type"] == "vote"]
