"""C2SP signed-note and tlog-checkpoint text formats with Ed25519 signatures."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from voting.merkle import HASH_SIZE_BYTES
from voting.signing import SigningKey, public_key_raw

# c2sp.org/signed-note: signature type byte 0x01 is Ed25519.
SIGNATURE_TYPE_ED25519 = b"\x01"
KEY_HASH_SIZE_BYTES = 4
ED25519_KEY_SIZE_BYTES = 32
ED25519_SIGNATURE_SIZE_BYTES = 64
SIGNATURE_LINE_PREFIX = "\u2014 "  # em dash, space
# The spec requires accepting at least 16 signatures; golang.org/x/mod/sumdb/note stops at 100.
MAX_SIGNATURES = 100
_TREE_SIZE = re.compile(r"0|[1-9][0-9]*")
_MAX_TREE_SIZE = 2**64 - 1


class MalformedNoteError(ValueError):
    """The text is not a well-formed signed note."""


class MalformedCheckpointError(ValueError):
    """The note text is not a well-formed tlog checkpoint."""


class NoteKeyError(ValueError):
    """A verifier or signer key string is malformed or its key hash does not match."""


class NoteVerificationError(ValueError):
    """A known key's signature failed, or no known key signed the note."""


def check_key_name(name: str) -> None:
    """Raise NoteKeyError unless `name` is non-empty, without spaces or '+' (signed-note)."""
    if not name or "+" in name or any(char.isspace() for char in name):
        raise NoteKeyError(f"invalid key name {name!r}")
    if any(ord(char) < 0x20 for char in name):
        raise NoteKeyError(f"key name {name!r} contains control characters")


def key_hash(name: str, public_key: bytes) -> bytes:
    """Return SHA-256(name || 0x0A || 0x01 || public key)[:4], the Ed25519 note key id."""
    material = name.encode("utf-8") + b"\n" + SIGNATURE_TYPE_ED25519 + public_key
    return hashlib.sha256(material).digest()[:KEY_HASH_SIZE_BYTES]


@dataclass(frozen=True)
class NoteVerifier:
    """A trusted Ed25519 note key: a name and a 32-byte public key."""

    name: str
    public_key_raw: bytes

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if len(self.public_key_raw) != ED25519_KEY_SIZE_BYTES:
            raise NoteKeyError("an Ed25519 public key is 32 bytes")

    @property
    def key_hash(self) -> bytes:
        """The 4-byte key id that prefixes this key's signatures."""
        return key_hash(self.name, self.public_key_raw)

    def to_string(self) -> str:
        """Return the verifier key string '<name>+<hex key hash>+<base64(0x01 || key)>'."""
        encoded = base64.b64encode(SIGNATURE_TYPE_ED25519 + self.public_key_raw).decode()
        return f"{self.name}+{self.key_hash.hex()}+{encoded}"

    @classmethod
    def from_string(cls, text: str) -> NoteVerifier:
        """Parse a verifier key string, checking the key hash and the algorithm byte."""
        name, key_hash_hex, key_material = _split_key_string(text, 3)
        verifier = cls(name, _decode_typed_key(key_material))
        _check_key_hash(key_hash_hex, verifier.key_hash)
        return verifier

    def verify(self, text: bytes, signature: bytes) -> bool:
        """Return whether `signature` (64 bytes, no key-hash prefix) signs `text`."""
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key_raw).verify(signature, text)
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class NoteSigner:
    """A named Ed25519 private key that signs notes."""

    name: str
    private_key: Ed25519PrivateKey = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        check_key_name(self.name)

    @classmethod
    def from_signing_key(cls, name: str, key: SigningKey) -> NoteSigner:
        """Use a keyring key (normally of purpose 'checkpoint') under the note key `name`."""
        return cls(name, key.private_key)

    @classmethod
    def from_string(cls, text: str) -> NoteSigner:
        """Parse 'PRIVATE+KEY+<name>+<hex key hash>+<base64(0x01 || seed)>'."""
        if not text.startswith("PRIVATE+KEY+"):
            raise NoteKeyError("signer key must start with PRIVATE+KEY+")
        name, key_hash_hex, key_material = _split_key_string(text[len("PRIVATE+KEY+") :], 3)
        seed = _decode_typed_key(key_material)
        signer = cls(name, Ed25519PrivateKey.from_private_bytes(seed))
        _check_key_hash(key_hash_hex, signer.verifier().key_hash)
        return signer

    def verifier(self) -> NoteVerifier:
        """Return the matching public verifier."""
        return NoteVerifier(self.name, public_key_raw(self.private_key))

    def sign(self, text: bytes) -> NoteSignature:
        """Sign note text, returning the signature line's content."""
        signature = self.private_key.sign(text)
        return NoteSignature(self.name, self.verifier().key_hash, signature)


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, 4-byte key hash, signature bytes."""

    name: str
    key_hash: bytes
    signature: bytes

    def to_line(self) -> str:
        """Return '— <name> <base64(key hash || signature)>\\n'."""
        encoded = base64.b64encode(self.key_hash + self.signature).decode()
        return f"{SIGNATURE_LINE_PREFIX}{self.name} {encoded}\n"


@dataclass(frozen=True)
class Note:
    """A parsed (not yet verified) signed note."""

    text: str
    signatures: tuple[NoteSignature, ...]


def sign_note(text: str, signers: Sequence[NoteSigner]) -> str:
    """Return `text` followed by a blank line and one signature line per signer."""
    _check_text(text)
    if not text.endswith("\n"):
        raise MalformedNoteError("note text must end with a newline")
    if not signers:
        raise MalformedNoteError("a signed note needs at least one signature")
    message = text.encode("utf-8")
    lines = "".join(signer.sign(message).to_line() for signer in signers)
    return f"{text}\n{lines}"


def parse_note(note: str | bytes) -> Note:
    """Split a signed note into text and signature lines; raise MalformedNoteError if malformed."""
    if isinstance(note, bytes):
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedNoteError("note is not valid UTF-8") from None
    _check_text(note)
    split = note.rfind("\n\n")
    if split < 0:
        raise MalformedNoteError("no blank line before the signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block.endswith("\n"):
        raise MalformedNoteError("signature block must be non-empty and end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNoteError(f"more than {MAX_SIGNATURES} signatures")
    return Note(text, tuple(_parse_signature_line(line) for line in lines))


def open_note(
    note: str | bytes, verifiers: Iterable[NoteVerifier]
) -> tuple[str, tuple[NoteSignature, ...]]:
    """Verify a note against trusted keys; return its text and the signatures that verified.

    Signatures from unknown keys are ignored; a failing signature from a known key rejects the
    whole note; at least one known key must have signed (c2sp.org/signed-note §Signatures).
    """
    parsed = parse_note(note)
    known = {(v.name, v.key_hash): v for v in verifiers}
    message = parsed.text.encode("utf-8")
    verified: list[NoteSignature] = []
    seen: set[tuple[str, bytes]] = set()
    for signature in parsed.signatures:
        ident = (signature.name, signature.key_hash)
        verifier = known.get(ident)
        if verifier is None or ident in seen:
            continue
        seen.add(ident)
        if not verifier.verify(message, signature.signature):
            raise NoteVerificationError(f"signature by {signature.name} does not verify")
        verified.append(signature)
    if not verified:
        raise NoteVerificationError("no signature from a known key")
    return parsed.text, tuple(verified)


@dataclass(frozen=True)
class Checkpoint:
    """A tlog checkpoint: origin, tree size and RFC 6962 root hash (plus optional extensions)."""

    origin: str
    tree_size: int
    root_hash: bytes
    extension_lines: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise MalformedCheckpointError("origin must be one non-empty line")
        if not 0 <= self.tree_size <= _MAX_TREE_SIZE:
            raise MalformedCheckpointError(f"tree size {self.tree_size} out of range")
        if len(self.root_hash) != HASH_SIZE_BYTES:
            raise MalformedCheckpointError("root hash must be 32 bytes")
        if any(not line or "\n" in line for line in self.extension_lines):
            raise MalformedCheckpointError("extension lines must be single non-empty lines")

    def to_text(self) -> str:
        """Return the note text: origin, size, base64 root, extension lines, each ending in \\n."""
        root = base64.b64encode(self.root_hash).decode()
        lines = [self.origin, str(self.tree_size), root, *self.extension_lines]
        return "".join(f"{line}\n" for line in lines)

    @classmethod
    def from_text(cls, text: str) -> Checkpoint:
        """Parse checkpoint note text strictly (c2sp.org/tlog-checkpoint §Note text)."""
        if not text.endswith("\n"):
            raise MalformedCheckpointError("checkpoint text must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise MalformedCheckpointError("checkpoint needs origin, size and root lines")
        origin, size_line, root_line, *extensions = lines
        if not _TREE_SIZE.fullmatch(size_line):
            raise MalformedCheckpointError(f"tree size {size_line!r} is not canonical decimal")
        try:
            root = base64.b64decode(root_line, validate=True)
        except (binascii.Error, ValueError):
            raise MalformedCheckpointError("root hash is not base64") from None
        if base64.b64encode(root).decode() != root_line:
            raise MalformedCheckpointError("root hash is not canonical base64")
        return cls(origin, int(size_line), root, tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, signers: Sequence[NoteSigner]) -> str:
    """Return the checkpoint as a signed note."""
    return sign_note(checkpoint.to_text(), signers)


def open_checkpoint(
    note: str | bytes, verifiers: Iterable[NoteVerifier], *, expected_origin: str
) -> Checkpoint:
    """Verify a signed checkpoint and check it is for `expected_origin` (one log per ballot)."""
    text, _ = open_note(note, verifiers)
    checkpoint = Checkpoint.from_text(text)
    if checkpoint.origin != expected_origin:
        raise MalformedCheckpointError(
            f"checkpoint is for {checkpoint.origin!r}, expected {expected_origin!r}"
        )
    return checkpoint


def _check_text(text: str) -> None:
    for char in text:
        if ord(char) < 0x20 and char != "\n":
            raise MalformedNoteError("notes must not contain control characters")
        if 0xD800 <= ord(char) <= 0xDFFF:
            raise MalformedNoteError("note is not valid UTF-8")


def _parse_signature_line(line: str) -> NoteSignature:
    if not line.startswith(SIGNATURE_LINE_PREFIX):
        raise MalformedNoteError("signature line must start with an em dash and a space")
    name, _, encoded = line[len(SIGNATURE_LINE_PREFIX) :].partition(" ")
    try:
        check_key_name(name)
        raw = base64.b64decode(encoded, validate=True)
    except (NoteKeyError, binascii.Error, ValueError):
        raise MalformedNoteError(f"malformed signature line {line!r}") from None
    if len(raw) <= KEY_HASH_SIZE_BYTES:
        raise MalformedNoteError("signature too short")
    return NoteSignature(name, raw[:KEY_HASH_SIZE_BYTES], raw[KEY_HASH_SIZE_BYTES:])


def _split_key_string(text: str, parts: int) -> list[str]:
    # The base64 part may itself contain '+', so split only `parts - 1` times.
    pieces = text.split("+", parts - 1)
    if len(pieces) != parts:
        raise NoteKeyError("key string has too few '+'-separated parts")
    return pieces


def _decode_typed_key(key_material: str) -> bytes:
    try:
        raw = base64.b64decode(key_material, validate=True)
    except (binascii.Error, ValueError):
        raise NoteKeyError("key material is not base64") from None
    if len(raw) != 1 + ED25519_KEY_SIZE_BYTES or raw[:1] != SIGNATURE_TYPE_ED25519:
        raise NoteKeyError("key material must be 0x01 followed by 32 bytes")
    return raw[1:]


def _check_key_hash(key_hash_hex: str, expected: bytes) -> None:
    if len(key_hash_hex) != 2 * KEY_HASH_SIZE_BYTES:
        raise NoteKeyError("key hash must be 8 hex digits")
    try:
        claimed = bytes.fromhex(key_hash_hex)
    except ValueError:
        raise NoteKeyError("key hash is not hex") from None
    if claimed != expected:
        raise NoteKeyError("key hash does not match the name and key")
