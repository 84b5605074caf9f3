"""Signing keys from SIGNING_KEYS_FILE; `python -m server.keys generate` writes a new keyring.

Rotation: add a new key id under the purpose, make it "active", and move the old id to
"retired" with only its public key — records signed before the rotation still verify.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from voting.signing import Keyring, KeyPurpose, generate_keyring_config


class KeysError(RuntimeError):
    """The keyring file is missing or invalid."""


def load_keyring(path: str) -> Keyring:
    try:
        config = json.loads(Path(path).read_text())
        return Keyring.from_config(config)
    except (OSError, ValueError) as exc:
        raise KeysError(f"SIGNING_KEYS_FILE={path}: {exc}") from None


def write_new_keyring(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(generate_keyring_config(tuple(KeyPurpose)), indent=2))
    path.chmod(0o600)


if __name__ == "__main__":
    if sys.argv[1:2] != ["generate"]:
        print("usage: python -m server.keys generate > keys.json", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(generate_keyring_config(tuple(KeyPurpose)), indent=2))
