"""Specification of C2SP signed notes and tlog checkpoints, anchored to the Go sumdb/note vector."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from voting.checkpoint import (
    Checkpoint,
    MalformedCheckpointError,
    MalformedNoteError,
    NoteKeyError,
    NoteSigner,
    NoteVerificationError,
    NoteVerifier,
    key_hash,
    open_checkpoint,
    open_note,
    parse_note,
    sign_checkpoint,
    sign_note,
)
from voting.merkle import MerkleTree
from voting.signing import KeyPurpose, Keyring, generate_keyring_config

GO = json.loads((Path(__file__).parent / "data" / "note_vectors.json").read_text())
ORIGIN = "tengzhou.example/ballot/b-2024-001"


def _signer(name: str = ORIGIN) -> NoteSigner:
    return NoteSigner(name, Ed25519PrivateKey.generate())


def _checkpoint(size: int = 3) -> Checkpoint:
    tree = MerkleTree()
    for i in range(size):
        tree.append(f"vote-{i}".encode())
    return Checkpoint(ORIGIN, tree.size, tree.root())


def test_signing_the_go_example_reproduces_the_published_note_byte_for_byte() -> None:
    signer = NoteSigner.from_string(GO["signer_key"])
    assert sign_note(GO["text"], [signer]) == GO["signed_note"]


def test_go_verifier_key_string_is_parsed_and_re_encoded_identically() -> None:
    verifier = NoteVerifier.from_string(GO["verifier_key"])
    assert verifier.name == "PeterNeumann"
    assert verifier.key_hash.hex() == "c74f20a3"
    assert verifier.to_string() == GO["verifier_key"]
    assert NoteSigner.from_string(GO["signer_key"]).verifier() == verifier


def test_go_signed_note_opens_with_its_verifier() -> None:
    text, verified = open_note(GO["signed_note"], [NoteVerifier.from_string(GO["verifier_key"])])
    assert text == GO["text"]
    assert [s.name for s in verified] == ["PeterNeumann"]


def test_key_hash_is_sha256_of_name_newline_type_byte_and_public_key() -> None:
    public = NoteVerifier.from_string(GO["verifier_key"]).public_key_raw
    expected = hashlib.sha256(b"PeterNeumann\n\x01" + public).digest()[:4]
    assert key_hash("PeterNeumann", public) == expected


def test_a_changed_text_fails_against_a_known_key() -> None:
    tampered = GO["signed_note"].replace("cryptography", "cryptographY")
    with pytest.raises(NoteVerificationError, match="does not verify"):
        open_note(tampered, [NoteVerifier.from_string(GO["verifier_key"])])


def test_a_note_signed_only_by_unknown_keys_is_rejected() -> None:
    with pytest.raises(NoteVerificationError, match="no signature from a known key"):
        open_note(GO["signed_note"], [_signer("PeterNeumann").verifier()])


def test_unknown_signatures_are_ignored_when_a_known_key_verifies() -> None:
    ours, witness = _signer(), _signer("witness.example/w1")
    note = sign_note("hello\n", [witness, ours])
    _, verified = open_note(note, [ours.verifier()])
    assert [s.name for s in verified] == [ORIGIN]


@pytest.mark.parametrize(
    "note",
    [
        "no blank line\n\u2014 a AAAAAAA=\n",
        "text\n\n",
        "text\n\n\u2014 a AAAAAAA=",
        "text\n\n- a AAAAAAA=\n",
        "text\n\n\u2014 a+b AAAAAAA=\n",
        "text\n\n\u2014 a not-base64\n",
        "text\n\n\u2014 a AAAA\n",
        "tab\there\n\n\u2014 a AAAAAAA=\n",
    ],
)
def test_malformed_notes_are_rejected(note: str) -> None:
    with pytest.raises(MalformedNoteError):
        parse_note(note)


def test_invalid_utf8_is_rejected() -> None:
    with pytest.raises(MalformedNoteError, match="UTF-8"):
        parse_note(b"text\xff\n\n\xe2\x80\x94 a AAAAAAA=\n")


def test_text_may_contain_blank_lines_and_the_last_blank_line_separates_signatures() -> None:
    signer = _signer()
    note = sign_note("para one\n\npara two\n", [signer])
    text, _ = open_note(note, [signer.verifier()])
    assert text == "para one\n\npara two\n"


def test_signing_requires_text_ending_in_newline() -> None:
    with pytest.raises(MalformedNoteError):
        sign_note("no newline", [_signer()])


@pytest.mark.parametrize(
    "mangle",
    [
        lambda k: k.replace("c74f20a3", "c74f20a4"),
        lambda k: k.replace("PeterNeumann", "PeterNeumanm"),
        lambda k: k.replace("+ARpc", "+AhpC"),
        lambda k: k[: k.rindex("+") + 4],
        lambda k: k.replace("PeterNeumann+", ""),
    ],
)
def test_mangled_verifier_keys_are_rejected(mangle: Callable[[str], str]) -> None:
    with pytest.raises(NoteKeyError):
        NoteVerifier.from_string(mangle(GO["verifier_key"]))


def test_checkpoint_text_is_origin_size_and_base64_root() -> None:
    checkpoint = _checkpoint(3)
    root = base64.b64encode(checkpoint.root_hash).decode()
    assert checkpoint.to_text() == f"{ORIGIN}\n3\n{root}\n"
    assert Checkpoint.from_text(checkpoint.to_text()) == checkpoint


def test_checkpoint_extension_lines_round_trip() -> None:
    checkpoint = Checkpoint(ORIGIN, 0, hashlib.sha256(b"").digest(), ("ballot-closes 2024",))
    assert Checkpoint.from_text(checkpoint.to_text()) == checkpoint


def test_the_tlog_checkpoint_spec_example_body_parses() -> None:
    body = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    checkpoint = Checkpoint.from_text(body)
    assert (checkpoint.origin, checkpoint.tree_size) == ("example.com/behind-the-sofa", 20852163)
    assert checkpoint.to_text() == body


@pytest.mark.parametrize(
    "text",
    [
        "origin\n3\n",
        "\n3\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
        "origin\n03\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
        "origin\n-3\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
        "origin\n3\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I\n",
        "origin\n3\nAAAA\n",
        "origin\n3\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n",
        "origin\n3\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=",
    ],
)
def test_malformed_checkpoint_bodies_are_rejected(text: str) -> None:
    with pytest.raises(MalformedCheckpointError):
        Checkpoint.from_text(text)


def test_signed_checkpoint_opens_with_the_log_key_from_the_keyring() -> None:
    keyring = Keyring.from_config(generate_keyring_config([KeyPurpose.CHECKPOINT]))
    signer = NoteSigner.from_signing_key(ORIGIN, keyring.active_key(KeyPurpose.CHECKPOINT))
    checkpoint = _checkpoint(5)
    note = sign_checkpoint(checkpoint, [signer])
    assert note.startswith(checkpoint.to_text() + "\n\u2014 " + ORIGIN + " ")
    verifier = NoteVerifier.from_string(signer.verifier().to_string())
    assert open_checkpoint(note, [verifier], expected_origin=ORIGIN) == checkpoint


def test_checkpoint_of_another_ballot_is_rejected_even_with_a_valid_signature() -> None:
    signer = _signer("platform.example/checkpoints")
    note = sign_checkpoint(_checkpoint(), [signer])
    with pytest.raises(MalformedCheckpointError, match="expected"):
        open_checkpoint(note, [signer.verifier()], expected_origin=ORIGIN + "-other")


def test_checkpoint_with_a_forged_size_fails_verification() -> None:
    signer = _signer()
    note = sign_checkpoint(_checkpoint(3), [signer])
    forged = note.replace(f"{ORIGIN}\n3\n", f"{ORIGIN}\n2\n")
    with pytest.raises(NoteVerificationError):
        open_checkpoint(forged, [signer.verifier()], expected_origin=ORIGIN)
