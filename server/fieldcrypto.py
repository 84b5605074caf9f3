"""Fields protected at rest: AES-256-GCM encryption and keyed hashes (HMAC-SHA256)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class FieldCrypto:
    """Encrypts phones and WeChat session keys; hashes ID numbers and phones for lookup."""

    def __init__(self, enc_key_b64: str, hash_key_b64: str) -> None:
        self._aes = AESGCM(base64.b64decode(enc_key_b64))
        self._hash_key = base64.b64decode(hash_key_b64)

    def encrypt(self, plaintext: str, context: str) -> str:
        """Encrypt; `context` (e.g. 'phone') is bound as associated data."""
        nonce = os.urandom(12)
        sealed = self._aes.encrypt(nonce, plaintext.encode(), context.encode())
        return "v1." + base64.b64encode(nonce + sealed).decode()

    def decrypt(self, token: str, context: str) -> str:
        raw = base64.b64decode(token.removeprefix("v1."))
        return self._aes.decrypt(raw[:12], raw[12:], context.encode()).decode()

    def keyed_hash(self, value: str, context: str) -> str:
        """Deterministic keyed hash for equality lookups (an ID number, a phone)."""
        mac = hmac.new(self._hash_key, f"{context}\x00{value}".encode(), hashlib.sha256)
        return mac.hexdigest()


def normalise_id_number(value: str) -> str:
    return value.strip().upper()


def normalise_phone(value: str) -> str:
    digits = "".join(ch for ch in value if ch.isdigit())
    return digits[-11:] if len(digits) >= 11 else digits


def mask_phone(phone: str) -> str:
    return phone[:3] + "****" + phone[-4:] if len(phone) >= 7 else "****"
