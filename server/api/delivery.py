"""Delivery: keyholders' receipts, devices' signed chain heads, a device's stored chain,
one bundle by device and seq, and a revoked device's proof of its revocation.

The server checks every receipt and head keylessly (shape, workspace, that the
caller signed it) and keeps the newest; devices trust none of it until they
verify it against their own key log (docs/PROTOCOL.md, "Delivery").
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g

from protocol.encoding import check_b64
from protocol.errors import InvalidEncoding, InvalidReceipt
from protocol.receipts import check_head_signature, check_receipt_signature
from schemas.wire import (
    MAX_SEQ,
    ChainResponseSchema,
    ChangeBundleSchema,
    HeadRequestSchema,
    HeadsResponseSchema,
    ReceiptsRequestSchema,
    ReceiptsResponseSchema,
    RevocationResponseSchema,
    StoredResponseSchema,
)

from .. import auth, store
from ..auth import KEYHOLDER, MEMBER, REVOKED, Caller, signed
from ..errors import ApiError
from ..openapi import doc
from ..store import delivery
from ..store import keylog as stored_log
from . import body_json, json_response, load

bp = Blueprint("delivery", __name__, url_prefix="/v1/w/<ws>")

_receipts = ReceiptsRequestSchema()
_head = HeadRequestSchema()


def _conn(ws: str) -> Any:
    conn = auth.workspace_conn(ws)
    assert conn is not None  # authentication opened it
    delivery.ensure(conn)
    return conn


def _caller() -> Caller:
    caller: Caller = g.caller
    assert caller.device is not None
    return caller


@bp.post("/receipts")
@doc(
    "Store this keyholder's signed receipts (the newest per device and signer).",
    request=ReceiptsRequestSchema,
    response=StoredResponseSchema,
    errors=(400,),
)
@signed(KEYHOLDER)
def post_receipts(ws: str) -> Response:
    receipts = load(_receipts, body_json())["receipts"]
    caller = _caller()
    me = caller.device
    assert me is not None
    for i, r in enumerate(receipts):
        code, why = "", ""
        if r["workspace"] != ws:
            code, why = "wrong_workspace", "the receipt is for another workspace"
        elif r["signer"] != me.device_id:
            code, why = "wrong_signer", "a keyholder posts only receipts it signed"
        elif r["device_id"] not in caller.state.devices:
            code, why = "unknown_device", "the receipt is about a device not in the key log"
        else:
            try:
                check_receipt_signature(r, me.sign_pub)
            except InvalidReceipt as exc:
                code, why = exc.code, exc.reason
        if code:
            raise ApiError("invalid_receipt", f"receipt {i}: {code}: {why}", 400)
    conn = _conn(ws)
    with store.write(conn):
        auth.recheck_in_transaction(conn)
        n = delivery.store_receipts(conn, receipts)
    return json_response({"stored": n})


@bp.get("/receipts")
@doc(
    "The receipts about the calling device, from keyholders active now.",
    response=ReceiptsResponseSchema,
)
@signed(MEMBER)
def get_receipts(ws: str) -> Response:
    caller = _caller()
    assert caller.device is not None
    conn = _conn(ws)
    with store.read(conn):
        found = delivery.receipts_for(conn, caller.device.device_id)
    devices = caller.state.devices
    active = [
        r
        for signer, r in found
        if signer in devices and devices[signer].is_keyholder and devices[signer].status == "active"
    ]
    return json_response({"receipts": active})


@bp.post("/head")
@doc(
    "Store the calling device's signed chain head; answers the head now kept (the highest).",
    request=HeadRequestSchema,
    response=ChainResponseSchema,
    errors=(400,),
)
@signed(MEMBER)
def post_head(ws: str) -> Response:
    head = load(_head, body_json())["head"]
    me = _caller().device
    assert me is not None
    if head["workspace"] != ws:
        raise ApiError("invalid_head", "wrong_workspace: the head is for another workspace", 400)
    if head["device_id"] != me.device_id:
        raise ApiError("invalid_head", "wrong_device: a device posts only its own head", 400)
    try:
        check_head_signature(head, me.sign_pub)
    except InvalidReceipt as exc:
        raise ApiError("invalid_head", f"{exc.code}: {exc.reason}", 400) from exc
    conn = _conn(ws)
    with store.write(conn):
        auth.recheck_in_transaction(conn)
        seq, h = delivery.store_head(conn, head)
    return json_response({"seq": seq, "hash": h})


@bp.get("/heads")
@doc("Every device's latest signed chain head.", response=HeadsResponseSchema)
@signed(KEYHOLDER)
def get_heads(ws: str) -> Response:
    conn = _conn(ws)
    with store.read(conn):
        heads = delivery.all_heads(conn)
    return json_response({"heads": heads})


@bp.get("/chain")
@doc(
    "The server's stored head of the calling device's own chain (0 and the zero hash: none).",
    response=ChainResponseSchema,
)
@signed(MEMBER)
def chain(ws: str) -> Response:
    me = _caller().device
    assert me is not None
    conn = _conn(ws)
    seq, h = delivery.chain_head(conn, me.device_id)
    return json_response({"seq": seq, "hash": h})


@bp.get("/bundles/<device_id>/<int:seq>")
@doc(
    "One bundle by its device and seq, as the changes feed serves it.",
    response=ChangeBundleSchema,
    errors=(400, 404),
    path={
        "device_id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{21}[AQgw]$"},
        "seq": {"type": "integer", "minimum": 1, "maximum": MAX_SEQ},
    },
)
@signed(KEYHOLDER)
def bundle(ws: str, device_id: str, seq: int) -> Response:
    try:
        check_b64(device_id, length=16, what="device id")
    except InvalidEncoding as exc:
        raise ApiError("invalid_request", "not a device id") from exc
    if not 1 <= seq <= MAX_SEQ:
        raise ApiError("invalid_request", f"seq must be an integer from 1 to {MAX_SEQ}")
    conn = _conn(ws)
    with store.read(conn):
        found = delivery.bundle_at(conn, ws, device_id, seq)
    if found is None:
        raise ApiError("unknown_bundle", f"no bundle {seq} of this device is stored", 404)
    return Response(found, mimetype="application/json")


@bp.get("/revocation")
@doc(
    "For a revoked device: the key log up to the event that revoked it, so that it can"
    " verify the revocation before it destroys what it could no longer deliver.",
    response=RevocationResponseSchema,
)
@signed(REVOKED)
def revocation(ws: str) -> Response:
    me = _caller().device
    assert me is not None
    conn = _conn(ws)
    with store.read(conn):
        events = stored_log.events_since(conn, 0)
    # Nothing after the revocation: a revoked device learns no later roster change.
    end = next(
        i
        for i, e in enumerate(events)
        if e["kind"] == "revoke" and e["body"]["device_id"] == me.device_id
    )
    return json_response({"events": events[: end + 1]})
