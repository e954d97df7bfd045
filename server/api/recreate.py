"""Recreate a workspace whose file was lost with no backup, from an admin's verified key log.

The server holds nothing to check the request against, so, as at creation, the
body is read first: the whole log must verify from its own genesis, and the
request must be signed by an admin active at its end. A one-time code pays for
it. The new file gets a new incarnation, so keyholders pull from the start and
every device re-sends what it still keeps (docs/PROTOCOL.md, "Delivery").
"""

from __future__ import annotations

from flask import Blueprint, Response

from protocol.errors import InvalidKeyLog
from protocol.httpsig import AuthError, verify_presented
from protocol.keylog import event_hash, verify_log
from schemas.wire import RecreateWorkspaceResponseSchema, RecreateWorkspaceSchema

from .. import auth
from ..errors import ApiError
from ..openapi import doc
from ..store import nonces, server_db, valid_workspace_id
from . import json_response, load, parse_body
from .workspaces import _bad_code, _exists

bp = Blueprint("recreate", __name__, url_prefix="/v1")

_schema = RecreateWorkspaceSchema()
# Read before the signature can be checked (the admin's key is in the log), so
# bounded below MAX_BODY: a key log of hundreds of roster events fits.
RECREATE_MAX_BODY = 4 * 1024 * 1024


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
    """As at creation, the body is read only once the signature headers are well formed
    and fresh, bounded, and every refusal is decided by reads alone: nothing is stored
    until the workspace is made."""
    p = auth.presented()
    raw = auth.read_body(RECREATE_MAX_BODY)
    data = load(_schema, parse_body(raw))
    events = data["log"]
    try:
        state = verify_log(events, event_hash(events[0]))
    except InvalidKeyLog as exc:
        raise ApiError("invalid_event", f"invalid_event: {exc.code}: {exc.reason}") from exc
    except (KeyError, TypeError) as exc:
        raise ApiError("invalid_event", "invalid_event: malformed: an event is incomplete") from exc
    ws = state.workspace
    if not valid_workspace_id(ws):
        raise ApiError("invalid_event", "invalid_event: malformed: bad workspace id")
    if p.workspace != ws:
        raise auth.refuse("wrong_workspace", "the request is signed for another workspace")
    device = state.devices.get(p.key_id)
    if device is None:
        raise auth.refuse("bad_signature", "the request is not signed by a device of this log")
    try:
        verify_presented(p, device.sign_pub)
    except AuthError as exc:
        raise auth.refuse(exc.code, exc.reason) from None
    auth.check_signed_body(p, raw)
    if device.status == "revoked":
        raise auth.refuse("revoked_device", "this device was revoked")
    paths = auth.paths()
    if nonces.seen(paths, ws, p.key_id, p.nonce):
        raise auth.refuse("replayed_nonce", "this request was already received")
    if device.role != "admin" or device.status != "active":
        raise auth.refuse("wrong_role", "only an active admin of this key log may recreate it")
    if not server_db.code_usable(paths, data["code"]):
        raise _bad_code()
    if paths.workspace_db(ws).exists():
        raise _exists()
    t = auth.now()
    try:
        server_db.create_workspace(paths, ws, data["code"], events[0], t, events[1:])
    except server_db.CodeRefused as exc:
        raise _bad_code() from exc
    except server_db.WorkspaceExists as exc:
        raise _exists() from exc
    nonces.consume(paths, ws, p.key_id, p.nonce, auth.nonce_expiry(t), t)
    body = {"workspace": ws, "root": state.root, "length": state.length, "head": state.head}
    return json_response(body, 201)
