"""Recreate a workspace whose file was lost with no backup, from an admin's verified key log.

The server holds nothing to check the request against, so, as at creation, the
body is read first: the whole log must verify from its own genesis, and the
request must be signed by an admin active at its end. A one-time code pays for
it. The new file gets a new incarnation, so keyholders pull from the start and
every device re-sends what it still keeps (docs/PROTOCOL.md, "Delivery").
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from protocol.errors import InvalidKeyLog
from protocol.httpsig import AuthError, parse_keyid
from protocol.keylog import event_hash, verify_log
from schemas.wire import RecreateWorkspaceResponseSchema, RecreateWorkspaceSchema

from .. import auth
from ..errors import ApiError
from ..openapi import doc
from ..store import server_db, valid_workspace_id
from . import body_json, json_response, load

bp = Blueprint("recreate", __name__, url_prefix="/v1")

_schema = RecreateWorkspaceSchema()


@bp.post("/workspaces/recreate")
@doc(
    "Recreate a lost workspace from its whole key log (genesis first), signed by an admin"
    " active at the log's end.",
    request=RecreateWorkspaceSchema,
    response=RecreateWorkspaceResponseSchema,
    status=201,
    errors=(400, 409),
)
def recreate() -> tuple[Response, int] | Response:
    if "signature" not in request.headers or "signature-input" not in request.headers:
        raise auth.refuse("missing_signature", "the request is not signed")
    data = load(_schema, body_json())
    events = data["log"]
    try:
        state = verify_log(events, event_hash(events[0]))
    except (InvalidKeyLog, KeyError, TypeError) as exc:
        raise ApiError("invalid_event", f"invalid_event: {exc}", 400) from exc
    ws = state.workspace
    if not valid_workspace_id(ws):
        raise ApiError("invalid_event", "invalid_event: bad workspace id", 400)

    def public_key_for(keyid: str) -> bytes:
        kws, ident = parse_keyid(keyid)
        if kws != ws:
            raise AuthError("wrong_workspace", "the request is signed for another workspace")
        device = state.devices.get(ident)
        if device is None:
            raise AuthError("unknown_device", "the request is not signed by a device of this log")
        return device.sign_pub

    signed_by = auth.verify(public_key_for)
    device = state.devices[signed_by.key_id]
    if device.status == "revoked":
        raise auth.refuse("revoked_device", "this device was revoked")
    paths = auth.paths()
    if server_db.nonce_seen(paths, signed_by.keyid, signed_by.nonce):
        raise auth.refuse("replayed_nonce", "this request was already received")
    if device.role != "admin" or device.status != "active":
        raise auth.refuse("wrong_role", "only an active admin of this key log may recreate it")
    t = auth.now()
    expires = t + 2 * int(current_app.config["SIGNATURE_WINDOW"])
    if not server_db.consume_founder_nonce(paths, signed_by.keyid, signed_by.nonce, expires, t):
        raise auth.refuse("replayed_nonce", "this request was already received")
    try:
        server_db.create_workspace(paths, ws, data["code"], events[0], t, events[1:])
    except server_db.CodeRefused as exc:
        raise ApiError("bad_code", "unknown or used workspace code", 403) from exc
    except server_db.WorkspaceExists as exc:
        raise ApiError("workspace_exists", "a workspace with this id exists", 409) from exc
    body = {"workspace": ws, "root": state.root, "length": state.length, "head": state.head}
    return json_response(body, 201)
