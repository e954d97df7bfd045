"""What the read layer derives from a decrypted value: folded text, a sort key, a verdict.

Pure: no I/O. Works on any script without ICU:

- `fold` makes text case-, accent- and width-insensitive: Unicode compatibility
  decomposition (NFKD: full-width Latin, Arabic presentation forms) and case
  folding; accents on Latin and Greek letters, Arabic short-vowel marks (harakat),
  format characters (joiners, direction marks) and the tatweel are dropped, and
  spaces collapsed. Marks that make a letter of its own elsewhere stay (Cyrillic
  й, Uyghur ئ with its hamza); ё reads as е, as Russian writers use them. Cyrillic,
  Latin, Chinese and Uyghur's Arabic script all search and sort by it.
- `sort_key` orders values of one column: missing < null < booleans < numbers (by
  value) < text (by folded code points) < anything else a device sent.
- `problem` says why a value does not fit its field of the record schema (None when
  it does): a buggy or hostile device can seal anything, and it is shown, not dropped.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

_TATWEEL = "\u0640"
_HARAKAT = {chr(c) for c in range(0x064B, 0x0653)} | {"\u0670"}


def _latin_or_greek(ch: str) -> bool:
    c = ord(ch)
    return c < 0x0400 or 0x1E00 <= c < 0x2000


@functools.lru_cache(maxsize=4096)
def fold(text: str) -> str:
    """Case-, accent- and width-insensitive form of `text`, spaces collapsed."""
    if text.isascii():  # most values: no marks to drop, case folding is lowering
        return " ".join(text.lower().split())
    kept: list[str] = []
    base = ""
    for ch in unicodedata.normalize("NFKD", text.casefold()):
        category = unicodedata.category(ch)
        if category == "Cf" or ch == _TATWEEL or ch in _HARAKAT:
            continue
        if category in ("Mn", "Me"):
            if _latin_or_greek(base):
                continue
        else:
            base = ch
        kept.append(ch)
    folded = unicodedata.normalize("NFC", "".join(kept)).replace("ё", "е")
    return " ".join(folded.split())


def as_text(value: Any) -> str:
    """The value as a person reads it: text as is, everything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _number_key(n: int) -> str:
    # Order-preserving text for integers: sign, digit count, digits (complemented
    # for negatives, so that -5 sorts before -4).
    digits = str(abs(n))
    if n >= 0:
        return f"p{len(digits):02d}{digits}"
    return f"n{99 - len(digits):02d}" + digits.translate(str.maketrans("0123456789", "9876543210"))


SORT_PREFIX = 48  # characters of text that order a column; longer values tie after them


def sort_key(value: Any) -> str:
    kind = type(value)
    if value is None:
        return "1"
    if kind is bool:
        return "2" + ("1" if value else "0")
    if kind is int:
        return "3" + _number_key(value)
    if kind is str:
        return "4" + fold(value)[:SORT_PREFIX]
    return "5" + as_text(value)[:SORT_PREFIX]


# --- the schema's verdict -------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _schema(record_type: str) -> Any:
    from schemas.records import RECORD_TYPES  # marshmallow: only when a value is judged

    cls = RECORD_TYPES.get(record_type)
    return cls() if cls is not None else None


def problem(record_type: str, field: str, value: Any) -> str | None:
    """Why `value` does not fit `record_type.field`, or None when it does.

    A value fits when the field's schema loads it to exactly itself: `"40"` for a
    count is the text a command line typed, not a number, and is reported. The
    common cases are decided by `_fits` without marshmallow (a first pull judges every
    value); anything it does not clear goes through the schema for its message.
    """
    if field.startswith("_file_"):
        return _file_problem(field, value)
    fits = _fits(record_type, field)
    if fits is not None and fits(value):
        return None
    return _judged(record_type, field, value)


def _file_problem(field: str, value: Any) -> str | None:
    """An attachment field holds its descriptor, or null once removed."""
    from protocol.descriptor import FILE_FIELD_RE, file_field, parse_descriptor
    from protocol.errors import InvalidAttachment

    if not FILE_FIELD_RE.match(field):
        return f"{field!r} is not an attachment field"
    if value is None:
        return None
    try:
        desc = parse_descriptor(value)
    except InvalidAttachment as exc:
        return exc.reason
    if file_field(desc.id) != field:
        return "the descriptor names another attachment than its field"
    return None


def searchable(field: str, value: Any) -> str:
    """The text of a value the full-text filter reads: an attachment's name and caption
    (never its key or chunk ids), any other value as it reads."""
    if field.startswith("_file_"):
        if isinstance(value, dict):
            return " ".join(str(value.get(k) or "") for k in ("name", "caption")).strip()
        return ""
    return as_text(value)


def _judged(record_type: str, field: str, value: Any) -> str | None:
    from schemas.records import DELETED_FIELD

    if field == DELETED_FIELD:
        return None if type(value) is bool else "a deletion mark must be true or false"
    schema = _schema(record_type)
    if schema is None:
        return f"unknown record type {record_type!r}"
    spec = schema.fields.get(field)
    if spec is None:
        return f"{record_type} has no field {field!r}"
    from marshmallow import ValidationError

    try:
        loaded = spec.deserialize(value)
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, list) else [str(exc.messages)]
        return " ".join(str(m) for m in messages)
    if type(loaded) is not type(value) or loaded != value:
        return f"not in the field's form (it would read as {as_text(loaded)})"
    return None


_DATE_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d\Z")


@functools.lru_cache(maxsize=256)
def _fits(record_type: str, field: str) -> Callable[[Any], bool] | None:
    """A quick test that a value loads to itself, for the field kinds of the schemas;
    None for a kind it does not know (the schema judges those)."""
    from marshmallow import fields, validate

    from schemas.records import (
        _FUZZY_DATE,
        _RECORD_ID,
        DELETED_FIELD,
        Count,
        FuzzyDate,
        LocalDateTime,
        RecordRef,
    )

    if field == DELETED_FIELD:
        return lambda v: type(v) is bool
    schema = _schema(record_type)
    spec = schema.fields.get(field) if schema is not None else None
    kind = type(spec)
    if kind is Count:
        return lambda v: type(v) is int and 0 <= v <= 10**12
    if kind is fields.Boolean:
        return lambda v: type(v) is bool
    if kind is RecordRef:
        return lambda v: type(v) is str and _RECORD_ID.match(v) is not None
    if kind is FuzzyDate:
        return lambda v: type(v) is str and _FUZZY_DATE.match(v) is not None and _day(v)
    if kind is LocalDateTime:
        return lambda v: type(v) is str and _DATE_TIME.match(v) is not None and _moment(v)
    if kind is not fields.String or spec is None:
        return None
    lengths: list[tuple[int, float]] = []
    choices: list[frozenset[str]] = []
    patterns: list[Any] = []  # compiled patterns
    for rule in spec.validators:
        if type(rule) is validate.Length and rule.equal is None:
            lengths.append((rule.min or 0, rule.max if rule.max is not None else float("inf")))
        elif type(rule) is validate.OneOf:
            choices.append(frozenset(rule.choices))
        elif type(rule) is validate.Regexp:
            patterns.append(rule.regex)
        else:
            return None

    def fits(v: Any) -> bool:
        return (
            type(v) is str
            and all(low <= len(v) <= high for low, high in lengths)
            and all(v in allowed for allowed in choices)
            and all(rx.match(v) is not None for rx in patterns)
        )

    return fits


def _day(text: str) -> bool:
    if len(text) != 10:
        return True
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _moment(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True
