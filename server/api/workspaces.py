"""Create a workspace: the founder's genesis, paid for with a one-time server code."""

from __future__ import annotations

from flask import Blueprint, Response

from protocol.errors import InvalidKeyLog
from protocol.httpsig import AuthError, verify_presented
from protocol.keylog import genesis_state
from schemas.wire import CreateWorkspaceResponseSchema, CreateWorkspaceSchema

from .. import auth
from ..body import CREATE_MAX_BODY
from ..errors import ApiError
from ..openapi import doc
from ..store import nonces, server_db, valid_workspace_id
from . import json_response, load, parse_body

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
    """The founder's key is in the body, so this is the one route that reads a body
    before its signature can be checked: only once the signature headers are well
    formed and fresh, at most CREATE_MAX_BODY bytes, within the body deadline. Every
    refusal is decided by reads alone (the code is checked, never consumed, until
    the workspace is created), so a refused request stores nothing."""
    p = auth.presented()
    raw = auth.read_body(CREATE_MAX_BODY)
    data = load(_schema, parse_body(raw))
    genesis = data["genesis"]
    try:
        state = genesis_state(genesis)
    except InvalidKeyLog as exc:
        raise ApiError("invalid_event", f"invalid_event: {exc.code}: {exc.reason}") from exc
    except (KeyError, TypeError) as exc:
        raise ApiError(
            "invalid_event", "invalid_event: malformed: the genesis is incomplete"
        ) from exc
    ws = state.workspace
    if not valid_workspace_id(ws):  # genesis_state checked it; this guards the file name
        raise ApiError("invalid_event", "invalid_event: malformed: bad workspace id")
    founder = state.devices[genesis["signer"]]
    if p.workspace != ws:
        raise auth.refuse("wrong_workspace", "the request is signed for another workspace")
    if p.key_id != founder.device_id:
        raise auth.refuse("bad_signature", "the request is not signed by the genesis key")
    try:
        verify_presented(p, founder.sign_pub)
    except AuthError as exc:
        raise auth.refuse(exc.code, exc.reason) from None
    auth.check_signed_body(p, raw)
    paths = auth.paths()
    if nonces.seen(paths, ws, p.key_id, p.nonce):
        raise auth.refuse("replayed_nonce", "this request was already received")
    if not server_db.code_usable(paths, data["code"]):
        raise _bad_code()
    if paths.workspace_db(ws).exists():
        raise _exists()
    t = auth.now()
    try:
        server_db.create_workspace(paths, ws, data["code"], genesis, t)
    except server_db.CodeRefused as exc:
        raise _bad_code() from exc
    except server_db.WorkspaceExists as exc:
        raise _exists() from exc
    # Recorded once the workspace exists: a replay of this request is refused by name.
    # (Two copies racing both reach create_workspace, where the one-time code lets
    # only the first through.)
    nonces.consume(paths, ws, p.key_id, p.nonce, auth.nonce_expiry(t), t)
    return json_response({"workspace": ws, "root": state.root}, 201)


def _bad_code() -> ApiError:
    return ApiError("bad_code", "unknown or used workspace code", 403)


def _exists() -> ApiError:
    return ApiError("workspace_exists", "a workspace with this id exists", 409)
