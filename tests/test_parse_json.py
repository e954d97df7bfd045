"""`parse_json`, the one strict reader of JSON from the network: each refusal has its code."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.encoding import MAX_KEYS, parse_json
from protocol.errors import InvalidEncoding

REFUSED = [
    (b'{"seq":7,"seq":1}', "duplicate_key"),
    (b'{"a":{"b":1,"b":1}}', "duplicate_key"),
    (b"1.0", "bad_type"),
    (b"1e3", "bad_type"),
    (b"NaN", "bad_type"),
    (b"-Infinity", "bad_type"),
    (b"9007199254740992", "bad_integer"),
    (b"-9007199254740992", "bad_integer"),
    (b"1" * 5000, "bad_integer"),
    (b"[" * 50_000 + b"]" * 50_000, "too_deep"),
    (b'"\xff"', "bad_utf8"),
    (b'"\xed\xa0\x80"', "bad_utf8"),  # a surrogate encoded in UTF-8 is not UTF-8
    (b'{"a":1', "bad_json"),
    (b'"\\ud800"', "bad_string"),
    (b'{"\\udfff":1}', "bad_string"),
    (b'["ok", ["\\ud83d"]]', "bad_string"),
    (b"", "bad_json"),
    (b'{"a":1} x', "bad_json"),
    (("{" + ",".join(f'"k{i}":0' for i in range(MAX_KEYS + 1)) + "}").encode(), "too_many_keys"),
]


@pytest.mark.parametrize(("raw", "code"), REFUSED, ids=[c for _, c in REFUSED])
def test_refusals_have_their_codes(raw: bytes, code: str) -> None:
    with pytest.raises(InvalidEncoding) as info:
        parse_json(raw)
    assert info.value.code == code


def test_a_surrogate_pair_is_one_character() -> None:
    assert parse_json(b'"\\ud83d\\ude00"') == "\U0001f600"


def test_the_largest_allowed_values_load() -> None:
    raw = b'{"max":9007199254740991,"min":-9007199254740991,"s":"\\u00e9\xc3\xa9","n":null}'
    assert parse_json(raw) == {"max": 2**53 - 1, "min": -(2**53) + 1, "s": "éé", "n": None}
    keys = {f"k{i}": i for i in range(MAX_KEYS)}
    assert parse_json(json.dumps(keys).encode()) == keys


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(json_values)
@settings(max_examples=200)
def test_what_a_json_encoder_writes_reads_back(value: Any) -> None:
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False)):
        try:
            raw = text.encode("utf-8")
            value_in_utf8 = json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            # A lone surrogate: not Unicode text; refused however it is escaped.
            with pytest.raises(InvalidEncoding) as info:
                parse_json(json.dumps(value).encode())
            assert info.value.code == "bad_string"
            continue
        assert parse_json(raw) == value
        assert parse_json(value_in_utf8) == value
