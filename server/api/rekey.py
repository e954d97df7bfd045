"""Re-key: an admin re-seals old bundles' data keys to the current epoch, a page at a time."""

from __future__ import annotations

from flask import Blueprint, Response, g, request

from protocol.encoding import check_b64
from protocol.errors import InvalidEncoding
from schemas.wire import RekeyPendingResponseSchema, RekeyRequestSchema, RekeyResponseSchema

from .. import auth, store
from ..auth import ADMIN, signed
from ..errors import ApiError
from ..openapi import doc, query_int
from ..store import bundles as stored
from . import body_json, int_arg, json_response, load

bp = Blueprint("rekey", __name__, url_prefix="/v1/w/<ws>")

_schema = RekeyRequestSchema()


@bp.get("/rekey")
@doc(
    "Bundles whose data key is sealed to an older epoch, oldest first (after the bundle"
    " `after`, when given); `remaining` counts every such bundle, this page included.",
    response=RekeyPendingResponseSchema,
    query=[
        query_int("limit", "bundles per page (default 200)", 1, 1000),
        {
            "in": "query",
            "name": "after",
            "required": False,
            "description": "a bundle id: only bundles stored after it",
            "schema": {"type": "string", "minLength": 22, "maxLength": 22},
        },
    ],
    errors=(400, 404),
)
@signed(ADMIN)
def pending(ws: str) -> Response:
    limit = int_arg("limit", 200, 1, 1000)
    after = request.args.get("after")
    if after is not None:
        try:
            check_b64(after, length=16, what="after")
        except InvalidEncoding as exc:
            raise ApiError("invalid_request", "after must be a bundle id") from exc
    target = g.caller.state.current_epoch
    conn = auth.workspace_conn(ws)
    assert conn is not None
    with store.read(conn):
        since = 0 if after is None else stored.change_of(conn, after)
        if since is None:
            raise ApiError("unknown_bundle", f"no bundle {after}", 404)
        rows, remaining = stored.pending_rekey(conn, target, limit, since)
    page = [
        {
            "bundle_id": bid,
            "workspace": ws,
            "key_epoch": key_epoch,
            "sealed_key": sealed,
            "key_commit": commit,
        }
        for bid, key_epoch, sealed, commit in rows
    ]
    return json_response({"target_epoch": target, "bundles": page, "remaining": remaining})


@bp.post("/rekey")
@doc(
    "Swap the sealed data keys of a page of bundles, all or nothing.",
    request=RekeyRequestSchema,
    response=RekeyResponseSchema,
    errors=(400,),
)
@signed(ADMIN)
def update(ws: str) -> Response:
    items = load(_schema, body_json())["items"]
    conn = auth.workspace_conn(ws)
    assert conn is not None
    # One transaction per page: the checks, the caller's standing, the swap.
    with store.write(conn):
        # Read the epoch inside the lock: a rotate appended meanwhile moves the target.
        current = store.keylog.state(conn, auth.state_key(ws)).current_epoch
        for item in items:
            if item["key_epoch"] != current:
                raise ApiError(
                    "stale_epoch", f"the current epoch is {current}, not {item['key_epoch']}", 400
                )
        known = stored.key_epochs(conn, [i["bundle_id"] for i in items])
        for item in items:
            if item["bundle_id"] not in known:
                raise ApiError("unknown_bundle", f"no bundle {item['bundle_id']}", 404)
        auth.recheck_in_transaction(conn)
        n = stored.swap_sealed_keys(
            conn, [(i["bundle_id"], i["key_epoch"], i["sealed_key"]) for i in items]
        )
    return json_response({"updated": n})
