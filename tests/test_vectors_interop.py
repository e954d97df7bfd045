"""Run the vectors that settle what independent clients had to guess (docs/IMPLEMENTERS.md):
strict JSON, HLCs of a real clock, Ed25519 edge cases, the merge and a conflict's
order, X-Wing from its parts, invites. Made by tests/vectors/generate.py.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from xwing_parts import hpke_open_by_hand, xwing_decapsulate

from protocol import crypto, hlc, invite, keylog, keys, merge
from protocol.encoding import b64d, parse_json
from protocol.errors import ProtocolError

VECTORS = Path(__file__).parent / "vectors"


def load(name: str) -> dict[str, Any]:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


ENCODING = load("encoding.json")
HLC = load("hlc.json")
ED25519 = load("ed25519.json")
MERGE = load("merge.json")
KEYS = load("keys.json")
INVITE = load("invite.json")
KEYLOG = load("keylog.json")


def named(vectors: list[dict[str, Any]]) -> Any:
    return pytest.mark.parametrize("v", vectors, ids=[v["name"] for v in vectors])


def code_of(fn: Any, *args: Any) -> str:
    try:
        fn(*args)
    except ProtocolError as exc:
        return exc.code
    return "success"


def _input(v: dict[str, Any]) -> bytes:
    if "input_hex" in v:
        return bytes.fromhex(v["input_hex"])
    rep = v["input_repeat"]
    if "times" in rep:
        return (rep["open"] * rep["times"] + rep["close"] * rep["times"]).encode()
    members = ",".join(f'"k{i}":{i}' for i in range(rep["members"]))
    return ("{" + members + "}").encode()


@named(ENCODING["parse_json"])
def test_parse_json(v: dict[str, Any]) -> None:
    raw = _input(v)
    assert code_of(parse_json, raw) == v["expect"]
    if "value" in v:
        assert parse_json(raw) == v["value"]


def test_parse_json_vectors_cover_its_codes() -> None:
    codes = {v["expect"] for v in ENCODING["parse_json"]}
    assert codes == {
        "success",
        "duplicate_key",
        "bad_type",
        "bad_integer",
        "bad_utf8",
        "bad_json",
        "too_deep",
        "too_many_keys",
    }


# --- HLC -------------------------------------------------------------------------------


def test_hlc_pack() -> None:
    for v in HLC["pack"]:
        assert hlc.pack(v["physical_ms"], v["counter"]) == v["hlc"]
        assert (hlc.physical_ms(v["hlc"]), v["hlc"] & hlc.COUNTER_MASK) == (
            v["physical_ms"],
            v["counter"],
        )
        assert v["hlc"] > 2**32  # a real clock: a 32-bit shift would lose it
    assert HLC["max_hlc"] == 2**53 - 1


@named(HLC["tick"])
def test_hlc_tick(v: dict[str, Any]) -> None:
    assert hlc.tick(v["last"], v["now_ms"]) == v["tick"]


@named(HLC["observe"])
def test_hlc_observe(v: dict[str, Any]) -> None:
    assert hlc.observe(v["last"], v["remote"], v["now_ms"]) == v["observe"]


# --- Ed25519 ---------------------------------------------------------------------------


@named(ED25519["cases"])
def test_ed25519_strict(v: dict[str, Any]) -> None:
    ok = keys.verify_signature(
        bytes.fromhex(v["public_hex"]),
        bytes.fromhex(v["signature_hex"]),
        bytes.fromhex(v["message_hex"]),
    )
    assert ("success" if ok else "bad_signature") == v["expect"]


def test_every_small_order_point_is_refused_as_a_key() -> None:
    for point in ED25519["small_order_points_hex"]:
        with pytest.raises(ProtocolError) as info:
            keys.check_public_key(bytes.fromhex(point))
        assert info.value.code == "bad_key"


# --- merge -----------------------------------------------------------------------------


def _meta(c: dict[str, Any]) -> merge.CellMeta:
    return merge.CellMeta(
        record_id=c["record_id"],
        field_tag=c["field_tag"],
        cell_id=c["cell_id"],
        hlc=c["hlc"],
        device_id=c["device_id"],
        supersedes=tuple(c["supersedes"]),
        keyholder=c["keyholder"],
    )


@named(MERGE["scenarios"])
def test_merge_scenario(v: dict[str, Any]) -> None:
    metas = [_meta(c) for c in v["cells"]]
    for order in itertools.permutations(metas):
        state, _ = merge.merge({}, order)
        got = [
            {"record_id": k[0], "field_tag": k[1], "heads": [c.cell_id for c in reg.heads]}
            for k, reg in sorted(state.items())
        ]
        assert got == v["heads"]
        # The bounded fold the server runs agrees, one cell at a time.
        view = merge.View()
        for m in order:
            merge.fold(view, [m])
        assert {k: [c.cell_id for c in hs] for k, hs in view.heads.items() if hs} == {
            (h["record_id"], h["field_tag"]): h["heads"] for h in v["heads"] if h["heads"]
        }


@named(MERGE["failures"])
def test_merge_failure(v: dict[str, Any]) -> None:
    metas = [_meta(c) for c in v["cells"]]
    assert code_of(merge.fold, merge.View(), metas, v["max_heads"]) == v["expect"]


def test_merge_bound_is_one_writes_reach() -> None:
    from schemas.wire import MAX_SUPERSEDES

    assert MERGE["max_heads"] == merge.MAX_HEADS == MAX_SUPERSEDES


# --- X-Wing from its parts -------------------------------------------------------------


def test_xwing_seed_expands_to_the_private_key() -> None:
    v = KEYS["xwing"]["from_seed"]
    expanded = hashlib.shake_256(bytes.fromhex(v["xwing_seed_hex"])).digest(96)
    assert expanded.hex() == v["private_hex"]
    pair = keys.HpkeKeyPair.from_seed(expanded)
    assert hashlib.sha256(pair.public_bytes).hexdigest() == v["public_sha256"]
    ss = xwing_decapsulate(expanded, bytes.fromhex(v["ct_hex"]))["shared_secret"]
    assert ss.hex() == v["shared_secret_hex"]


def test_hpke_opens_by_hand_as_cryptography_does() -> None:
    v = KEYS["xwing"]["open_by_hand"]
    private = bytes.fromhex(v["private_hex"])
    sealed = b64d(v["sealed_key"])
    info = bytes.fromhex(v["info_hex"])
    assert (
        keys.SUITE.decrypt(sealed, keys.hpke_private_key(private), info=info).hex()
        == (v["plaintext_hex"])
    )
    expected = {k: v[k] for k in v if k not in ("private_hex", "sealed_key", "info_hex")}
    assert hpke_open_by_hand(private, sealed, info) == expected


# --- invites ---------------------------------------------------------------------------


def test_invite_fields_and_fragment() -> None:
    body = invite.decode_invite(INVITE["invite"])
    assert body == INVITE["fields"]
    url, _, fragment = body["server"].partition("#")
    assert url == INVITE["server_url"]
    import urllib.parse

    assert urllib.parse.parse_qs(fragment) == {"workspace": [INVITE["workspace_name"]]}


@named(INVITE["cases"])
def test_invite_case(v: dict[str, Any]) -> None:
    def run() -> None:
        state = keylog.verify_log(KEYLOG["log"][: v["log_prefix"]], KEYLOG["pinned_root"])
        invite.check_invite(invite.decode_invite(v["invite"]), state, v["now"])

    assert code_of(run) == v["expect"]


def test_crypto_is_untouched_by_the_vector_generator() -> None:
    # The generator patches crypto.seal_* in its own process only.
    assert crypto.seal_data_key.__module__ == "protocol.crypto"
