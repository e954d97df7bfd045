"""Attachment chunks: upload (content-addressed, idempotent, counted in the quota), ask
which are missing (how an upload resumes), download (keyholders), and release.

The server reads none of it: a chunk is ciphertext whose id is the hash of its
bytes, checked here; which chunks an attachment has, and which a removal lets go,
only the devices know (docs/PROTOCOL.md, "Attachments"). A released chunk is
dropped once every active keyholder has pulled past the change that removed its
attachment (each keyholder's `since`, server/store/nonces.py), or at once when an
admin purges; the drop is done a bounded batch at a time by the chunk routes.
"""

from __future__ import annotations

import shutil
import sqlite3

from flask import Blueprint, Response, current_app, g

from protocol import attachment
from protocol.errors import InvalidAttachment
from protocol.keylog import KeyLogState
from schemas.wire import (
    ChunkReleaseDocSchema,
    ChunkReleaseRequestSchema,
    ChunkReleaseResponseSchema,
    ChunksMissingRequestSchema,
    ChunksMissingResponseSchema,
    ChunkStoredResponseSchema,
)

from .. import auth, store
from ..auth import KEYHOLDER, MEMBER, Caller, signed
from ..errors import ApiError
from ..openapi import doc
from ..store import bundles as stored_bundles
from ..store import chunks as stored
from ..store import nonces, valid_chunk_id
from . import body_json, json_response, load

bp = Blueprint("chunks", __name__, url_prefix="/v1/w/<ws>")
# A chunk id in a path: its shape, so that schemathesis can make invalid ones too.
CHUNK_ID_PATH = {
    "chunk_id": {
        "type": "string",
        "minLength": 43,
        "maxLength": 43,
        "pattern": "^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$",
    }
}

_missing = ChunksMissingRequestSchema()
_release = ChunkReleaseRequestSchema()
SWEEP_BATCH = 256  # chunks one request drops at most: its work stays bounded


def _caller() -> Caller:
    caller: Caller = g.caller
    assert caller.device is not None
    return caller


def _conn(ws: str) -> sqlite3.Connection:
    conn = auth.workspace_conn(ws)
    assert conn is not None  # authentication opened it
    stored.ensure(conn)
    return conn


def _chunk_id(text: str) -> str:
    if not valid_chunk_id(text):
        raise ApiError("invalid_request", "the path names no chunk id (43 characters)")
    return text


def _disk_floor() -> None:
    floor = int(current_app.config["MIN_FREE_DISK"])
    if shutil.disk_usage(auth.paths().data_dir).free < floor:
        raise ApiError(
            "disk_full", "the server is short of disk space and stores nothing for now", 507
        )


def pulled_floor(ws: str, state: KeyLogState) -> int:
    """The change every active keyholder has pulled up to (0 while one has pulled none)."""
    cursors = nonces.pulled(auth.paths(), ws)
    active = [
        d.device_id for d in state.devices.values() if d.is_keyholder and d.status == "active"
    ]
    return min((cursors.get(d, 0) for d in active), default=0)


def sweep(ws: str, conn: sqlite3.Connection, state: KeyLogState) -> int:
    """Drop up to SWEEP_BATCH released chunks that every keyholder has seen removed."""
    floor = pulled_floor(ws, state)
    if floor <= 0 or not stored.due(conn, floor, 1):
        return 0  # decided by a read: no write lock when nothing is due
    with store.write(conn):
        return stored.drop(auth.paths(), ws, conn, stored.due(conn, floor, SWEEP_BATCH))


@bp.put("/chunks/<chunk_id>")
@doc(
    "Store one sealed chunk; its id is the SHA-256 of its bytes (with the chunk-id label)."
    " Idempotent: a chunk already stored is `stored` again.",
    binary_request=True,
    path=CHUNK_ID_PATH,
    response=ChunkStoredResponseSchema,
    errors=(400, 403, 410, 507),
)
@signed(MEMBER)
def put(ws: str, chunk_id: str) -> Response:
    cid = _chunk_id(chunk_id)
    data: bytes = g.fs_body
    if not attachment.TAG_LEN < len(data) <= attachment.MAX_CHUNK_CT:
        raise ApiError(
            "invalid_request", f"a chunk is 17 to {attachment.MAX_CHUNK_CT} bytes, not {len(data)}"
        )
    if attachment.chunk_id(data) != cid:
        raise ApiError("chunk_mismatch", "the body's chunk id is not the one in the path")
    caller = _caller()
    me = caller.device
    assert me is not None
    conn = _conn(ws)
    paths = auth.paths()
    path = paths.chunk_path(ws, cid)
    quota = int(current_app.config["DEVICE_QUOTA"])
    with store.read(conn):
        known = stored.stored(conn, [cid]).get(cid)
        gone = bool(stored.dropped(conn, [cid]))
        used = stored_bundles.used_bytes(conn, me.device_id)
    if gone:
        raise ApiError("chunk_released", "this chunk was released and dropped", 410)
    if known is not None and path.exists():
        sweep(ws, conn, caller.state)
        return json_response({"chunk_id": cid, "status": "stored"})
    if known is None and used + stored.cost(len(data)) > quota:
        raise _over_quota(used, quota, len(data))
    _disk_floor()
    stored.write_file(path, data)
    try:
        with store.write(conn):
            auth.recheck_in_transaction(conn)
            if stored.dropped(conn, [cid]):
                raise ApiError("chunk_released", "this chunk was released and dropped", 410)
            used = stored_bundles.used_bytes(conn, me.device_id)
            if stored.cost(len(data)) + used > quota and not stored.stored(conn, [cid]):
                raise _over_quota(used, quota, len(data))
            stored.insert(conn, stored.StoredChunk(cid, me.device_id, len(data)), auth.now())
    except ApiError:
        # Refused after the file was written (a revoke, a release or another upload
        # meanwhile): leave no file without a row, unless another request owns it.
        with store.read(conn):
            owned = bool(stored.stored(conn, [cid]))
        if not owned:
            path.unlink(missing_ok=True)
        raise
    sweep(ws, conn, caller.state)
    return json_response({"chunk_id": cid, "status": "accepted"})


def _over_quota(used: int, quota: int, size: int) -> ApiError:
    return ApiError(
        "quota_exceeded",
        f"this device has {used} bytes stored of its {quota}; this chunk needs"
        f" {stored.cost(size)} more",
        403,
    )


@bp.post("/chunks/missing")
@doc(
    "Which of these chunks the server lacks, in the order asked: what is left to upload.",
    request=ChunksMissingRequestSchema,
    response=ChunksMissingResponseSchema,
    errors=(400,),
)
@signed(MEMBER)
def missing(ws: str) -> Response:
    ids = load(_missing, body_json())["chunks"]
    conn = _conn(ws)
    paths = auth.paths()
    with store.read(conn):
        have = stored.stored(conn, ids)
        gone = stored.dropped(conn, ids)
    # A released chunk is not asked for again; a row whose file was lost is.
    lacking = [
        c for c in ids if c not in gone and (c not in have or not paths.chunk_path(ws, c).exists())
    ]
    sweep(ws, conn, _caller().state)
    return json_response({"missing": list(dict.fromkeys(lacking))})


@bp.get("/chunks/<chunk_id>")
@doc(
    "The bytes of one chunk (application/octet-stream).",
    binary_response=True,
    path=CHUNK_ID_PATH,
    errors=(400, 404, 410),
)
@signed(KEYHOLDER)
def get(ws: str, chunk_id: str) -> Response:
    cid = _chunk_id(chunk_id)
    conn = _conn(ws)
    with store.read(conn):
        known = stored.stored(conn, [cid]).get(cid)
        gone = bool(stored.dropped(conn, [cid]))
    if gone:
        raise ApiError(
            "chunk_released",
            "this chunk was released by a device that removed its attachment, and dropped",
            410,
        )
    data = None if known is None else stored.read_file(auth.paths().chunk_path(ws, cid))
    if data is None:
        raise ApiError("unknown_chunk", "this server holds no such chunk", 404)
    return Response(data, mimetype="application/octet-stream")


@bp.get("/chunks/<chunk_id>/release")
@doc(
    "The signed release that lets this chunk go, as its device sent it.",
    response=ChunkReleaseDocSchema,
    path=CHUNK_ID_PATH,
    errors=(400, 404),
)
@signed(KEYHOLDER)
def release_of(ws: str, chunk_id: str) -> Response:
    cid = _chunk_id(chunk_id)
    conn = _conn(ws)
    with store.read(conn):
        found = stored.release_of(conn, cid)
    if found is None:
        raise ApiError("unknown_chunk", "no release names this chunk", 404)
    return json_response({"release": found[0]})


@bp.post("/chunks/release")
@doc(
    "Release the chunks of attachments this device removed (in its bundle `change`): they"
    " are dropped once every keyholder has pulled past that change, or at once when an"
    " admin purges.",
    request=ChunkReleaseRequestSchema,
    response=ChunkReleaseResponseSchema,
    errors=(400, 403),
)
@signed(MEMBER)
def release(ws: str) -> Response:
    rel = load(_release, body_json())["release"]
    caller = _caller()
    me = caller.device
    assert me is not None
    if rel["workspace"] != ws or rel["device_id"] != me.device_id:
        raise ApiError("invalid_release", "a device releases only in its own name, here", 400)
    try:
        attachment.verify_release(rel, me.sign_pub)
    except InvalidAttachment as exc:
        raise ApiError("invalid_release", exc.reason, 400) from exc
    keyholder = me.is_keyholder and me.status == "active"
    if rel["purge"] and not (me.role == "admin" and me.status == "active"):
        raise auth.refuse("wrong_role", "only an admin may purge chunks at once")
    ids = list(dict.fromkeys(rel["chunks"]))
    conn = _conn(ws)
    with store.write(conn):
        auth.recheck_in_transaction(conn)
        if stored.bundle_device(conn, rel["change"]) != me.device_id:
            raise ApiError(
                "invalid_release", f"change {rel['change']} is not a bundle of this device", 400
            )
        have = stored.stored(conn, ids)
        if not keyholder and any(c.device_id != me.device_id for c in have.values()):
            raise auth.refuse(
                "wrong_role", "only the uploading device or a keyholder may release a chunk"
            )
        known = [c for c in ids if c in have]
        n = stored.record_release(conn, rel, known)
        dropped = stored.drop(auth.paths(), ws, conn, known) if rel["purge"] else 0
    if not rel["purge"]:
        dropped = sweep(ws, conn, caller.state)
    return json_response({"released": n, "dropped": dropped})
