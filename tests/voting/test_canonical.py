"""Specification of the RFC 8785 canonical form used for everything signed or hashed."""

from __future__ import annotations

import hashlib
import json

import pytest

from voting.canonical import (
    MAX_SAFE_INTEGER,
    CanonicalizationError,
    canonical_bytes,
    sha256_hex,
)


def test_rfc8785_string_escaping_example_is_reproduced_byte_for_byte() -> None:
    # RFC 8785 §3.2.2.2 example, the "string" and "literals" members (numbers dropped: no floats).
    parsed = json.loads(
        '{"string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    expected = '{"literals":[null,true,false],"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    assert canonical_bytes(parsed) == expected.encode("utf-8")


def test_rfc8785_key_sorting_example_orders_keys_by_utf16_code_units() -> None:
    # RFC 8785 §3.2.3 example: the emoji (surrogates D83D DE00) sorts before U+FB33.
    parsed = json.loads(
        '{"\\u20ac": "Euro Sign", "\\r": "Carriage Return",'
        ' "\\ufb33": "Hebrew Letter Dalet With Dagesh", "1": "One",'
        ' "\\ud83d\\ude00": "Emoji: Grinning Face", "\\u0080": "Control",'
        ' "\\u00f6": "Latin Small Letter O With Diaeresis"}'
    )
    values_in_order = [
        "Carriage Return",
        "One",
        "Control",
        "Latin Small Letter O With Diaeresis",
        "Euro Sign",
        "Emoji: Grinning Face",
        "Hebrew Letter Dalet With Dagesh",
    ]
    text = canonical_bytes(parsed).decode("utf-8")
    positions = [text.index(value) for value in values_in_order]
    assert positions == sorted(positions)
    assert text.startswith('{"\\r":"Carriage Return","1":"One","\u0080":"Control"')


def test_rfc8785_key_sorting_example_bytes_match_the_rfc_hex_dump() -> None:
    # RFC 8785 §3.2.3 gives the UTF-8 of the first members: 7b 22 5c 72 22 3a ... c2 80
    text = canonical_bytes({"\r": "Carriage Return", "1": "One", "\u0080": "Control"})
    assert text.hex().startswith("7b225c72223a22436172726961676520526574")
    assert b'"\xc2\x80":"Control"' in text


def test_no_whitespace_and_nested_objects_are_sorted_too() -> None:
    obj = {"b": {"z": 1, "a": [2, {"y": None, "x": False}]}, "a": "s"}
    assert canonical_bytes(obj) == b'{"a":"s","b":{"a":[2,{"x":false,"y":null}],"z":1}}'


def test_control_characters_use_lowercase_unicode_escapes_and_del_is_literal() -> None:
    assert canonical_bytes("\x00\x1f\x7f") == b'"\\u0000\\u001f\x7f"'


def test_non_ascii_is_written_as_utf8_not_escaped() -> None:
    assert canonical_bytes("业主") == '"业主"'.encode("utf-8")


def test_integers_at_the_safe_limit_are_accepted() -> None:
    assert canonical_bytes([MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER, 0]) == (
        b"[9007199254740991,-9007199254740991,0]"
    )


@pytest.mark.parametrize("value", [2**53, -(2**53), 10**30])
def test_integers_beyond_the_safe_limit_are_rejected(value: int) -> None:
    with pytest.raises(CanonicalizationError, match="outside"):
        canonical_bytes({"n": value})


@pytest.mark.parametrize("value", [1.0, 0.5, float("nan"), float("inf")])
def test_floats_are_rejected_even_when_integral(value: float) -> None:
    with pytest.raises(CanonicalizationError, match="float"):
        canonical_bytes({"area": value})


def test_non_string_keys_are_rejected() -> None:
    with pytest.raises(CanonicalizationError, match="key"):
        canonical_bytes({1: "x"})


@pytest.mark.parametrize("value", [b"bytes", {1, 2}, object()])
def test_values_outside_json_are_rejected(value: object) -> None:
    with pytest.raises(CanonicalizationError):
        canonical_bytes([value])


def test_lone_surrogates_are_rejected() -> None:
    with pytest.raises(CanonicalizationError, match="surrogate"):
        canonical_bytes("\ud800")


def test_booleans_are_literals_not_integers() -> None:
    assert canonical_bytes([True, False, 1, 0]) == b"[true,false,1,0]"


def test_tuples_serialize_as_arrays() -> None:
    assert canonical_bytes({"t": (1, "a")}) == b'{"t":[1,"a"]}'


def test_sha256_hex_hashes_the_canonical_bytes() -> None:
    obj = {"b": 1, "a": 2}
    assert sha256_hex(obj) == hashlib.sha256(b'{"a":2,"b":1}').hexdigest()
    assert sha256_hex(obj) == sha256_hex({"a": 2, "b": 1})
