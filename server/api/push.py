"""Push: many sealed bundles in, one result each, answered only after COMMIT."""

from __future__ import annotations

import shutil

from flask import Blueprint, Response, current_app, g

from protocol.model import Bundle
from schemas.wire import PushRequestSchema, PushResponseSchema

from .. import auth, fastload, ingest
from ..auth import MEMBER, signed
from ..errors import ApiError
from ..openapi import doc
from . import body_json, json_response, load

bp = Blueprint("push", __name__, url_prefix="/v1/w/<ws>")

_schema = PushRequestSchema()


@bp.post("/push")
@doc(
    "Push 1-500 sealed bundles; each is accepted, stored (a retry) or rejected.",
    request=PushRequestSchema,
    response=PushResponseSchema,
    errors=(400, 507),
)
@signed(MEMBER)
def push(ws: str) -> Response:
    data = body_json()
    bundles = fastload.push_bundles(data)
    if bundles is None:  # not on the fast path: the schema accepts it or says why not
        bundles = [Bundle.from_wire(b) for b in load(_schema, data)["bundles"]]
    caller: auth.Caller = g.caller
    assert caller.device is not None
    floor = int(current_app.config["MIN_FREE_DISK"])
    if shutil.disk_usage(auth.paths().data_dir).free < floor:
        raise ApiError(
            "disk_full", "the server is short of disk space and stores nothing for now", 507
        )
    conn = auth.workspace_conn(ws)
    assert conn is not None
    outcome = ingest.push(
        conn,
        bundles,
        caller.device,
        caller.state,
        now_ms=int(current_app.config["CLOCK"]() * 1000),
        max_skew_ms=int(current_app.config["MAX_SKEW"]) * 1000,
        in_transaction=auth.recheck_in_transaction,
        quota=int(current_app.config["DEVICE_QUOTA"]),
    )
    return json_response({"results": outcome.to_wire(bundles)})
