"""Ed25519 keyring: one active key per purpose, retired public keys kept so old records verify."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from voting.canonical import canonical_bytes

ALGORITHM = "Ed25519"
KEY_SIZE_BYTES = 32
SIGNATURE_SIZE_BYTES = 64


class KeyPurpose(StrEnum):
    """What a key may sign; each purpose has its own keys (DOMAIN §4)."""

    RECEIPT = "receipt"
    CHECKPOINT = "checkpoint"
    RESULT = "result"
    DISCLOSURE = "disclosure"


class KeyringConfigError(ValueError):
    """The keyring configuration is malformed (bad base64, wrong length, unknown active id...)."""


class UnknownKeyError(LookupError):
    """No key is configured for the requested purpose or key id."""


def derive_key_id(purpose: KeyPurpose | str, public_key_raw: bytes) -> str:
    """Return the recommended key id: '<purpose>-' + first 8 hex of SHA-256(raw public key)."""
    return f"{purpose}-{hashlib.sha256(public_key_raw).hexdigest()[:8]}"


def b64encode(data: bytes) -> str:
    """Standard base64 with padding, as text."""
    return base64.b64encode(data).decode("ascii")


def b64decode_exact(text: str, size: int, what: str) -> bytes:
    """Decode strict standard base64 that must hold exactly `size` bytes."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise KeyringConfigError(f"{what}: not valid base64") from exc
    if len(raw) != size:
        raise KeyringConfigError(f"{what}: expected {size} bytes, got {len(raw)}")
    return raw


def public_key_raw(private_key: Ed25519PrivateKey) -> bytes:
    """Return the 32-byte RFC 8032 encoding of a private key's public key."""
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def private_seed_raw(private_key: Ed25519PrivateKey) -> bytes:
    """Return the 32-byte RFC 8032 private seed."""
    return private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


@dataclass(frozen=True)
class SigningKey:
    """A private Ed25519 key with its id and purpose."""

    key_id: str
    purpose: KeyPurpose
    private_key: Ed25519PrivateKey = field(repr=False, compare=False)

    @property
    def public_key_raw(self) -> bytes:
        """The 32-byte public key."""
        return public_key_raw(self.private_key)

    def sign_bytes(self, message: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of `message`."""
        return self.private_key.sign(message)


@dataclass(frozen=True)
class PublicKeyEntry:
    """A public key the keyring publishes: active, standby or retired."""

    key_id: str
    purpose: KeyPurpose
    public_key_raw: bytes
    is_active: bool
    has_private_key: bool


class Keyring:
    """Signing keys per purpose plus the public keys of retired ids."""

    def __init__(
        self, active: Mapping[KeyPurpose, SigningKey], entries: Iterable[PublicKeyEntry]
    ) -> None:
        self._active = dict(active)
        self._entries = {entry.key_id: entry for entry in entries}

    @classmethod
    def from_config(cls, config: Mapping[str, Mapping[str, object]]) -> Keyring:
        """Build from {purpose: {"active": kid, "keys": {kid: seed}, "retired": {kid: pubkey}}}.

        Seeds and public keys are standard base64 of 32 raw bytes. Key ids may be configured
        freely; `derive_key_id` gives the recommended form.
        """
        active: dict[KeyPurpose, SigningKey] = {}
        entries: list[PublicKeyEntry] = []
        for purpose_name, section in config.items():
            purpose = _purpose(purpose_name)
            keys = _mapping(section.get("keys", {}), f"{purpose}.keys")
            retired = _mapping(section.get("retired", {}), f"{purpose}.retired")
            active_id = section.get("active")
            if active_id not in keys:
                raise KeyringConfigError(f"{purpose}: active key id {active_id!r} not in keys")
            for key_id, seed_b64 in keys.items():
                seed = b64decode_exact(seed_b64, KEY_SIZE_BYTES, f"{purpose}.keys.{key_id}")
                key = SigningKey(key_id, purpose, Ed25519PrivateKey.from_private_bytes(seed))
                is_active = key_id == active_id
                entries.append(
                    PublicKeyEntry(key_id, purpose, key.public_key_raw, is_active, True)
                )
                if is_active:
                    active[purpose] = key
            for key_id, public_b64 in retired.items():
                raw = b64decode_exact(public_b64, KEY_SIZE_BYTES, f"{purpose}.retired.{key_id}")
                _check_public_key(raw, f"{purpose}.retired.{key_id}")
                entries.append(PublicKeyEntry(key_id, purpose, raw, False, False))
        _check_unique_ids(entries)
        return cls(active, entries)

    def active_key(self, purpose: KeyPurpose) -> SigningKey:
        """Return the key that signs new records for `purpose`."""
        try:
            return self._active[KeyPurpose(purpose)]
        except KeyError:
            raise UnknownKeyError(f"no active key for purpose {purpose!s}") from None

    def sign(self, purpose: KeyPurpose, payload: object) -> dict[str, str]:
        """Sign the canonical bytes of `payload`; return {"alg", "kid", "sig"}."""
        key = self.active_key(purpose)
        signature = key.sign_bytes(canonical_bytes(payload))
        return {"alg": ALGORITHM, "kid": key.key_id, "sig": b64encode(signature)}

    def verifier_keys(self, purpose: KeyPurpose | None = None) -> dict[str, bytes]:
        """Return key id -> raw public key, optionally only for one purpose (for `verify`)."""
        return {
            entry.key_id: entry.public_key_raw
            for entry in self._entries.values()
            if purpose is None or entry.purpose == purpose
        }

    def public_keys(self) -> dict[str, dict[str, object]]:
        """Export kid -> {"alg", "purpose", "public_key" (base64 raw), "active"} to publish."""
        return {
            entry.key_id: {
                "alg": ALGORITHM,
                "purpose": str(entry.purpose),
                "public_key": b64encode(entry.public_key_raw),
                "active": entry.is_active,
            }
            for entry in sorted(self._entries.values(), key=lambda e: e.key_id)
        }

    def entries(self) -> tuple[PublicKeyEntry, ...]:
        """All public key entries, sorted by key id."""
        return tuple(sorted(self._entries.values(), key=lambda e: e.key_id))


def verify(
    signature: Mapping[str, object], payload: object, public_keys: Mapping[str, bytes]
) -> bool:
    """Return whether `signature` is a valid Ed25519 signature of `payload` by a key in the map."""
    if signature.get("alg") != ALGORITHM:
        return False
    key_id, sig_b64 = signature.get("kid"), signature.get("sig")
    if not isinstance(key_id, str) or not isinstance(sig_b64, str):
        return False
    raw_key = public_keys.get(key_id)
    if raw_key is None or len(raw_key) != KEY_SIZE_BYTES:
        return False
    try:
        raw_signature = b64decode_exact(sig_b64, SIGNATURE_SIZE_BYTES, "sig")
        Ed25519PublicKey.from_public_bytes(raw_key).verify(raw_signature, canonical_bytes(payload))
    except (KeyringConfigError, InvalidSignature, ValueError):
        return False
    return True


def generate_keyring_config(
    purposes: Iterable[KeyPurpose | str] = tuple(KeyPurpose),
) -> dict[str, dict[str, object]]:
    """Generate a fresh config with one derived-id key per purpose (for demos and tests)."""
    config: dict[str, dict[str, object]] = {}
    for purpose_name in purposes:
        purpose = _purpose(purpose_name)
        private_key = Ed25519PrivateKey.generate()
        key_id = derive_key_id(purpose, public_key_raw(private_key))
        config[str(purpose)] = {
            "active": key_id,
            "keys": {key_id: b64encode(private_seed_raw(private_key))},
            "retired": {},
        }
    return config


def _purpose(name: object) -> KeyPurpose:
    try:
        return KeyPurpose(str(name))
    except ValueError:
        raise KeyringConfigError(f"unknown key purpose {name!r}") from None


def _mapping(value: object, what: str) -> Mapping[str, str]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and k and isinstance(v, str) for k, v in value.items()
    ):
        raise KeyringConfigError(f"{what}: expected a mapping of key id -> base64 text")
    return value


def _check_public_key(raw: bytes, what: str) -> None:
    try:
        Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise KeyringConfigError(f"{what}: not an Ed25519 public key") from exc


def _check_unique_ids(entries: Iterable[PublicKeyEntry]) -> None:
    seen: set[str] = set()
    for entry in entries:
        if entry.key_id in seen:
            # Signatures name only the kid, so one id must mean one key across all purposes.
            raise KeyringConfigError(f"key id {entry.key_id!r} is configured twice")
        seen.add(entry.key_id)
