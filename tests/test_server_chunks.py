"""Attachment chunks on the server: stored as files, checked by id, counted in the quota,
resumable, served to keyholders only, released and dropped when every keyholder has
seen the removal (or at once on an admin's purge), and nothing stored by a refusal."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from serverkit import Kit, Member, db_state

from protocol import attachment
from protocol.attachment import Descriptor
from server.store import Paths
from server.store.chunks import cost


def sealed(
    kit: Kit, data: bytes, chunk_size: int = 256
) -> tuple[Descriptor, list[tuple[str, bytes]]]:
    return attachment.seal_file(
        data,
        name="photo.jpg",
        media_type="image/jpeg",
        captured_at="2026-12-04T18:30:05Z",
        random=kit.random,
        chunk_size=chunk_size,
    )


def upload(kit: Kit, member: Member, chunks: list[tuple[str, bytes]]) -> None:
    for cid, ct in chunks:
        resp = kit.put_chunk(member, cid, ct)
        assert resp.status == 200 and resp.body["status"] == "accepted", resp


def chunk_file(app: Any, kit: Kit, cid: str) -> Path:
    return Paths(Path(app.config["DATA_DIR"])).chunk_path(kit.workspace, cid)


def usage(app: Any, kit: Kit, device_id: str) -> int:
    from server.store.inspect import dump

    rows = dump(Paths(Path(app.config["DATA_DIR"])).workspace_db(kit.workspace))["usage"]
    return sum(r["bytes"] for r in rows if r["device_id"] == device_id)


def deletion(kit: Kit, member: Member) -> int:
    """Push a capture of `member` (the bundle that removes an attachment) and return its
    change number."""
    resp = kit.push(member, [kit.seal(member, {"notes": "removed the photo"})])
    return int(resp.body["results"][0]["seq"])


def test_a_chunk_is_a_file_named_by_its_hash_and_a_retry_is_stored(app: Any, kit: Kit) -> None:
    vol = kit.member("volunteer")
    coord = kit.member("coordinator")
    desc, chunks = sealed(kit, kit.random(700))
    before = usage(app, kit, vol.device_id)
    upload(kit, vol, chunks)
    for cid, ct in chunks:
        path = chunk_file(app, kit, cid)
        assert path.read_bytes() == ct
        assert path.parent.name == cid[:2] and path.parent.parent.name == kit.workspace
        assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert usage(app, kit, vol.device_id) - before == sum(cost(len(ct)) for _, ct in chunks)
    state = db_state(app.config["DATA_DIR"], nonces=False)
    again = kit.put_chunk(vol, chunks[0][0], chunks[0][1])
    assert (again.status, again.body) == (200, {"chunk_id": chunks[0][0], "status": "stored"})
    assert db_state(app.config["DATA_DIR"], nonces=False) == state
    served = [kit.get_chunk(coord, cid) for cid, _ in chunks]
    assert [r.status for r in served] == [200] * len(chunks)
    assert attachment.assemble(desc, [r.raw for r in served]) == attachment.assemble(
        desc, [ct for _, ct in chunks]
    )
    assert not any(
        p.name.endswith(".tmp") for p in chunk_file(app, kit, chunks[0][0]).parent.iterdir()
    )


def test_nothing_but_sealed_bytes_reaches_the_server(app: Any, kit: Kit) -> None:
    vol = kit.member("volunteer")
    secret = b"GPS 43.2380 N 76.8890 E / Invented Person Bir" * 20
    _, chunks = sealed(kit, secret)
    upload(kit, vol, chunks)
    data_dir = Path(app.config["DATA_DIR"])
    stored = b"".join(p.read_bytes() for p in data_dir.rglob("*") if p.is_file())
    for needle in (b"GPS 43.2380", b"Invented Person", secret[:64]):
        assert needle not in stored


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("id_of_other_bytes", 400, "chunk_mismatch"),
        ("empty", 400, "invalid_request"),
        ("not_an_id", 400, "invalid_request"),
        ("json_type", 415, "unsupported_media_type"),
        ("too_large", 413, "too_large"),
    ],
)
def test_a_refused_chunk_stores_nothing(
    app: Any, kit: Kit, case: str, status: int, code: str
) -> None:
    vol = kit.member("volunteer")
    _, chunks = sealed(kit, kit.random(300))
    cid, ct = chunks[0]
    before = db_state(app.config["DATA_DIR"], nonces=False)
    if case == "id_of_other_bytes":
        resp = kit.put_chunk(vol, cid, ct[:-1] + bytes([ct[-1] ^ 1]))
    elif case == "empty":
        resp = kit.put_chunk(vol, attachment.chunk_id(b""), b"")
    elif case == "not_an_id":
        # A path never names a file: `..%2F` is no route at all (404), a short id is refused.
        assert kit.put_chunk(vol, "..%2F..%2Fserver.sqlite", ct).status == 404
        resp = kit.put_chunk(vol, "..", ct)
    elif case == "json_type":
        path = kit.path(f"chunks/{cid}")
        resp = kit.transport.send("PUT", path, kit.signed_headers("PUT", path, vol, ct), ct)
    else:
        big = bytes(attachment.MAX_CHUNK_CT + 1)
        resp = kit.put_chunk(vol, attachment.chunk_id(big), big)
    assert (resp.status, resp.code) == (status, code)
    assert db_state(app.config["DATA_DIR"], nonces=False) == before


def test_the_quota_counts_chunks(app: Any, kit: Kit) -> None:
    vol = kit.member("volunteer")
    other = kit.member("volunteer")
    _, chunks = sealed(kit, kit.random(2000))
    used = usage(app, kit, vol.device_id)
    app.config["DEVICE_QUOTA"] = used + 2 * cost(256 + 16)
    upload(kit, vol, chunks[:2])
    before = db_state(app.config["DATA_DIR"], nonces=False)
    resp = kit.put_chunk(vol, *chunks[2])
    assert (resp.status, resp.code) == (403, "quota_exceeded")
    assert db_state(app.config["DATA_DIR"], nonces=False) == before
    # Another device has its own quota; a retry of a stored chunk costs nothing.
    assert kit.put_chunk(other, *chunks[2]).body["status"] == "accepted"
    assert kit.put_chunk(vol, *chunks[0]).body["status"] == "stored"


def test_below_the_disk_floor_a_chunk_is_refused(app: Any, kit: Kit) -> None:
    vol = kit.member("volunteer")
    _, chunks = sealed(kit, kit.random(100))
    app.config["MIN_FREE_DISK"] = 1 << 62
    before = db_state(app.config["DATA_DIR"], nonces=False)
    resp = kit.put_chunk(vol, *chunks[0])
    assert (resp.status, resp.code) == (507, "disk_full")
    assert db_state(app.config["DATA_DIR"], nonces=False) == before


def test_missing_says_where_an_upload_resumes(app: Any, kit: Kit) -> None:
    vol = kit.member("volunteer")
    _, chunks = sealed(kit, kit.random(2000))
    ids = [c for c, _ in chunks]
    assert kit.missing(vol, ids).body == {"missing": ids}
    upload(kit, vol, chunks[:5])
    assert kit.missing(vol, ids).body == {"missing": ids[5:]}
    # A file lost from the disk is asked for again, and a retry puts it back.
    chunk_file(app, kit, ids[1]).unlink()
    assert kit.missing(vol, ids).body == {"missing": [ids[1], *ids[5:]]}
    assert kit.put_chunk(vol, *chunks[1]).body["status"] == "accepted"
    assert kit.missing(vol, list(reversed(ids))).body == {"missing": list(reversed(ids[5:]))}


def test_chunk_downloads_name_what_is_not_there(app: Any, kit: Kit) -> None:
    coord = kit.member("coordinator")
    _, chunks = sealed(kit, kit.random(100))
    resp = kit.get_chunk(coord, chunks[0][0])
    assert (resp.status, resp.code) == (404, "unknown_chunk")
    resp = kit.get_chunk(coord, "x")
    assert (resp.status, resp.code) == (400, "invalid_request")


def test_a_release_drops_chunks_once_every_keyholder_pulled_past_it(app: Any, kit: Kit) -> None:
    vol = kit.member("volunteer")
    coord = kit.member("coordinator")
    desc, chunks = sealed(kit, kit.random(700))
    upload(kit, vol, chunks)
    change = deletion(kit, vol)
    used = usage(app, kit, vol.device_id)
    ids = list(desc.chunks)
    assert kit.release(vol, change, ids).body == {"released": len(ids), "dropped": 0}
    # Nobody has pulled the removal yet: the chunks stay and are served.
    assert kit.get_chunk(coord, ids[0]).status == 200
    for keyholder in (kit.founder, coord):
        kit.pull_all(keyholder)  # the last page was asked for with since < change
        assert kit.missing(vol, ids).body == {"missing": []}
        assert all(chunk_file(app, kit, c).exists() for c in ids)
    # The next pulls ask for what follows `change`: each keyholder holds the removal.
    kit.changes(kit.founder, since=change)
    kit.missing(vol, ids)
    assert all(chunk_file(app, kit, c).exists() for c in ids)
    kit.changes(coord, since=change)
    assert kit.missing(vol, ids).body == {"missing": []}  # released: not asked for again
    assert not any(chunk_file(app, kit, c).exists() for c in ids)
    assert usage(app, kit, vol.device_id) == used - sum(cost(len(ct)) for _, ct in chunks)
    resp = kit.get_chunk(coord, ids[0])
    assert (resp.status, resp.code) == (410, "chunk_released")
    again = kit.put_chunk(vol, *chunks[0])
    assert (again.status, again.code) == (410, "chunk_released")
    proof = kit.request("GET", kit.path(f"chunks/{ids[0]}/release"), coord)
    assert proof.status == 200
    release = proof.body["release"]
    attachment.verify_release(release, vol.key.public_key().public_bytes_raw())
    assert (release["device_id"], release["change"], release["chunks"]) == (
        vol.device_id,
        change,
        ids,
    )


def test_an_admin_purges_at_once(app: Any, kit: Kit) -> None:
    vol = kit.member("volunteer")
    coord = kit.member("coordinator")
    _, chunks = sealed(kit, kit.random(300))
    upload(kit, vol, chunks)
    ids = [c for c, _ in chunks]
    change = deletion(kit, coord)
    before = db_state(app.config["DATA_DIR"], nonces=False)
    resp = kit.release(coord, change, ids, purge=True)
    assert (resp.status, resp.code) == (403, "wrong_role")
    assert db_state(app.config["DATA_DIR"], nonces=False) == before
    change = deletion(kit, kit.founder)
    assert kit.release(kit.founder, change, ids, purge=True).body == {
        "released": len(ids),
        "dropped": len(ids),
    }
    assert not any(chunk_file(app, kit, c).exists() for c in ids)


@pytest.mark.parametrize(
    "case", ["another_volunteers_chunk", "not_its_change", "forged", "other_ws"]
)
def test_a_refused_release_stores_nothing(app: Any, kit: Kit, case: str) -> None:
    from protocol.attachment import sign_release

    vol = kit.member("volunteer")
    other = kit.member("volunteer")
    _, chunks = sealed(kit, kit.random(300))
    upload(kit, vol, chunks)
    ids = [c for c, _ in chunks]
    mine = deletion(kit, other)
    theirs = deletion(kit, vol)
    before = db_state(app.config["DATA_DIR"], nonces=False)
    if case == "another_volunteers_chunk":
        resp = kit.release(other, mine, ids)
        expected = (403, "wrong_role")
    elif case == "not_its_change":
        resp = kit.release(other, theirs, [])  # schema: at least one id
        assert (resp.status, resp.code) == (400, "invalid_request")
        resp = kit.release(other, theirs, ids[:1])
        expected = (400, "invalid_release")
    elif case == "forged":
        rel = sign_release(
            workspace=kit.workspace,
            device_key=vol.key,
            change=theirs,
            chunks=ids,
            purge=False,
            at=1,
        )
        rel["chunks"] = ids[:1]
        resp = kit.request("POST", kit.path("chunks/release"), vol, {"release": rel})
        expected = (400, "invalid_release")
    else:
        rel = sign_release(
            workspace="A" * 22, device_key=vol.key, change=theirs, chunks=ids, purge=False, at=1
        )
        resp = kit.request("POST", kit.path("chunks/release"), vol, {"release": rel})
        expected = (400, "invalid_release")
    assert (resp.status, resp.code) == expected
    assert db_state(app.config["DATA_DIR"], nonces=False) == before


def test_a_keyholder_may_release_any_chunk(app: Any, kit: Kit) -> None:
    vol = kit.member("volunteer")
    _, chunks = sealed(kit, kit.random(300))
    upload(kit, vol, chunks)
    ids = [c for c, _ in chunks]
    change = deletion(kit, kit.founder)
    assert kit.release(kit.founder, change, ids).body["released"] == len(ids)
    kit.changes(kit.founder, since=change)  # the founder is the only keyholder
    assert kit.missing(vol, ids).body == {"missing": []}
    assert not any(chunk_file(app, kit, c).exists() for c in ids)


def test_chunk_ids_never_reach_the_log(app: Any, kit: Kit, caplog: Any) -> None:
    vol = kit.member("volunteer")
    _, chunks = sealed(kit, kit.random(300))
    with caplog.at_level("DEBUG"):
        upload(kit, vol, chunks)
        kit.get_chunk(vol, chunks[0][0])
    assert not any(c in r.getMessage() for r in caplog.records for c, _ in chunks)


def test_the_file_bytes_are_the_body_hash(app: Any, kit: Kit) -> None:
    vol = kit.member("volunteer")
    _, chunks = sealed(kit, kit.random(100))
    upload(kit, vol, chunks)
    cid, ct = chunks[0]
    digest = hashlib.sha256(b"fieldsync/v1/chunk-id\x00" + chunk_file(app, kit, cid).read_bytes())
    assert attachment.chunk_id(ct) == cid
    assert digest.digest() == __import__("protocol.encoding", fromlist=["b64d"]).b64d(cid)


def test_a_backup_holds_the_chunks_its_database_lists(
    app: Any, kit: Kit, tmp_path: Path, capsys: Any
) -> None:
    import os

    from server.cli import main

    vol = kit.member("volunteer")
    _, chunks = sealed(kit, kit.random(1000))
    upload(kit, vol, chunks)
    data_dir = str(app.config["DATA_DIR"])
    out = tmp_path / "bk"
    umask = os.umask(0o022)  # main() sets 077 for the process; put the test's back after
    try:
        assert main(["backup", "--data-dir", data_dir, str(out)]) == 0
        first = capsys.readouterr().out
        assert main(["backup", "--data-dir", data_dir, str(out)]) == 0
        second = capsys.readouterr().out
    finally:
        os.umask(umask)
    copies = Paths(out)
    assert {c: copies.chunk_path(kit.workspace, c).read_bytes() for c, _ in chunks} == dict(chunks)
    assert f"{len(chunks)} chunk files ({len(chunks)} copied)" in first
    assert f"{len(chunks)} chunk files (0 copied)" in second


def test_a_rekey_leaves_chunks_untouched_and_readable_by_the_new_key_only(
    app: Any, kit: Kit
) -> None:
    from protocol import crypto, keys
    from protocol.errors import InvalidBundle
    from protocol.model import Bundle

    vol = kit.member("volunteer")
    coord = kit.member("coordinator")
    data = kit.random(1500)
    desc, chunks = sealed(kit, data)
    upload(kit, vol, chunks)
    rid = kit.record_id()
    bundle = kit.seal(vol, {attachment.file_field(desc.id): desc.to_value()}, record_id=rid)
    assert kit.push(vol, [bundle]).body["results"][0]["status"] == "accepted"
    files = {c: chunk_file(app, kit, c).read_bytes() for c, _ in chunks}
    stamps = {c: chunk_file(app, kit, c).stat().st_mtime_ns for c, _ in chunks}
    n = kit.rotate()
    sealed_key = crypto.rekey_sealed_key(
        bundle, kit.epochs[1].private_bytes, n, kit.epochs[n].public_bytes
    )
    item = {"bundle_id": bundle.bundle_id, "key_epoch": n, "sealed_key": sealed_key}
    assert kit.request("POST", kit.path("rekey"), kit.founder, {"items": [item]}).body == {
        "updated": 1
    }
    # The chunks are the same files, untouched: a re-key re-seals one key per bundle.
    assert {c: chunk_file(app, kit, c).read_bytes() for c, _ in chunks} == files
    assert {c: chunk_file(app, kit, c).stat().st_mtime_ns for c, _ in chunks} == stamps
    [wire] = [w for w in kit.pull_all(coord) if w["bundle_id"] == bundle.bundle_id]
    stored = Bundle.from_wire({k: v for k, v in wire.items() if k != "change"})
    device_pub = keys.public_bytes(vol.key)
    # The old epoch key no longer reaches the descriptor, so no attachment key ...
    with pytest.raises(InvalidBundle) as exc:
        crypto.open_bundle(stored, device_pub, {n: kit.epochs[1].private_bytes}, kit.tag_key)
    assert exc.value.code == "sealed_key"
    # ... the new one does, and the untouched chunks open with the key it finds.
    [cell] = crypto.open_bundle(stored, device_pub, {n: kit.epochs[n].private_bytes}, kit.tag_key)
    found = attachment.parse_descriptor(cell.value)
    served = [kit.get_chunk(coord, c).raw for c in found.chunks]
    assert attachment.assemble(found, served) == data
