"""Specification of the Ed25519 keyring: per-purpose keys, rotation, and verification."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from voting.canonical import canonical_bytes
from voting.signing import (
    KeyPurpose,
    Keyring,
    KeyringConfigError,
    UnknownKeyError,
    derive_key_id,
    generate_keyring_config,
    private_seed_raw,
    public_key_raw,
    verify,
)

# RFC 8032 §7.1 TEST 1: secret key and public key.
RFC8032_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")

RECEIPT = {"ballot_id": "b-1", "leaf_index": 7, "choice_hash": "ab" * 32}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _rotated_config() -> tuple[dict[str, dict[str, object]], Ed25519PrivateKey]:
    """A receipt section whose old key was retired (public part only) and a new one is active."""
    old = Ed25519PrivateKey.generate()
    new = Ed25519PrivateKey.generate()
    new_id = derive_key_id(KeyPurpose.RECEIPT, public_key_raw(new))
    config: dict[str, dict[str, object]] = {
        "receipt": {
            "active": new_id,
            "keys": {new_id: _b64(private_seed_raw(new))},
            "retired": {"receipt-2024": _b64(public_key_raw(old))},
        }
    }
    return config, old


def test_key_id_is_purpose_and_first_eight_hex_of_sha256_of_the_public_key() -> None:
    expected = "receipt-" + hashlib.sha256(RFC8032_PUBLIC).hexdigest()[:8]
    assert derive_key_id(KeyPurpose.RECEIPT, RFC8032_PUBLIC) == expected


def test_configured_seed_yields_the_rfc8032_public_key() -> None:
    keyring = Keyring.from_config(
        {"result": {"active": "result-main", "keys": {"result-main": _b64(RFC8032_SEED)}}}
    )
    assert keyring.active_key(KeyPurpose.RESULT).public_key_raw == RFC8032_PUBLIC
    assert keyring.public_keys()["result-main"]["public_key"] == _b64(RFC8032_PUBLIC)


def test_signature_is_over_the_canonical_bytes_and_names_its_key() -> None:
    keyring = Keyring.from_config(generate_keyring_config([KeyPurpose.RECEIPT]))
    signature = keyring.sign(KeyPurpose.RECEIPT, RECEIPT)
    key = keyring.active_key(KeyPurpose.RECEIPT)
    assert signature["alg"] == "Ed25519"
    assert signature["kid"] == key.key_id
    raw = base64.b64decode(signature["sig"])
    key.private_key.public_key().verify(raw, canonical_bytes(RECEIPT))


def test_signature_verifies_and_key_order_in_the_payload_does_not_matter() -> None:
    keyring = Keyring.from_config(generate_keyring_config())
    signature = keyring.sign(KeyPurpose.RECEIPT, RECEIPT)
    reordered = dict(reversed(list(RECEIPT.items())))
    assert verify(signature, reordered, keyring.verifier_keys(KeyPurpose.RECEIPT))


def test_tampered_payload_fails_verification() -> None:
    keyring = Keyring.from_config(generate_keyring_config())
    signature = keyring.sign(KeyPurpose.RECEIPT, RECEIPT)
    assert not verify(signature, {**RECEIPT, "leaf_index": 8}, keyring.verifier_keys())


def test_a_receipt_signature_does_not_verify_under_the_result_keys() -> None:
    keyring = Keyring.from_config(generate_keyring_config())
    signature = keyring.sign(KeyPurpose.RECEIPT, RECEIPT)
    assert not verify(signature, RECEIPT, keyring.verifier_keys(KeyPurpose.RESULT))


@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: {**s, "alg": "EdDSA"},
        lambda s: {**s, "kid": "receipt-unknown"},
        lambda s: {**s, "sig": "not base64!"},
        lambda s: {**s, "sig": _b64(b"\x00" * 63)},
        lambda s: {k: v for k, v in s.items() if k != "kid"},
    ],
)
def test_malformed_signature_objects_fail_verification(
    mangle: Callable[[dict[str, str]], dict[str, str]],
) -> None:
    keyring = Keyring.from_config(generate_keyring_config())
    signature = keyring.sign(KeyPurpose.RECEIPT, RECEIPT)
    assert not verify(mangle(signature), RECEIPT, keyring.verifier_keys())


def test_records_signed_before_rotation_still_verify_with_the_retired_public_key() -> None:
    config, old = _rotated_config()
    old_signature = {
        "alg": "Ed25519",
        "kid": "receipt-2024",
        "sig": _b64(old.sign(canonical_bytes(RECEIPT))),
    }
    keyring = Keyring.from_config(config)
    assert verify(old_signature, RECEIPT, keyring.verifier_keys(KeyPurpose.RECEIPT))
    assert keyring.sign(KeyPurpose.RECEIPT, RECEIPT)["kid"] != "receipt-2024"


def test_public_key_export_lists_purpose_and_active_flag_and_no_secrets() -> None:
    config, old = _rotated_config()
    exported = Keyring.from_config(config).public_keys()
    assert exported["receipt-2024"] == {
        "alg": "Ed25519",
        "purpose": "receipt",
        "public_key": _b64(public_key_raw(old)),
        "active": False,
    }
    seeds = config["receipt"]["keys"].values()  # type: ignore[union-attr]
    assert not any(seed in repr(exported) for seed in seeds)


def test_signing_key_repr_does_not_leak_the_private_key() -> None:
    keyring = Keyring.from_config(generate_keyring_config([KeyPurpose.RESULT]))
    assert "private" not in repr(keyring.active_key(KeyPurpose.RESULT))


def test_generated_config_has_one_derived_key_per_purpose() -> None:
    config = generate_keyring_config()
    assert set(config) == {"receipt", "checkpoint", "result", "disclosure"}
    for purpose, section in config.items():
        assert str(section["active"]).startswith(f"{purpose}-")


def test_asking_for_a_purpose_without_keys_raises() -> None:
    keyring = Keyring.from_config(generate_keyring_config([KeyPurpose.RECEIPT]))
    with pytest.raises(UnknownKeyError):
        keyring.sign(KeyPurpose.DISCLOSURE, RECEIPT)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"bogus": {"active": "x", "keys": {"x": _b64(RFC8032_SEED)}}}, "unknown key purpose"),
        ({"result": {"active": "y", "keys": {"x": _b64(RFC8032_SEED)}}}, "active key id"),
        ({"result": {"active": "x", "keys": {"x": _b64(b"\x01" * 31)}}}, "expected 32 bytes"),
        ({"result": {"active": "x", "keys": {"x": "%%%"}}}, "not valid base64"),
        (
            {
                "result": {"active": "x", "keys": {"x": _b64(RFC8032_SEED)}},
                "receipt": {"active": "x", "keys": {"x": _b64(RFC8032_SEED)}},
            },
            "configured twice",
        ),
    ],
)
def test_malformed_configuration_is_rejected(config: dict[str, Any], message: str) -> None:
    with pytest.raises(KeyringConfigError, match=message):
        Keyring.from_config(config)
