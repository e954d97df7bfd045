"""API v1 blueprints, one per resource, and the helpers they share."""

from __future__ import annotations

import json
from typing import Any

from flask import Flask, Response, g, request
from marshmallow import Schema, ValidationError

from protocol.encoding import parse_json
from protocol.errors import InvalidEncoding
from schemas.wire import error_summary

from ..errors import ApiError


def register_blueprints(app: Flask) -> None:
    from . import changes, chunks, delivery, keylog, meta, push, recreate, rekey, workspaces

    for module in (meta, workspaces, keylog, push, changes, rekey, delivery, recreate, chunks):
        app.register_blueprint(module.bp)


_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def json_response(obj: Any, status: int = 200) -> Response:
    # Not flask.jsonify: it sorts keys, which costs a fifth of a large changes page.
    return Response(_encode(obj), status=status, mimetype="application/json")


def parse_body(raw: bytes) -> Any:
    """JSON through the one strict reader (`parse_json`); a refusal's code is its own."""
    try:
        return parse_json(raw)
    except InvalidEncoding as exc:
        raise ApiError(exc.code, exc.reason, 400) from exc


def body_json() -> Any:
    """The verified body of a signed request (read by `server.auth`), parsed."""
    raw = g.get("fs_body")
    assert raw is not None, "the body is read by @signed before the view runs"
    return parse_body(raw)


def load(schema: Schema, data: Any) -> Any:
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise ApiError("invalid_request", error_summary(exc.messages)) from exc


def int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    # ASCII digits only: str.isdigit() also takes "²" and "①" (int() then fails) and
    # "٣" (int() reads 3).
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 16 or not low <= int(raw) <= high:
        raise ApiError("invalid_request", f"{name} must be an integer from {low} to {high}")
    return int(raw)
