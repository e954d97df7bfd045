"""Canonical encodings: base64url, canonical JSON (RFC 8785 without floats), labelled hashes.

Pure: no I/O, no clock, no randomness.

Everything that is signed or hashed is `label || 0x00 || JCS(object)`: the label
separates domains, and JCS gives one byte string per value in any language.
Floats are refused outright so no implementation has to agree on number printing.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import re
from typing import Any

from .errors import InvalidEncoding

_TO_STD = bytes.maketrans(b"-_", b"+/")
_TO_URL = bytes.maketrans(b"+/", b"-_")
_URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64URL = re.compile(r"^[A-Za-z0-9_-]*\Z")


def b64e(data: bytes) -> str:
    """Unpadded base64url."""
    return binascii.b2a_base64(data, newline=False).translate(_TO_URL).rstrip(b"=").decode("ascii")


def b64_length(text: str) -> int:
    """Decoded length of unpadded base64url text (which must be well-formed)."""
    return len(text) * 3 // 4


def check_b64(text: str, *, length: int | None = None, what: str = "value") -> None:
    """Validate unpadded base64url as `b64d` does, without decoding: for wire schemas."""
    if not isinstance(text, str) or not _B64URL.match(text) or len(text) % 4 == 1:
        raise InvalidEncoding("bad_base64", f"{what} is not unpadded base64url")
    rem = len(text) % 4
    if rem and _URL_ALPHABET.index(text[-1]) & (0x0F if rem == 2 else 0x03):
        raise InvalidEncoding("bad_base64", f"{what} is not canonical base64url")
    if length is not None and b64_length(text) != length:
        raise InvalidEncoding(
            "bad_length", f"{what} must be {length} bytes, got {b64_length(text)}"
        )


_PADDING = (b"", b"===", b"==", b"=")  # by len(text) % 4; "===" is never valid


def b64d(text: str, *, length: int | None = None, what: str = "value") -> bytes:
    """Strict unpadded base64url: no padding, no whitespace, canonical trailing bits.

    Decoded, re-encoded and compared: only the one spelling `b64e` gives is accepted,
    so one value never has two spellings (non-canonical trailing bits, padding, the
    standard alphabet), and the check costs half of a regular expression's.
    """
    try:
        data = binascii.a2b_base64(
            text.encode("ascii").translate(_TO_STD) + _PADDING[len(text) % 4], strict_mode=True
        )
    except (AttributeError, UnicodeError, binascii.Error, ValueError) as exc:
        raise InvalidEncoding("bad_base64", f"{what} is not unpadded base64url") from exc
    if b64e(data) != text:
        raise InvalidEncoding("bad_base64", f"{what} is not canonical unpadded base64url")
    if length is not None and len(data) != length:
        raise InvalidEncoding("bad_length", f"{what} must be {length} bytes, got {len(data)}")
    return data


def _check(value: Any, depth: int = 0) -> None:
    if depth > 16:
        raise InvalidEncoding("too_deep", "structure nested too deeply")
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int):
        if not -(2**53) < value < 2**53:
            raise InvalidEncoding("bad_integer", "integers must fit in 53 bits for JCS")
        return
    if isinstance(value, list):
        for item in value:
            _check(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            # ASCII keys sort the same by code point (Python) and by UTF-16 unit (JCS).
            if not isinstance(key, str) or not key.isascii():
                raise InvalidEncoding("bad_key", "object keys must be ASCII strings")
            _check(item, depth + 1)
        return
    raise InvalidEncoding("bad_type", f"cannot encode {type(value).__name__} canonically")


MAX_KEYS = 1024  # members of one JSON object on the wire (a sealed-key map is the largest)


def _no_float(text: str) -> Any:
    raise InvalidEncoding("bad_type", "fractions and exponents are not allowed")


def _no_constant(text: str) -> Any:
    raise InvalidEncoding("bad_type", f"{text} is not JSON")


def _int(text: str) -> int:
    # At most 16 digits and a sign: anything longer is outside 53 bits anyway, and
    # int() of a very long digit string costs time quadratic in its length.
    if len(text.lstrip("-")) > 16:
        raise InvalidEncoding("bad_integer", "integers must fit in 53 bits")
    value = int(text)
    if not -(2**53) < value < 2**53:
        raise InvalidEncoding("bad_integer", "integers must fit in 53 bits")
    return value


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len(pairs) > MAX_KEYS:
        raise InvalidEncoding("too_many_keys", f"an object has more than {MAX_KEYS} members")
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise InvalidEncoding("duplicate_key", f"the member {key[:40]!r} appears twice")
            seen.add(key)
    return out


_DECODE = json.JSONDecoder(
    object_pairs_hook=_object, parse_float=_no_float, parse_int=_int, parse_constant=_no_constant
).decode


# A surrogate can only enter a decoded string through a `\uD800`-`\uDFFF` escape (raw
# UTF-8 cannot encode one): only text with such an escape needs the slow walk.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _no_lone_surrogates(value: Any) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise InvalidEncoding("bad_string", "strings must be valid Unicode") from exc
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())


def parse_json(raw: bytes) -> Any:
    """JSON from the network, strictly: UTF-8 only, no duplicate member names (JavaScript
    and Python keep the last, another parser the first), no fractions, exponents,
    NaN or Infinity, integers within 53 bits, strings of valid Unicode (no lone
    surrogate, `bad_string`), at most MAX_KEYS members per object, and a bounded
    nesting depth. Every refusal is an `InvalidEncoding` with its code.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEncoding("bad_utf8", "the body is not UTF-8") from exc
    try:
        value = _DECODE(text)
    except RecursionError as exc:
        raise InvalidEncoding("too_deep", "structure nested too deeply") from exc
    except ValueError as exc:  # json.JSONDecodeError (the hooks raise InvalidEncoding)
        raise InvalidEncoding("bad_json", "the body is not JSON") from exc
    if _SURROGATE_ESCAPE.search(text):
        _no_lone_surrogates(value)  # a pair (an emoji) encodes; a lone half does not
    return value


# One encoder, built once: json.dumps() with options builds a new one per call.
_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def canonical_json(value: Any, *, trusted: bool = False) -> bytes:
    """RFC 8785 (JCS) for the subset we use: str, int, bool, null, list, object.

    Python's json with sorted keys and no whitespace matches JCS for this subset;
    UTF-16 key ordering equals code-point ordering for the ASCII keys we use.
    `trusted=True` skips the type walk for structures the core built itself from
    already-validated fields (the hot path of sealing and verifying).
    """
    if not trusted:
        _check(value)
    try:
        return _ENCODE(value).encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate, e.g. from json.loads('"\\ud800"')
        raise InvalidEncoding("bad_string", "strings must be valid Unicode") from exc


def labelled(label: str, value: Any, *, trusted: bool = False) -> bytes:
    """The bytes that are signed or hashed: label, a zero byte, canonical JSON."""
    return label.encode("ascii") + b"\x00" + canonical_json(value, trusted=trusted)


def labelled_hash(label: str, value: Any, *, trusted: bool = False) -> bytes:
    return hashlib.sha256(labelled(label, value, trusted=trusted)).digest()
