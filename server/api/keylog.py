"""The key log: read it (devices, invite keys), append to it (admins), enroll (invite keys)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g

from protocol.errors import InvalidKeyLog
from schemas.wire import (
    AppendEventResponseSchema,
    AppendEventSchema,
    EnrollResponseSchema,
    KeyLogSchema,
)

from .. import auth, store
from ..auth import ADMIN, INVITE, MEMBER_OR_INVITE, signed
from ..errors import ApiError
from ..openapi import doc, query_int
from ..store import keylog as stored_log
from . import body_json, int_arg, json_response, load

bp = Blueprint("keylog", __name__, url_prefix="/v1/w/<ws>")

_append = AppendEventSchema()
ADMIN_KINDS = ("invite", "approve", "revoke", "rotate")


@bp.get("/log")
@doc(
    "The key log's events with seq >= since, and its length.",
    response=KeyLogSchema,
    query=[query_int("since", "first seq to return", 0, 2**53 - 1)],
    errors=(400,),
)
@signed(MEMBER_OR_INVITE)
def read(ws: str) -> Response:
    since = int_arg("since", 0, 0, 2**53 - 1)
    conn = auth.workspace_conn(ws)
    assert conn is not None
    with store.read(conn):
        events = stored_log.events_since(conn, since)
        top = stored_log.head(conn)
    assert top is not None
    return json_response({"events": events, "length": top[0]})


def _append_event(ws: str, kinds: tuple[str, ...], signer: str | None = None) -> dict[str, Any]:
    event = load(_append, body_json())["event"]
    if event["kind"] not in kinds:
        raise ApiError(
            "invalid_event", f"invalid_event: wrong_kind: a {event['kind']} event does not go here"
        )
    if signer is not None and event["signer"] != signer:
        raise ApiError(
            "invalid_event", "invalid_event: wrong_signer: signed by another key than the request"
        )
    conn = auth.workspace_conn(ws)
    assert conn is not None
    try:
        with store.write(conn):
            state = stored_log.append(conn, auth.state_key(ws), event, auth.now())
    except stored_log.LogConflict as exc:
        raise ApiError(
            "log_conflict", "another event was appended first: fetch the log and retry", 409
        ) from exc
    except InvalidKeyLog as exc:
        raise ApiError("invalid_event", f"invalid_event: {exc.code}: {exc.reason}", 400) from exc
    return {"length": state.length, "head": state.head, "event": event}


@bp.post("/log")
@doc(
    "Append an admin event (invite, approve, revoke, rotate).",
    request=AppendEventSchema,
    response=AppendEventResponseSchema,
    status=201,
    errors=(400, 409),
)
@signed(ADMIN)
def append(ws: str) -> tuple[Response, int] | Response:
    out = _append_event(ws, ADMIN_KINDS)
    return json_response({"length": out["length"], "head": out["head"]}, 201)


@bp.post("/enroll")
@doc(
    "Redeem an invite: append the enroll event signed with the invite's one-time key.",
    request=AppendEventSchema,
    response=EnrollResponseSchema,
    status=201,
    errors=(400, 409),
)
@signed(INVITE)
def enroll(ws: str) -> Response:
    # The request's invite key and the event's signer must name the same invite.
    out = _append_event(ws, ("enroll",), signer=g.caller.key_id)
    body = {
        "length": out["length"],
        "head": out["head"],
        "device_id": out["event"]["body"]["device_id"],
    }
    return json_response(body, 201)
