"""Wire schemas: unknown fields are refused, every size is bounded, integers are strict."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from marshmallow import ValidationError

from protocol.encoding import b64e
from protocol.hlc import MAX_HLC
from schemas.wire import (
    MAX_BUNDLES_PER_PUSH,
    MAX_CELLS_PER_BUNDLE,
    MAX_CT_BYTES,
    MAX_SUPERSEDES,
    BundleSchema,
    ChangesResponseSchema,
    KeyLogEventSchema,
    PushRequestSchema,
    RekeyRequestSchema,
    error_messages,
)

VECTORS = Path(__file__).parent / "vectors"
BUNDLE: dict[str, Any] = json.loads((VECTORS / "bundle.json").read_text())["success"][1]["bundle"]
EVENTS: list[dict[str, Any]] = json.loads((VECTORS / "keylog.json").read_text())["log"]
CELL = BUNDLE["cells"][0]
ID = b64e(bytes(16))
HASH = b64e(bytes(32))


def errors(schema: Any, data: Any) -> dict[str, Any]:
    with pytest.raises(ValidationError) as info:
        schema.load(data)
    messages = info.value.messages
    assert isinstance(messages, dict)
    return messages


def bundle(**changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(BUNDLE)
    out.update(changes)
    return out


def with_cell(**changes: Any) -> dict[str, Any]:
    return bundle(cells=[{**CELL, **changes}])


def test_a_real_bundle_loads_unchanged() -> None:
    assert BundleSchema().load(BUNDLE) == BUNDLE
    assert PushRequestSchema().load({"bundles": [BUNDLE]}) == {"bundles": [BUNDLE]}


def test_unknown_fields_are_refused_at_every_level() -> None:
    assert errors(BundleSchema(), bundle(colour="red")) == {"colour": ["Unknown field."]}
    assert errors(BundleSchema(), with_cell(value="clear text")) == {
        "cells": {0: {"value": ["Unknown field."]}}
    }
    assert errors(PushRequestSchema(), {"bundles": [BUNDLE], "all": True}) == {
        "all": ["Unknown field."]
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seq", "1"),
        ("seq", 1.0),
        ("seq", True),
        ("seq", None),
        ("epoch", "1"),
        ("key_epoch", 1.5),
    ],
)
def test_integers_are_strict(field: str, value: Any) -> None:
    assert field in errors(BundleSchema(), bundle(**{field: value}))


@pytest.mark.parametrize("value", ["5", 5.0, False, -1, MAX_HLC + 1])
def test_hlc_is_a_strict_53_bit_integer(value: Any) -> None:
    assert set(errors(BundleSchema(), with_cell(hlc=value))["cells"][0]) == {"hlc"}


def test_hlc_bounds_are_inclusive() -> None:
    for value in (0, MAX_HLC):
        assert BundleSchema().load(with_cell(hlc=value))["cells"][0]["hlc"] == value


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("workspace", b64e(bytes(15))),
        ("bundle_id", b64e(bytes(17))),
        ("device_id", "A" * 22 + "="),
        ("prev", b64e(bytes(31))),
        ("key_commit", "B" * 43),  # non-canonical trailing bits
        ("sealed_key", b64e(bytes(100))),
        ("sig", b64e(bytes(63))),
        ("seq", 0),
        ("epoch", 0),
        ("epoch", 2**31),
    ],
)
def test_bundle_field_sizes_and_ranges(field: str, value: Any) -> None:
    assert list(errors(BundleSchema(), bundle(**{field: value}))) == [field]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("record_id", HASH),
        ("field_tag", b64e(bytes(8))),
        ("cell_id", ID),
        ("supersedes", [ID]),
        ("supersedes", [HASH] * (MAX_SUPERSEDES + 1)),
        ("supersedes", HASH),
        ("ct", "A" * ((MAX_CT_BYTES * 4 + 2) // 3 + 1)),
        ("ct", "not base64!"),
    ],
)
def test_cell_field_sizes(field: str, value: Any) -> None:
    assert list(errors(BundleSchema(), with_cell(**{field: value}))["cells"][0]) == [field]


def test_ct_at_its_limit_loads() -> None:
    ct = b64e(bytes(MAX_CT_BYTES))
    assert BundleSchema().load(with_cell(ct=ct))["cells"][0]["ct"] == ct


def test_counts_are_bounded() -> None:
    assert list(errors(BundleSchema(), bundle(cells=[]))) == ["cells"]
    assert list(errors(BundleSchema(), bundle(cells=[CELL] * (MAX_CELLS_PER_BUNDLE + 1)))) == [
        "cells"
    ]
    assert BundleSchema().load(bundle(cells=[CELL] * MAX_CELLS_PER_BUNDLE))  # the schema allows it
    assert list(errors(PushRequestSchema(), {"bundles": []})) == ["bundles"]
    too_many = {"bundles": [BUNDLE] * (MAX_BUNDLES_PER_PUSH + 1)}
    assert list(errors(PushRequestSchema(), too_many)) == ["bundles"]
    assert list(errors(RekeyRequestSchema(), {"items": []})) == ["items"]


def test_wrong_json_types() -> None:
    assert list(errors(BundleSchema(), bundle(cells={"0": CELL}))) == ["cells"]
    assert list(errors(BundleSchema(), bundle(workspace=12))) == ["workspace"]
    with pytest.raises(ValidationError):
        PushRequestSchema().load([BUNDLE])  # type: ignore[arg-type]


def test_key_log_events_load_and_bodies_are_checked_per_kind() -> None:
    for event in EVENTS:
        assert KeyLogEventSchema().load(event) == event
    invite = next(e for e in EVENTS if e["kind"] == "invite")
    assert errors(KeyLogEventSchema(), {**invite, "body": {**invite["body"], "extra": 1}}) == {
        "body": {"extra": ["Unknown field."]}
    }
    assert errors(
        KeyLogEventSchema(), {**invite, "body": {**invite["body"], "expires": "soon"}}
    ) == {"body": {"expires": ["Not a valid integer."]}}
    assert list(errors(KeyLogEventSchema(), {**invite, "kind": "promote"})) == ["kind"]
    genesis = EVENTS[0]
    two = {**genesis["body"]["sealed"], ID: next(iter(genesis["body"]["sealed"].values()))}
    assert list(
        errors(KeyLogEventSchema(), {**genesis, "body": {**genesis["body"], "sealed": two}})
    ) == ["body"]


def test_changes_response() -> None:
    answer = {
        "bundles": [{**BUNDLE, "change": 7}],
        "next": 7,
        "done": True,
        "incarnation": ID,
        "last": 7,
    }
    assert ChangesResponseSchema().load(answer) == answer
    assert list(errors(ChangesResponseSchema(), {**answer, "next": -1})) == ["next"]
    assert list(errors(ChangesResponseSchema(), {**answer, "last": "7"})) == ["last"]
    no_incarnation = {k: v for k, v in answer.items() if k != "incarnation"}
    assert list(errors(ChangesResponseSchema(), no_incarnation)) == ["incarnation"]


def test_error_messages_name_the_path() -> None:
    messages = errors(BundleSchema(), with_cell(hlc="5", extra=1))
    assert sorted(error_messages(messages)) == [
        "cells.0.extra: Unknown field.",
        "cells.0.hlc: Not a valid integer.",
    ]
