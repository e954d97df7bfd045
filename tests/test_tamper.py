"""Every single-byte change to a sealed bundle is refused: every field, every byte.

Each base64url field is decoded, each byte changed in turn, and re-encoded;
integers are changed one byte of their fixed-width encoding at a time. The bundle
must then fail `verify_bundle` (what the server checks) or `open_bundle` (what a
keyholder checks). A second pass plays a device that re-signs after changing a
clear field: then the AEAD's associated data, or the HPKE info, must catch it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from corekit import EPOCH1, HLC0, TAG_KEY, VOLUNTEER, new_id, seal

from protocol import crypto, keys
from protocol.encoding import b64d, b64e, labelled
from protocol.errors import InvalidBundle
from protocol.model import Bundle, CellInput

R1 = new_id("record-1")
FIRST = seal([CellInput(R1, "picket", "attendance", 23, HLC0)], label="first")
BUNDLE = seal(
    [
        CellInput(R1, "picket", "attendance", 31, HLC0 + 1024, (FIRST.cells[0].cell_id,)),
        CellInput(R1, "picket", "place", "Test Square 7", HLC0 + 1025),
    ],
    seq=2,
    prev=crypto.bundle_hash(FIRST),
    label="tampered",
)
DEVICE_PUB = keys.public_bytes(VOLUNTEER)
WIRE = BUNDLE.to_wire()


class AnyEpoch(dict[int, bytes]):
    """A keyholder holding the right private key under every epoch number.

    So a changed `key_epoch` is caught by the HPKE info it is bound into, not merely
    by a missing key.
    """

    def get(self, key: int, default: Any = None) -> bytes:  # type: ignore[override]
        return EPOCH1.private_bytes


KEYS = AnyEpoch()


def refused(wire: dict[str, Any]) -> str | None:
    """The InvalidBundle code, or None when the changed bundle was accepted."""
    try:
        crypto.open_bundle(Bundle.from_wire(wire), DEVICE_PUB, KEYS, TAG_KEY)
    except InvalidBundle as exc:
        return exc.code
    return None


def refused_by_server(wire: dict[str, Any]) -> bool:
    """Whether the keyless check (what the server runs on every push) refuses it."""
    try:
        crypto.verify_bundle(Bundle.from_wire(wire), DEVICE_PUB)
    except InvalidBundle:
        return True
    return False


def flips(data: bytes) -> Iterator[tuple[int, bytes]]:
    for i in range(len(data)):
        changed = bytearray(data)
        changed[i] ^= 0x01
        yield i, bytes(changed)


def int_flips(value: int, width: int) -> Iterator[tuple[int, int]]:
    for i in range(width):
        yield i, value ^ (1 << (8 * i))


def copy_wire() -> dict[str, Any]:
    return {**WIRE, "cells": [dict(c, supersedes=list(c["supersedes"])) for c in WIRE["cells"]]}


BUNDLE_B64 = ["workspace", "bundle_id", "device_id", "prev", "key_commit", "sealed_key", "sig"]
BUNDLE_INTS = {"seq": 8, "epoch": 4, "key_epoch": 4}
CELL_B64 = ["record_id", "field_tag", "cell_id", "ct"]


def bundle_b64_mutations(name: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for i, changed in flips(b64d(WIRE[name])):
        wire = copy_wire()
        wire[name] = b64e(changed)
        yield f"{name}[{i}]", wire


def bundle_int_mutations(name: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for i, changed in int_flips(WIRE[name], BUNDLE_INTS[name]):
        wire = copy_wire()
        wire[name] = changed
        yield f"{name} byte {i}", wire


def cell_mutations(index: int) -> Iterator[tuple[str, dict[str, Any]]]:
    for name in CELL_B64:
        for i, changed in flips(b64d(WIRE["cells"][index][name])):
            wire = copy_wire()
            wire["cells"][index][name] = b64e(changed)
            yield f"cells[{index}].{name}[{i}]", wire
    for i, value in int_flips(WIRE["cells"][index]["hlc"], 8):
        wire = copy_wire()
        wire["cells"][index]["hlc"] = value
        yield f"cells[{index}].hlc byte {i}", wire
    for s, sup in enumerate(WIRE["cells"][index]["supersedes"]):
        for i, changed in flips(b64d(sup)):
            wire = copy_wire()
            wire["cells"][index]["supersedes"][s] = b64e(changed)
            yield f"cells[{index}].supersedes[{s}][{i}]", wire


# Only these are outside the signature, by design: a re-key swaps them. Every other
# change must be caught by the server already, without any key.
UNSIGNED = ("sealed_key", "key_epoch")


def accepted(mutations: Iterator[tuple[str, dict[str, Any]]]) -> list[str]:
    """Run every mutation; return the ones that were NOT refused (must be empty).

    A change to a signed field that only a keyholder would catch counts as accepted.
    """
    out = []
    count = 0
    for where, wire in mutations:
        count += 1
        server_must = not where.startswith(UNSIGNED)
        if refused(wire) is None or (server_must and not refused_by_server(wire)):
            out.append(where)
    assert count > 0
    return out


def test_the_untouched_bundle_opens() -> None:
    assert refused(copy_wire()) is None
    assert WIRE["cells"][0]["supersedes"] == [FIRST.cells[0].cell_id]


@pytest.mark.parametrize("name", BUNDLE_B64)
def test_every_byte_of_a_bundle_field(name: str) -> None:
    assert accepted(bundle_b64_mutations(name)) == []


@pytest.mark.parametrize("name", list(BUNDLE_INTS))
def test_every_byte_of_a_bundle_integer(name: str) -> None:
    assert accepted(bundle_int_mutations(name)) == []


@pytest.mark.parametrize("index", [0, 1])
def test_every_byte_of_every_cell(index: int) -> None:
    assert accepted(cell_mutations(index)) == []


def structural_mutations() -> Iterator[tuple[str, dict[str, Any]]]:
    c0, c1 = WIRE["cells"]
    yield "a cell dropped", {**copy_wire(), "cells": [dict(c0)]}
    yield "cells swapped", {**copy_wire(), "cells": [dict(c1), dict(c0)]}
    yield "a cell repeated", {**copy_wire(), "cells": [dict(c0), dict(c0)]}
    yield "a cell appended", {**copy_wire(), "cells": [dict(c0), dict(c1), dict(c1)]}
    yield "a supersedes removed", {**copy_wire(), "cells": [dict(c0, supersedes=[]), dict(c1)]}
    yield (
        "a supersedes added",
        {**copy_wire(), "cells": [dict(c0), dict(c1, supersedes=[c0["cell_id"]])]},
    )
    yield (
        "a supersedes repeated",
        {**copy_wire(), "cells": [dict(c0, supersedes=c0["supersedes"] * 2), dict(c1)]},
    )
    yield (
        "ct truncated",
        {**copy_wire(), "cells": [dict(c0, ct=b64e(b64d(c0["ct"])[:-1])), dict(c1)]},
    )
    yield (
        "ct extended",
        {**copy_wire(), "cells": [dict(c0, ct=b64e(b64d(c0["ct"]) + b"\0")), dict(c1)]},
    )
    yield "sealed_key truncated", {**copy_wire(), "sealed_key": b64e(b64d(WIRE["sealed_key"])[:-1])}
    yield "cells from another bundle", {**copy_wire(), "cells": FIRST.to_wire()["cells"]}
    yield "sealed_key of another bundle", {**copy_wire(), "sealed_key": FIRST.sealed_key}


def test_structural_changes() -> None:
    assert accepted(structural_mutations()) == []


# --- a device re-signs after changing a clear field ------------------------------------


def resigned(wire: dict[str, Any]) -> dict[str, Any]:
    """Recompute every cell id honestly and sign: what the device key holder can do."""
    bundle = Bundle.from_wire(wire)
    prefix = crypto.bundle_ad_prefix(
        bundle.workspace, bundle.bundle_id, bundle.device_id, bundle.epoch
    )
    for index, cell in enumerate(bundle.cells):
        ad = crypto.cell_ad(
            prefix, index, cell.record_id, cell.field_tag, cell.hlc, cell.supersedes
        )
        wire["cells"][index]["cell_id"] = crypto.compute_cell_id(ad, b64d(cell.ct))
    header = Bundle.from_wire(wire).header()
    wire["sig"] = b64e(VOLUNTEER.sign(labelled(crypto.L_BUNDLE_SIG, header)))
    return wire


def resigned_mutations() -> Iterator[tuple[str, dict[str, Any], str]]:
    """(where, wire, the check that must catch it)."""
    for name in ("workspace", "bundle_id"):
        for where, wire in bundle_b64_mutations(name):
            yield where, resigned(wire), "sealed_key"  # bound in the HPKE info
    for where, wire in bundle_int_mutations("epoch"):
        yield where, resigned(wire), "cell_decrypt"  # bound in every cell's AD
    for index in (0, 1):
        for where, wire in cell_mutations(index):
            if ".cell_id[" not in where:
                yield where, resigned(wire), "cell_decrypt"
    for where, wire in bundle_b64_mutations("key_commit"):
        yield where, resigned(wire), "key_commit"


def test_a_resigning_device_is_caught_by_the_aead() -> None:
    wrong = []
    for where, wire, expect in resigned_mutations():
        code = refused(wire)
        if code != expect:
            wrong.append((where, code))
    assert wrong == []


def test_a_resigned_but_unchanged_bundle_still_opens() -> None:
    assert refused(resigned(copy_wire())) is None


@pytest.mark.parametrize(
    "change",
    [
        lambda w: w.update(seq=w["seq"] + 1),
        lambda w: w.update(prev=b64e(bytes(32))),
    ],
    ids=["seq", "prev"],
)
def test_the_device_may_resign_its_own_header(change: Callable[[dict[str, Any]], None]) -> None:
    # seq and prev are the device's own to choose; the server judges the chain.
    wire = copy_wire()
    change(wire)
    assert refused(resigned(wire)) is None
