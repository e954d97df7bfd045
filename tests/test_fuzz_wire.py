"""hypothesis on every reader of outside input: each refusal is a typed error with a code.

parse_json (bytes from the network), every marshmallow schema of schemas/wire.py,
the query-integer reader of the API, invite strings, and record values typed at a
device. Nothing may escape as an unhandled exception (a 500 on the server, a
traceback at the command line). The push fast path has its own file
(test_server_fastload.py); key logs, request signatures and bundles are in
test_fuzz_core.py.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from fuzzkit import b64ish, counted, edge_ints, fuzz_settings, id_shaped, json_values
from hypothesis import example, given
from hypothesis import strategies as st
from marshmallow import Schema, ValidationError, fields
from mutate import mutated_value

from protocol.encoding import b64e, parse_json
from protocol.errors import InvalidEncoding, InvalidInvite
from protocol.invite import PREFIX, decode_invite
from schemas import wire
from schemas.fields import B64, StrictInt
from schemas.records import RECORD_TYPES, RecordError, load_fields
from server.api import int_arg
from server.app import create_app
from server.errors import ApiError

PARSE_CODES = {
    "bad_utf8",
    "bad_json",
    "bad_type",
    "bad_integer",
    "duplicate_key",
    "too_many_keys",
    "too_deep",
    "bad_string",
}

# --- parse_json ----------------------------------------------------------------------

TOKENS = [
    "{", "}", "[", "]", ",", ":", '"a"', '"\\ud800"', '"\\u0000"', "0", "-0", "1", "-",
    "9007199254740993", "1.5", "1e5", "NaN", "Infinity", "true", "null", " ", "\xff", "\u00e9",
]  # fmt: skip


@fuzz_settings(short=300, long=20_000)
@given(st.binary(max_size=200) | st.lists(st.sampled_from(TOKENS), max_size=40).map("".join))
@counted
def test_parse_json_answers_a_value_or_a_coded_refusal(raw: bytes | str) -> None:
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    try:
        parse_json(data)
    except InvalidEncoding as exc:
        assert exc.code in PARSE_CODES, exc


# --- every wire schema ---------------------------------------------------------------

SCHEMAS = sorted(
    (
        cls
        for _, cls in inspect.getmembers(wire, inspect.isclass)
        if issubclass(cls, Schema) and cls.__module__ == wire.__name__ and cls is not wire.Strict
    ),
    key=lambda cls: cls.__name__,
)


def for_field(field: fields.Field, depth: int) -> st.SearchStrategy[Any]:
    """Values shaped like what `field` wants (often just right), or anything at all."""
    if isinstance(field, fields.Nested) and depth < 3:
        nested = field.nested
        assert isinstance(nested, type)
        inner: st.SearchStrategy[Any] = shaped(nested, depth + 1)
    elif isinstance(field, fields.List) and depth < 3:
        inner = st.lists(for_field(field.inner, depth + 1), max_size=3)
    elif isinstance(field, fields.Dict):
        inner = st.dictionaries(st.text(max_size=23) | st.sampled_from(["1", "2"]), b64ish)
        inner |= st.sampled_from(list(wire.BODY_SCHEMAS.values())).flatmap(
            lambda s: shaped(s, depth + 1)
        )
    elif isinstance(field, B64):
        inner = b64ish | id_shaped
    elif isinstance(field, StrictInt | fields.Integer):
        inner = edge_ints | st.integers()
    elif isinstance(field, fields.String):
        inner = st.text(max_size=20) | st.sampled_from(["genesis", "invite", "enroll", "admin"])
    else:
        inner = st.booleans()
    return inner | json_values


def shaped(schema: type[Schema], depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    declared = schema._declared_fields
    return st.fixed_dictionaries(
        {}, optional={name: for_field(f, depth) for name, f in declared.items()}
    ) | st.dictionaries(st.text(max_size=8), json_values, max_size=3)


@pytest.mark.parametrize("schema", SCHEMAS, ids=[s.__name__ for s in SCHEMAS])
def test_every_wire_schema_loads_or_refuses_with_validation_error(schema: type[Schema]) -> None:
    @fuzz_settings(short=25, long=3_000)
    @given(shaped(schema) | json_values)
    @counted
    def check(data: Any) -> None:
        try:
            loaded = schema().load(data)
        except ValidationError as exc:
            lines = wire.error_messages(exc.messages)
            assert lines and all(isinstance(line, str) for line in lines)
            return
        assert schema().load(loaded) == loaded

    check()


def test_every_schema_of_the_openapi_document_is_fuzzed(tmp_path: Path) -> None:
    """The list above is built by introspection: it must not come up short."""
    spec = create_app({"TESTING": True, "DATA_DIR": tmp_path}).extensions["fieldsync_openapi"]
    documented = set(spec["components"]["schemas"])
    assert documented <= {s.__name__.removesuffix("Schema") for s in SCHEMAS}
    assert {"PushRequest", "AppendEvent", "CreateWorkspace", "Error"} <= documented
    assert set(wire.BODY_SCHEMAS.values()) <= set(SCHEMAS)


# --- query integers ------------------------------------------------------------------

APP = Flask(__name__)


def read_int(raw: str) -> int | str:
    with APP.test_request_context("/", query_string={"n": raw}):
        try:
            return int_arg("n", 5, 0, 1000)
        except ApiError as exc:
            assert exc.status == 400
            return "refused"


@fuzz_settings(short=300, long=20_000)
@given(st.text(alphabet=st.characters(codec="ascii"), max_size=20))
@counted
def test_query_integers_in_ascii(raw: str) -> None:
    got = read_int(raw)
    if raw.isdigit() and len(raw) <= 16 and int(raw) <= 1000:
        assert got == int(raw)
    else:
        assert got == "refused"


@fuzz_settings(short=100, long=5_000)
@given(
    st.text(alphabet=st.characters(categories=["Nd", "No"]), min_size=1, max_size=4).filter(
        lambda s: not s.isascii()
    )
)
@example("²")
@example("①")
@example("٣")
@counted
def test_query_integers_in_other_digits_are_refused(raw: str) -> None:
    assert read_int(raw) == "refused"


# --- invite strings ------------------------------------------------------------------

INVITE_BODY = {
    "server": "https://sync.example.org",
    "workspace": b64e(bytes(16)),
    "root": b64e(bytes(32)),
    "role": "volunteer",
    "expires": 1_800_000_000,
    "tag_key": b64e(bytes(32)),
    "invite_seed": b64e(bytes(range(32))),
    "admin": b64e(bytes(range(16))),
    "sig": b64e(bytes(64)),
}


def canonical_text(value: Any) -> str:
    raw = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return PREFIX + b64e(raw.encode("utf-8", "surrogatepass"))


invite_texts = (
    st.text(max_size=60)
    | b64ish.map(lambda b: PREFIX + b)
    | mutated_value(INVITE_BODY).map(canonical_text)
    | json_values.map(canonical_text)
)


@fuzz_settings(short=200, long=10_000)
@given(invite_texts)
@counted
def test_invite_strings_decode_or_are_malformed(text: str) -> None:
    try:
        body = decode_invite(text)
    except InvalidInvite as exc:
        assert exc.code == "malformed"
        return
    assert set(body) == set(INVITE_BODY) and type(body["expires"]) is int


def test_a_deeply_nested_invite_is_malformed() -> None:
    with pytest.raises(InvalidInvite) as info:
        decode_invite(PREFIX + b64e(b"[" * 100_000 + b"]" * 100_000))
    assert info.value.code == "malformed"


# --- record values -------------------------------------------------------------------

TYPES = sorted(RECORD_TYPES)
DIGITS = st.text(
    alphabet=st.characters(categories=["Nd", "No"]) | st.sampled_from("0123456789-:T ")
)


@st.composite
def record_values(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    rtype = draw(st.sampled_from(TYPES) | st.text(max_size=10))
    names = sorted(RECORD_TYPES[rtype]().fields) if rtype in RECORD_TYPES else ["date"]
    values = draw(
        st.dictionaries(
            st.sampled_from(names) | st.text(max_size=10),
            json_values | DIGITS | st.sampled_from(["2019", "2019-02-29", "2026-12-04T18:30"]),
            max_size=6,
        )
    )
    return rtype, values


@fuzz_settings(short=150, long=20_000)
@given(record_values())
@counted
def test_record_values_load_typed_or_are_refused_with_record_error(
    rv: tuple[str, dict[str, Any]],
) -> None:
    rtype, values = rv
    try:
        loaded = load_fields(rtype, values)
    except RecordError as exc:
        assert str(exc)
        return
    schema = RECORD_TYPES[rtype]()
    for name, value in loaded.items():
        field = schema.fields[name]
        want = bool if isinstance(field, fields.Boolean) else int
        if not isinstance(field, fields.Integer | fields.Boolean):
            want = str
        assert type(value) is want, (name, value)


@fuzz_settings(short=50, long=2_000)
@given(st.text(alphabet=st.characters(categories=["Nd"]), min_size=4, max_size=4))
@example("٢٠١٩")
@counted
def test_fuzzy_dates_are_written_in_ascii(year: str) -> None:
    try:
        loaded = load_fields("picket", {"date": year})
    except RecordError:
        return
    assert loaded["date"].isascii()
