"""Create a workspace: the founder's genesis, paid for with a one-time server code."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from protocol.errors import InvalidKeyLog
from protocol.httpsig import AuthError, parse_keyid
from protocol.keylog import genesis_state
from schemas.wire import CreateWorkspaceResponseSchema, CreateWorkspaceSchema

from .. import auth
from ..errors import ApiError
from ..openapi import doc
from ..store import server_db, valid_workspace_id
from . import body_json, json_response, load

bp = Blueprint("workspaces", __name__, url_prefix="/v1")

_schema = CreateWorkspaceSchema()


@bp.post("/workspaces")
@doc(
    "Create a workspace from its genesis event (the founder signs with the genesis key).",
    request=CreateWorkspaceSchema,
    response=CreateWorkspaceResponseSchema,
    status=201,
    errors=(400, 409),
)
def create() -> tuple[Response, int] | Response:
    # The founder's key is in the body, so the body is read before the signature
    # can be checked; nothing is stored until both verify.
    if "signature" not in request.headers or "signature-input" not in request.headers:
        raise auth.refuse("missing_signature", "the request is not signed")
    data = load(_schema, body_json())
    genesis = data["genesis"]
    try:
        state = genesis_state(genesis)
    except (InvalidKeyLog, KeyError, TypeError) as exc:
        raise ApiError("invalid_event", f"invalid_event: {exc}", 400) from exc
    ws = state.workspace
    if not valid_workspace_id(ws):  # genesis_state checked it; this guards the file name
        raise ApiError("invalid_event", "invalid_event: bad workspace id", 400)
    founder = state.devices[genesis["signer"]]

    def public_key_for(keyid: str) -> bytes:
        kws, ident = parse_keyid(keyid)
        if kws != ws:
            raise AuthError("wrong_workspace", "the request is signed for another workspace")
        if ident != founder.device_id:
            raise AuthError("unknown_device", "the request is not signed by the genesis key")
        return founder.sign_pub

    signed_by = auth.verify(public_key_for)
    paths = auth.paths()
    if server_db.nonce_seen(paths, signed_by.keyid, signed_by.nonce):
        raise auth.refuse("replayed_nonce", "this request was already received")
    t = auth.now()
    expires = t + 2 * int(current_app.config["SIGNATURE_WINDOW"])
    if not server_db.consume_founder_nonce(paths, signed_by.keyid, signed_by.nonce, expires, t):
        raise auth.refuse("replayed_nonce", "this request was already received")
    try:
        server_db.create_workspace(paths, ws, data["code"], genesis, t)
    except server_db.CodeRefused as exc:
        raise ApiError("bad_code", "unknown or used workspace code", 403) from exc
    except server_db.WorkspaceExists as exc:
        raise ApiError("workspace_exists", "a workspace with this id exists", 409) from exc
    return json_response({"workspace": ws, "root": state.root}, 201)
