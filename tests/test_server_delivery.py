"""The server's delivery routes: receipts, chain heads, a device's chain, one bundle by
device and seq, a revoked device's proof, recreate, and the incarnation of a database."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from serverkit import Kit, Member, db_state, wire_with_change

from protocol import crypto, receipts
from protocol.model import ZERO_HASH
from server.store import Paths, schema
from server.store import delivery as stored


def _at() -> int:
    return int(time.time())


def receipt(kit: Kit, signer: Member, about: Member, seq: int, at: int | None = None) -> Any:
    h = crypto.bundle_hash(about.sent[seq - 1])
    return receipts.sign_receipt(
        signer.key, workspace=kit.workspace, device_id=about.device_id, seq=seq, hash=h,
        at=_at() if at is None else at,
    )  # fmt: skip


def head(kit: Kit, member: Member, seq: int) -> Any:
    h = crypto.bundle_hash(member.sent[seq - 1])
    return receipts.sign_chain_head(member.key, workspace=kit.workspace, seq=seq, hash=h, at=_at())


@pytest.fixture
def vol(kit: Kit) -> Member:
    member = kit.member("volunteer")
    resp = kit.push(member, [kit.seal(member, {"place": f"Gate {i}"}) for i in range(3)])
    assert resp.status == 200, resp
    return member


@pytest.fixture
def coord(kit: Kit) -> Member:
    return kit.member("coordinator")


def test_receipts_are_stored_and_served_to_their_device(
    kit: Kit, vol: Member, coord: Member
) -> None:
    mine = receipt(kit, coord, vol, 2)
    founders = receipt(kit, kit.founder, vol, 3)
    resp = kit.request("POST", kit.path("receipts"), coord, {"receipts": [mine]})
    assert (resp.status, resp.body) == (200, {"stored": 1})
    resp = kit.request("POST", kit.path("receipts"), kit.founder, {"receipts": [founders]})
    assert (resp.status, resp.body) == (200, {"stored": 1})
    got = kit.request("GET", kit.path("receipts"), vol)
    assert (got.status, sorted(got.body["receipts"], key=lambda r: r["signer"])) == (
        200,
        sorted([mine, founders], key=lambda r: r["signer"]),
    )
    # Only the caller's own: another device (here the coordinator) is served none of them.
    assert kit.request("GET", kit.path("receipts"), coord).body == {"receipts": []}
    # An older statement does not replace a newer one; a newer one does.
    older = receipt(kit, coord, vol, 1, at=mine["at"] - 10)
    kit.request("POST", kit.path("receipts"), coord, {"receipts": [older]})
    newer = receipt(kit, coord, vol, 3, at=mine["at"] + 10)
    kit.request("POST", kit.path("receipts"), coord, {"receipts": [newer]})
    got = kit.request("GET", kit.path("receipts"), vol).body["receipts"]
    assert sorted(got, key=lambda r: r["signer"]) == sorted(
        [newer, founders], key=lambda r: r["signer"]
    )


def test_a_revoked_keyholders_receipts_are_no_longer_served(
    kit: Kit, vol: Member, coord: Member
) -> None:
    kit.request("POST", kit.path("receipts"), coord, {"receipts": [receipt(kit, coord, vol, 3)]})
    kit.revoke(coord)
    assert kit.request("GET", kit.path("receipts"), vol).body == {"receipts": []}


def _bad(kit: Kit, vol: Member, coord: Member) -> dict[str, tuple[Any, str]]:
    good = receipt(kit, coord, vol, 2)
    other_ws = receipts.sign_receipt(
        coord.key, workspace=crypto.b64e(os.urandom(16)), device_id=vol.device_id, seq=1,
        hash=good["hash"], at=good["at"],
    )  # fmt: skip
    stranger = receipts.sign_receipt(
        coord.key, workspace=kit.workspace, device_id=crypto.b64e(os.urandom(16)), seq=1,
        hash=good["hash"], at=good["at"],
    )  # fmt: skip
    return {
        "signed by another keyholder": (receipt(kit, kit.founder, vol, 2), "wrong_signer"),
        "altered after signing": ({**good, "seq": 3}, "bad_signature"),
        "another workspace": (other_ws, "wrong_workspace"),
        "a device not in the log": (stranger, "unknown_device"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "signed by another keyholder",
        "altered after signing",
        "another workspace",
        "a device not in the log",
    ],
)
def test_a_bad_receipt_is_refused_whole_and_stores_nothing(
    kit: Kit, vol: Member, coord: Member, app: Any, case: str
) -> None:
    bad, code = _bad(kit, vol, coord)[case]
    before = db_state(app.config["DATA_DIR"], nonces=False)
    resp = kit.request(
        "POST", kit.path("receipts"), coord, {"receipts": [receipt(kit, coord, vol, 1), bad]}
    )
    assert (resp.status, resp.code) == (400, "invalid_receipt")
    assert resp.body["error"]["message"].startswith(f"receipt 1: {code}: ")
    assert db_state(app.config["DATA_DIR"], nonces=False) == before


def test_who_may_use_the_delivery_routes(kit: Kit, vol: Member, coord: Member) -> None:
    pending = kit.member("coordinator", approve=False)
    body = {"receipts": [receipt(kit, vol, vol, 1)]}
    for member, method, route, payload, code in [
        (vol, "POST", "receipts", body, "wrong_role"),
        (pending, "POST", "receipts", body, "not_approved"),
        (vol, "GET", "heads", None, "wrong_role"),
        (vol, "GET", f"bundles/{vol.device_id}/1", None, "wrong_role"),
        (vol, "GET", "revocation", None, "wrong_role"),
    ]:
        resp = kit.request(method, kit.path(route), member, payload)
        assert (resp.status, resp.code) == (403, code), route


def test_chain_heads(kit: Kit, vol: Member, coord: Member) -> None:
    h3, h2 = head(kit, vol, 3), head(kit, vol, 2)
    resp = kit.request("POST", kit.path("head"), vol, {"head": h3})
    assert (resp.status, resp.body) == (200, {"seq": 3, "hash": h3["hash"]})
    # A lower head is not kept: the answer names the one kept.
    resp = kit.request("POST", kit.path("head"), vol, {"head": h2})
    assert (resp.status, resp.body) == (200, {"seq": 3, "hash": h3["hash"]})
    assert kit.request("GET", kit.path("heads"), coord).body == {"heads": [h3]}
    for bad, code in [
        (head(kit, coord, 1) if coord.sent else {**h3, "device_id": coord.device_id}, "wrong"),
        ({**h3, "seq": 4}, "bad_signature"),
    ]:
        resp = kit.request("POST", kit.path("head"), vol, {"head": bad})
        assert (resp.status, resp.code) == (400, "invalid_head")
        assert resp.body["error"]["message"].startswith(code)


def test_the_callers_chain_as_stored(kit: Kit, vol: Member, coord: Member) -> None:
    last = crypto.bundle_hash(vol.sent[2])
    assert kit.request("GET", kit.path("chain"), vol).body == {"seq": 3, "hash": last}
    assert kit.request("GET", kit.path("chain"), coord).body == {"seq": 0, "hash": ZERO_HASH}


def test_one_bundle_by_device_and_seq(kit: Kit, vol: Member, coord: Member) -> None:
    resp = kit.request("GET", kit.path(f"bundles/{vol.device_id}/2"), coord)
    assert (resp.status, resp.body) == (200, wire_with_change(vol.sent[1], 2))
    for route, status, code in [
        (f"bundles/{vol.device_id}/4", 404, "unknown_bundle"),
        (f"bundles/{coord.device_id}/1", 404, "unknown_bundle"),
        (f"bundles/{vol.device_id}/0", 400, "invalid_request"),
        ("bundles/not-an-id/1", 400, "invalid_request"),
    ]:
        resp = kit.request("GET", kit.path(route), coord)
        assert (resp.status, resp.code) == (status, code), route


def test_a_revoked_device_is_shown_its_revocation_and_nothing_after(kit: Kit, vol: Member) -> None:
    kit.revoke(vol)
    upto = len(kit.events)
    kit.member("volunteer")  # roster changes after the revocation stay unseen
    resp = kit.request("GET", kit.path("revocation"), vol)
    assert (resp.status, resp.body) == (200, {"events": kit.events[:upto]})
    for route in ("log", "receipts", "chain"):
        resp = kit.request("GET", kit.path(route), vol)
        assert (resp.status, resp.code) == (403, "revoked_device"), route


def _incarnation(kit: Kit, member: Member) -> str:
    return str(kit.changes(member).body["incarnation"])


def test_recreate_a_lost_workspace_from_the_key_log(
    kit: Kit, vol: Member, coord: Member, app: Any, new_code: Callable[[], str]
) -> None:
    before = _incarnation(kit, coord)
    ws_file = Paths(Path(app.config["DATA_DIR"])).workspace_db(kit.workspace)
    body = {"code": new_code(), "log": kit.events}
    resp = kit.request("POST", "/v1/workspaces/recreate", kit.founder, body)
    assert (resp.status, resp.code) == (409, "workspace_exists")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{ws_file}{suffix}").unlink(missing_ok=True)
    from server.store import pool

    pool.close_all()
    assert kit.request("GET", kit.path("log"), vol).code == "unknown_workspace"
    for signer, payload, status, code in [
        (vol, body, 403, "wrong_role"),
        (kit.founder, {**body, "code": "not-a-real-code"}, 403, "bad_code"),
        (kit.founder, {**body, "log": kit.events[1:]}, 400, "invalid_event"),
        (kit.founder, {**body, "log": [*kit.events[:2], kit.events[3]]}, 400, "invalid_event"),
    ]:
        resp = kit.request("POST", "/v1/workspaces/recreate", signer, payload)
        assert (resp.status, resp.code) == (status, code)
    resp = kit.request("POST", "/v1/workspaces/recreate", kit.founder, body)
    assert (resp.status, resp.body) == (
        201,
        {
            "workspace": kit.workspace,
            "root": kit.state.root,
            "length": kit.state.length,
            "head": kit.state.head,
        },
    )
    assert kit.request("GET", kit.path("log"), vol).body == {
        "events": kit.events,
        "length": len(kit.events),
    }
    assert kit.request("GET", kit.path("chain"), vol).body == {"seq": 0, "hash": ZERO_HASH}
    assert _incarnation(kit, coord) != before
    # The device re-sends what it keeps; the server takes it as new.
    resp = kit.push(vol, vol.sent)
    assert [r["status"] for r in resp.body["results"]] == ["accepted"] * 3


# --- cost: each route reads what it answers, not the database -------------------------------


def _steps(conn: sqlite3.Connection, fn: Callable[[], Any]) -> int:
    count = [0]

    def tick() -> int:
        count[0] += 1
        return 0

    conn.set_progress_handler(tick, 1)  # every VM instruction
    try:
        fn()
    finally:
        conn.set_progress_handler(None, 1)
    return count[0]


def test_delivery_reads_do_not_grow_with_the_workspace() -> None:
    """chain_head, bundle_at and receipts_for probe indexes: the same VM steps with 20
    bundles (and 25 receipts) of a device as with 2,000 bundles of many devices besides
    (and 2,500 receipts)."""

    def build(n: int) -> sqlite3.Connection:
        conn = sqlite3.connect(":memory:", isolation_level=None)
        schema.create_workspace_tables(conn)
        stored.set_incarnation(conn)
        rows = []
        cells = []
        for i in range(n):
            dev = "target-device" if i % max(1, n // 20) == 0 else f"d{i % 97}"
            rows.append((i + 1, f"b{i}", dev, i + 1, "p", 1, 1, "k", "s", "g", f"h{i}", 100))
            cells.append((i + 1, 0, f"c{i}", f"r{i}", "t", 1, "[]", "x", 1))
        conn.executemany("INSERT INTO bundles VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        conn.executemany("INSERT INTO cells VALUES (?,?,?,?,?,?,?,?,?)", cells)
        conn.executemany(
            "INSERT INTO receipts VALUES (?, ?, 1, 1, '{}')",
            [(f"d{i}", f"s{j}") for i in range(n // 4) for j in range(5)],
        )
        return conn

    small, large = build(20), build(2000)
    for fn in (
        lambda c: stored.chain_head(c, "target-device"),
        lambda c: stored.bundle_at(c, "ws", "target-device", 1),
        lambda c: stored.receipts_for(c, "d1"),
    ):
        few, many = _steps(small, lambda fn=fn: fn(small)), _steps(large, lambda fn=fn: fn(large))
        assert 0 < many <= few + 10, (few, many)


def test_a_workspace_file_from_before_delivery_gets_its_tables_and_an_incarnation(
    kit: Kit, vol: Member, coord: Member, app: Any
) -> None:
    from server.store import pool

    pool.close_all()
    path = Paths(Path(app.config["DATA_DIR"])).workspace_db(kit.workspace)
    with sqlite3.connect(path, isolation_level=None) as old:
        for table in ("meta", "receipts", "heads"):
            old.execute(f"DROP TABLE {table}")
    old.close()
    page = kit.changes(coord).body
    assert len(page["incarnation"]) == 22
    assert kit.changes(coord).body["incarnation"] == page["incarnation"]
    resp = kit.request("POST", kit.path("head"), vol, {"head": head(kit, vol, 3)})
    assert resp.status == 200
