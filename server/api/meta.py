"""Unsigned routes: health and the OpenAPI document."""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from schemas.wire import HealthSchema

from ..openapi import doc
from . import json_response

bp = Blueprint("meta", __name__, url_prefix="/v1")


@bp.get("/health")
@doc("Liveness: answers without touching any workspace.", response=HealthSchema, signed=False)
def health() -> Response:
    return json_response({"status": "ok"})


@bp.get("/openapi.json")
@doc("This document.", signed=False)
def openapi() -> Response:
    return json_response(current_app.extensions["fieldsync_openapi"])
