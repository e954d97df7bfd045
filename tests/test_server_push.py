"""Push and changes through the Flask app: each result code, ordering, mixing, merging."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from serverkit import Kit, Member, db_state, wire_with_change

from protocol import crypto, hlc
from protocol.encoding import b64d
from protocol.merge import CellMeta, merge
from protocol.model import Bundle, Cell
from server import ingest
from server.store import CHECKPOINT_PAGES, Paths, connect
from server.store import bundles as stored


def results(resp: Any) -> list[tuple[str, Any]]:
    assert resp.status == 200, resp
    return [(r["status"], r.get("seq") or r["error"]["code"]) for r in resp.body["results"]]


@pytest.fixture
def vol(kit: Kit) -> Member:
    return kit.member("volunteer")


@pytest.fixture
def coord(kit: Kit) -> Member:
    return kit.member("coordinator")


def test_accepted_then_stored_and_changes_are_the_bundles(
    kit: Kit, vol: Member, coord: Member
) -> None:
    bundles = [kit.seal(vol, {"place": f"Lindmere Square {i}", "attended": i}) for i in range(5)]
    assert results(kit.push(vol, bundles[:3])) == [
        ("accepted", 1),
        ("accepted", 2),
        ("accepted", 3),
    ]
    assert results(kit.push(vol, bundles)) == [
        ("stored", 1),
        ("stored", 2),
        ("stored", 3),
        ("accepted", 4),
        ("accepted", 5),
    ]
    assert kit.pull_all(coord, limit=2) == [
        wire_with_change(b, i + 1) for i, b in enumerate(bundles)
    ]


def test_changes_paging(kit: Kit, vol: Member, coord: Member) -> None:
    bundles = [kit.seal(vol, {"n": i}) for i in range(7)]
    kit.push(vol, bundles)
    first = kit.changes(coord, since=0, limit=3).body
    inc = first["incarnation"]  # random per database, the same on every page
    assert len(b64d(inc, length=16)) == 16
    feed = {"incarnation": inc, "last": 7}
    assert first == {
        "bundles": [wire_with_change(b, i + 1) for i, b in enumerate(bundles[:3])],
        "next": 3,
        "done": False,
        **feed,
    }
    last = kit.changes(coord, since=6, limit=3).body
    assert last == {"bundles": [wire_with_change(bundles[6], 7)], "next": 7, "done": True, **feed}
    assert kit.changes(coord, since=7).body == {"bundles": [], "next": 7, "done": True, **feed}
    assert kit.changes(coord, since=100).body == {
        "bundles": [],
        "next": 100,
        "done": True,
        **feed,
    }
    for bad in ("since=-1", "limit=0", "limit=1001", "since=x", "limit=2.5"):
        resp = kit.request("GET", kit.path("changes", bad), coord)
        assert (resp.status, resp.code) == (400, "invalid_request"), bad


def test_out_of_order_arrival_chains(kit: Kit, vol: Member, coord: Member) -> None:
    b = [kit.seal(vol, {"n": i}) for i in range(4)]
    assert results(kit.push(vol, [b[3]])) == [("accepted", 1)]
    assert results(kit.push(vol, [b[1], b[0]])) == [("accepted", 2), ("accepted", 3)]
    assert results(kit.push(vol, [b[2]])) == [("accepted", 4)]
    assert [x["bundle_id"] for x in kit.pull_all(coord)] == [b[i].bundle_id for i in (3, 1, 0, 2)]


def with_(b: Bundle, **changes: Any) -> Bundle:
    return dataclasses.replace(b, **changes)


def resign(kit: Kit, member: Member, b: Bundle) -> Bundle:
    """Re-sign a modified bundle header with the member's key, so only the tested rule fails."""
    from protocol.crypto import L_BUNDLE_SIG
    from protocol.encoding import b64e, labelled

    sig = member.key.sign(labelled(L_BUNDLE_SIG, b.header(), trusted=True))
    return with_(b, sig=b64e(sig))


def rejection_cases(kit: Kit, vol: Member) -> list[tuple[str, Bundle]]:
    """One bundle per rejection code that needs no stored state."""
    other = kit.member("volunteer")
    far = hlc.pack(int(kit.clock() * 1000) + 10**7, 0)
    return [
        (
            "wrong_workspace",
            resign(kit, vol, with_(kit.seal(vol, {"n": 1}), workspace=kit.record_id())),
        ),
        ("not_your_bundle", kit.seal(other, {"n": 2})),
        ("unknown_epoch", resign(kit, vol, with_(kit.seal(vol, {"n": 3}), epoch=2, key_epoch=2))),
        ("unknown_epoch", with_(kit.seal(vol, {"n": 4}), key_epoch=2)),
        ("invalid_bundle", with_(kit.seal(vol, {"n": 5}), sig=kit.seal(vol, {"n": 6}).sig)),
        ("hlc_ahead", kit.seal(vol, {"n": 7}, hlc_value=far)),
    ]


def test_each_rejection_changes_nothing(kit: Kit, vol: Member, app: Any) -> None:
    for code, bundle in rejection_cases(kit, vol):
        before = db_state(app.config["DATA_DIR"], nonces=False)
        assert results(kit.push(vol, [bundle])) == [("rejected", code)], code
        assert db_state(app.config["DATA_DIR"], nonces=False) == before


def test_chain_rejections(kit: Kit, vol: Member) -> None:
    b1, b2, b3 = (kit.seal(vol, {"n": i}) for i in range(3))
    assert results(kit.push(vol, [b1, b2])) == [("accepted", 1), ("accepted", 2)]
    # Same id, other content.
    vol.seq, vol.prev = 4, crypto.bundle_hash(b3)
    reused = kit.seal(vol, {"n": 9}, bundle_id=b1.bundle_id)
    # Same device and seq as b2, another bundle: a fork.
    vol.seq, vol.prev = 2, crypto.bundle_hash(b1)
    fork = kit.seal(vol, {"n": "fork"})
    # seq 3 naming a prev that is not b2.
    vol.seq, vol.prev = 3, crypto.bundle_hash(b1)
    broken = kit.seal(vol, {"n": "broken"})
    assert results(kit.push(vol, [reused, fork, broken, b3])) == [
        ("rejected", "bundle_id_reused"),
        ("rejected", "fork"),
        ("rejected", "broken_chain"),
        ("accepted", 3),
    ]
    # A device's first bundle names the zero hash.
    fresh = kit.member("volunteer")
    fresh.prev = crypto.bundle_hash(b3)
    assert results(kit.push(fresh, [kit.seal(fresh, {"n": 1})])) == [("rejected", "broken_chain")]


def test_broken_chain_against_a_later_stored_bundle(kit: Kit, vol: Member) -> None:
    b1, b2, b3 = (kit.seal(vol, {"n": i}) for i in range(3))
    assert results(kit.push(vol, [b3])) == [("accepted", 1)]
    vol.seq, vol.prev = 2, crypto.bundle_hash(b1)
    imposter = kit.seal(vol, {"n": "other"})  # chains to b1 but b3 names b2
    assert results(kit.push(vol, [imposter, b1, b2])) == [
        ("rejected", "broken_chain"),
        ("accepted", 2),
        ("accepted", 3),
    ]


def test_mixed_request_commits_only_the_good(kit: Kit, vol: Member, coord: Member) -> None:
    good = [kit.seal(vol, {"n": i}) for i in range(3)]
    bad = with_(kit.seal(vol, {"n": "x"}), sig=good[0].sig)
    assert results(kit.push(vol, [good[0], bad, good[1], good[2]])) == [
        ("accepted", 1),
        ("rejected", "invalid_bundle"),
        ("accepted", 2),
        ("accepted", 3),
    ]
    assert kit.pull_all(coord) == [wire_with_change(b, i + 1) for i, b in enumerate(good)]


def test_foreign_supersede(kit: Kit, vol: Member, coord: Member) -> None:
    rid = kit.record_id()
    theirs = kit.member("volunteer")
    base = kit.seal(theirs, {"place": "Tamsel Bridge"}, record_id=rid)
    assert results(kit.push(theirs, [base])) == [("accepted", 1)]
    over = kit.seal(
        vol, {"place": "Tamsel Quay"}, record_id=rid, supersedes={"place": (base.cells[0].cell_id,)}
    )
    assert results(kit.push(vol, [over])) == [("rejected", "foreign_supersede")]
    # A volunteer may supersede its own cells; a coordinator may supersede anyone's.
    mine = kit.seal(
        theirs,
        {"place": "Tamsel Pier"},
        record_id=rid,
        supersedes={"place": (base.cells[0].cell_id,)},
    )
    fix = kit.seal(
        coord,
        {"place": "Tamsel Ferry"},
        record_id=rid,
        supersedes={"place": (mine.cells[0].cell_id,)},
    )
    assert results(kit.push(theirs, [mine])) == [("accepted", 2)]
    assert results(kit.push(coord, [fix])) == [("accepted", 3)]


def test_cell_id_reused(kit: Kit, vol: Member, monkeypatch: Any) -> None:
    b1 = kit.seal(vol, {"n": 1})
    assert results(kit.push(vol, [b1])) == [("accepted", 1)]
    # A cell id cannot carry two contents past verify_bundle (it hashes the content),
    # so switch verification off to reach the merge's own guard.
    monkeypatch.setattr(ingest, "verify_bundle", lambda b, pub: crypto.bundle_hash(b))
    b2 = kit.seal(vol, {"n": 2})
    same_meta = with_(b2, cells=b1.cells)
    other_meta = with_(b2, cells=(dataclasses.replace(b1.cells[0], hlc=b1.cells[0].hlc + 1),))
    assert results(kit.push(vol, [same_meta])) == [("rejected", "cell_id_reused")]
    assert results(kit.push(vol, [other_meta])) == [("rejected", "cell_id_reused")]


def test_invalid_request_is_refused_whole(kit: Kit, vol: Member, app: Any) -> None:
    good = kit.seal(vol, {"n": 1}).to_wire()
    broken = json.loads(json.dumps(good))
    broken["cells"][0]["hlc"] = "12"
    for payload, where in [
        ({"bundles": []}, "bundles"),
        ({"bundles": [good, broken]}, "bundles.1.cells.0.hlc"),
        ({"bundles": [good], "extra": 1}, "extra"),
        ({"bundles": [{**good, "sig": good["sig"] + "A"}]}, "bundles.0.sig"),
        ([1, 2], ""),
    ]:
        before = db_state(app.config["DATA_DIR"], nonces=False)
        resp = kit.request("POST", kit.path("push"), vol, payload)
        assert (resp.status, resp.code) == (400, "invalid_request")
        assert where in resp.body["error"]["message"]
        assert db_state(app.config["DATA_DIR"], nonces=False) == before


def server_heads(app: Any, ws: str) -> dict[tuple[str, str], list[str]]:
    conn = connect(Paths(Path(app.config["DATA_DIR"])).workspace_db(ws))
    try:
        return stored.register_heads(conn)
    finally:
        conn.close()


def test_server_merge_equals_protocol_merge(kit: Kit, app: Any) -> None:
    devices = [kit.member("volunteer"), kit.member("volunteer"), kit.member("coordinator")]
    records = [kit.record_id() for _ in range(3)]
    pushed: list[tuple[Member, Bundle]] = []
    last: dict[tuple[str, str], list[str]] = {}
    rng = kit.rng
    for step in range(30):
        dev = devices[step % 3]
        rid = rng.choice(records)
        field = rng.choice(["place", "attended", "outcome"])
        sup: tuple[str, ...] = ()
        own = [
            c
            for c in last.get((rid, field), [])
            if dev.role != "volunteer" or c.startswith(dev.device_id)
        ]
        if own and rng.random() < 0.6:
            sup = tuple(c.split(":", 1)[1] for c in own)
        b = kit.seal(dev, {field: f"v{step}"}, record_id=rid, supersedes={field: sup})
        last.setdefault((rid, field), []).append(f"{dev.device_id}:{b.cells[0].cell_id}")
        pushed.append((dev, b))
    # Push in a shuffled order, in batches, with retries: the result must not depend on it.
    order = list(pushed)
    rng.shuffle(order)
    for i in range(0, len(order), 4):
        batch = order[i : i + 4]
        for dev in devices:
            mine = [b for d, b in batch if d is dev]
            if mine:
                statuses = {s for s, _ in results(kit.push(dev, mine))}
                assert statuses == {"accepted"}, statuses
                assert {s for s, _ in results(kit.push(dev, mine))} == {"stored"}
    metas = [
        CellMeta(
            c.record_id,
            c.field_tag,
            c.cell_id,
            c.hlc,
            b.device_id,
            c.supersedes,
            keyholder=dev.role != "volunteer",
        )
        for dev, b in pushed
        for c in b.cells
    ]
    state, _ = merge({}, metas)
    expected = {k: [c.cell_id for c in reg.heads] for k, reg in state.items()}
    assert server_heads(app, kit.workspace) == expected
    assert any(len(v) > 1 for v in expected.values())  # the history has open conflicts


def test_sealed_bundles_open_after_the_round_trip(kit: Kit, vol: Member, coord: Member) -> None:
    b = kit.seal(vol, {"place": "Verel Steps", "attended": 40, "dispersed": True})
    kit.push(vol, [b])
    pulled = Bundle.from_wire(kit.pull_all(coord)[0])
    opened = kit.open(pulled, vol.key.public_key().public_bytes_raw())
    assert [(c.field, c.value) for c in opened] == [
        ("place", "Verel Steps"),
        ("attended", 40),
        ("dispersed", True),
    ]
    assert isinstance(pulled.cells[0], Cell)


def test_replayed_push_and_a_nonce_race_store_nothing(
    kit: Kit, vol: Member, app: Any, monkeypatch: Any
) -> None:
    path = kit.path("push")
    body = json.dumps({"bundles": [kit.seal(vol, {"n": 1}).to_wire()]}).encode()
    headers = kit.signed_headers("POST", path, vol, body)
    assert results(kit.transport.send("POST", path, headers, body)) == [("accepted", 1)]
    before = db_state(app.config["DATA_DIR"])
    again = kit.transport.send("POST", path, headers, body)
    assert (again.status, again.code) == (401, "replayed_nonce")
    # Two requests with one nonce both past the read check: the second one finds
    # the nonce taken when it records it, and writes nothing.
    from server.store import nonces

    monkeypatch.setattr(nonces, "seen", lambda *a: False)
    other = json.dumps({"bundles": [kit.seal(vol, {"n": 2}).to_wire()]}).encode()
    nonce = headers["Signature-Input"].split('nonce="')[1].split('"')[0]
    raced = kit.signed_headers("POST", path, vol, other, nonce=nonce)
    resp = kit.transport.send("POST", path, raced, other)
    assert (resp.status, resp.code) == (401, "replayed_nonce")
    assert db_state(app.config["DATA_DIR"]) == before


def test_pushes_leave_checkpoints_to_every_16_mib_of_wal(kit: Kit, vol: Member, app: Any) -> None:
    """A push writes its pages to the WAL once and fsyncs once; the copy into the
    database (two more fsyncs, inside the push that crosses the mark, under the
    write lock) waits for CHECKPOINT_PAGES of WAL, not SQLite's default 1,000."""
    db = Paths(Path(app.config["DATA_DIR"])).workspace_db(kit.workspace)
    wal = Path(f"{db}-wal")
    before = db.stat().st_size
    for _ in range(4):
        bundles = [kit.seal(vol, {"place": "Orvel Gate " * 300}) for _ in range(250)]
        assert {s for s, _ in results(kit.push(vol, bundles))} == {"accepted"}
    page = 4096 + 24  # a WAL frame: its header and one page
    assert wal.stat().st_size > 1000 * page  # past the default mark: it would have copied
    assert db.stat().st_size == before  # nothing copied into the database yet
    assert CHECKPOINT_PAGES * page > wal.stat().st_size
