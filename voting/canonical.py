"""RFC 8785 JSON Canonicalization Scheme (integers only): the one byte form we sign and hash."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

# ECMAScript Number.MAX_SAFE_INTEGER: the largest integer every JSON reader holds exactly.
MAX_SAFE_INTEGER = 2**53 - 1

# JSON.stringify's short escapes (ECMAScript QuoteJSONString); RFC 8785 §3.2.2.2 adopts them.
_SHORT_ESCAPES = {
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
    '"': '\\"',
    "\\": "\\\\",
}


class CanonicalizationError(ValueError):
    """The value has no canonical form here (a float, an unsafe integer, a non-string key...)."""


def canonical_bytes(obj: object) -> bytes:
    """Return the RFC 8785 canonical UTF-8 bytes of a dict/list/str/int/bool/None value."""
    return "".join(_serialize(obj, "$")).encode("utf-8")


def sha256_hex(obj: object) -> str:
    """Return the lowercase hex SHA-256 of the canonical bytes of `obj`."""
    return hashlib.sha256(canonical_bytes(obj)).hexdigest()


def _serialize(obj: object, path: str) -> list[str]:
    if obj is None:
        return ["null"]
    if obj is True:
        return ["true"]
    if obj is False:
        return ["false"]
    if isinstance(obj, int):
        return [_integer(obj, path)]
    if isinstance(obj, float):
        raise CanonicalizationError(f"{path}: floats are never signed or hashed; use integers")
    if isinstance(obj, str):
        return [_string(obj, path)]
    if isinstance(obj, Mapping):
        return _object(obj, path)
    if isinstance(obj, (list, tuple)):
        return _array(obj, path)
    raise CanonicalizationError(f"{path}: {type(obj).__name__} is not a JSON value")


def _integer(value: int, path: str) -> str:
    if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        raise CanonicalizationError(f"{path}: integer {value} is outside ±(2**53-1)")
    return str(int(value))


def _string(value: str, path: str) -> str:
    out = ['"']
    for char in value:
        code = ord(char)
        if char in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[char])
        elif code < 0x20:
            out.append(f"\\u{code:04x}")
        elif 0xD800 <= code <= 0xDFFF:
            # RFC 8785 §3.2.2.2: strings must be valid Unicode; lone surrogates have no UTF-8.
            raise CanonicalizationError(f"{path}: lone surrogate U+{code:04X} in string")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _utf16_sort_key(key: str) -> bytes:
    # RFC 8785 §3.2.3: sort by UTF-16 code units; big-endian bytes compare the same way.
    return key.encode("utf-16-be", errors="surrogatepass")


def _object(obj: Mapping[object, object], path: str) -> list[str]:
    for key in obj:
        if not isinstance(key, str):
            raise CanonicalizationError(f"{path}: object key {key!r} is not a string")
    parts = ["{"]
    for index, key in enumerate(sorted(obj, key=_utf16_sort_key)):  # type: ignore[arg-type]
        if index:
            parts.append(",")
        parts.append(_string(key, path))
        parts.append(":")
        parts.extend(_serialize(obj[key], f"{path}.{key}"))
    parts.append("}")
    return parts


def _array(items: list[object] | tuple[object, ...], path: str) -> list[str]:
    parts = ["["]
    for index, item in enumerate(items):
        if index:
            parts.append(",")
        parts.extend(_serialize(item, f"{path}[{index}]"))
    parts.append("]")
    return parts
