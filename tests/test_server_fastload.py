"""The push fast path accepts nothing that `PushRequestSchema` refuses, and loads the same."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from fuzzkit import counted, fuzz_settings, json_values
from hypothesis import given
from mutate import mutated_value
from serverkit import Kit

from protocol.model import Bundle
from schemas.wire import MAX_CELLS_PER_BUNDLE, MAX_SUPERSEDES, PushRequestSchema
from server.fastload import push_bundles

SCHEMA = PushRequestSchema()


def schema_bundles(data: Any) -> list[Bundle] | None:
    if SCHEMA.validate(data):
        return None
    return [Bundle.from_wire(b) for b in SCHEMA.load(data)["bundles"]]


def values_for(value: Any) -> Iterator[Any]:
    yield from (None, True, False, 0, 1, -1, 1.0, "", "A", [], {}, 2**53, 2**31)
    if isinstance(value, str):
        yield from (value + "A", value[:-1], value[:-1] + "B", value + "=", " " + value)
        yield from (value.replace(value[0], "+", 1), value.replace(value[0], "/", 1))
        yield value[:-1] + "Q"
    if isinstance(value, int) and not isinstance(value, bool):
        yield from (value + 1, value - 1, str(value), float(value))
    if isinstance(value, list):
        yield from (value * 2, value[:0], [value[0]] * 40 if value else ["A" * 43] * 33)


def mutations(request: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Each field of the first bundle and first cell: removed, retyped, respelled; extras."""
    yield {**request, "extra": 1}
    yield {"bundles": []}
    yield {"bundles": request["bundles"] * 251}  # 502 bundles
    for where in ("bundle", "cell"):
        target = request["bundles"][0] if where == "bundle" else request["bundles"][0]["cells"][0]
        for key in [*target, "extra"]:
            for value in [*values_for(target.get(key)), "__delete__"]:
                out = copy.deepcopy(request)
                node = out["bundles"][0] if where == "bundle" else out["bundles"][0]["cells"][0]
                if value == "__delete__":
                    node.pop(key, None)
                else:
                    node[key] = value
                yield out
    # Move the boundary between two neighbouring fixed-length fields by a character.
    for node_path, a, b in [
        ((), "workspace", "bundle_id"),
        ((), "device_id", "prev"),
        ((), "sig", "sealed_key"),
        (("cells", 0), "record_id", "field_tag"),
        (("cells", 0), "field_tag", "cell_id"),
    ]:
        for shift in (1, -1):
            out = copy.deepcopy(request)
            node = out["bundles"][0]
            for step in node_path:
                node = node[step]
            if shift == 1:
                node[a], node[b] = node[a] + node[b][0], node[b][1:]
            else:
                node[a], node[b] = node[a][:-1], node[a][-1] + node[b]
            yield out
    many = copy.deepcopy(request)
    many["bundles"][0]["cells"] = many["bundles"][0]["cells"] * (MAX_CELLS_PER_BUNDLE + 1)
    yield many
    sup = copy.deepcopy(request)
    sup["bundles"][0]["cells"][0]["supersedes"] = [sup["bundles"][0]["prev"]] * (MAX_SUPERSEDES + 1)
    yield sup


@pytest.fixture
def request_body(kit: Kit) -> dict[str, Any]:
    vol = kit.member("volunteer")
    b1 = kit.seal(vol, {"place": "Ustel Market", "attended": 9})
    b2 = kit.seal(vol, {"note": "second"}, supersedes={"note": (b1.cells[0].cell_id,)})
    return {"bundles": [b1.to_wire(), b2.to_wire()]}


def test_valid_request_takes_the_fast_path(request_body: dict[str, Any]) -> None:
    fast = push_bundles(request_body)
    assert fast is not None
    assert fast == schema_bundles(request_body)


def test_fast_path_is_never_looser_than_the_schema(request_body: dict[str, Any]) -> None:
    checked = accepted = 0
    for data in mutations(request_body):
        checked += 1
        fast = push_bundles(data)
        if fast is not None:
            accepted += 1
            assert fast == schema_bundles(data), data
    assert checked > 300 and 0 < accepted < checked


def test_fast_path_under_generated_mutations(request_body: dict[str, Any]) -> None:
    """The same promise as above, on mutations hypothesis draws (mutate.py) and on any JSON:
    the fast path never raises, and what it accepts the schema loads the same."""
    seen = {"fast": 0, "slow": 0}

    @fuzz_settings(short=300, long=20_000)
    @given(mutated_value(request_body) | json_values)
    @counted
    def check(data: Any) -> None:
        fast = push_bundles(data)
        if fast is not None:
            seen["fast"] += 1
            assert fast == schema_bundles(data), data
        else:
            seen["slow"] += 1
            assert schema_bundles(data) is None or data != request_body

    check()
    assert seen["fast"] > 0 and seen["slow"] > 0
