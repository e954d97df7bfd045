"""One error type for every refusal, and JSON handlers so no answer is ever an HTML page.

Every error body is `{"error": {"code", "message"}}` (docs/PROTOCOL.md, HTTP API). Codes are
stable; messages are for people and may be reworded.
"""

from __future__ import annotations

import logging
import traceback

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger("fieldsync.server")


class ApiError(Exception):
    """A refusal with a stable `code`, a readable `message` and an HTTP `status`."""

    def __init__(
        self, code: str, message: str, status: int = 400, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.headers = headers or {}


# What werkzeug's own refusals become: routing, method, size and type errors.
_HTTP_CODES = {
    400: ("invalid_request", "the request is malformed"),
    404: ("not_found", "no such route"),
    405: ("method_not_allowed", "this route does not take that method"),
    413: ("too_large", "the request body is larger than this server accepts"),
    415: ("unsupported_media_type", "the request body must be application/json"),
}


def error_response(code: str, message: str, status: int) -> Response:
    resp = jsonify({"error": {"code": code, "message": message}})
    resp.status_code = status
    return resp


def _api_error(exc: ApiError) -> Response:
    resp = error_response(exc.code, exc.message, exc.status)
    resp.headers.update(exc.headers)
    return resp


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    code, message = _HTTP_CODES.get(status, ("internal", "internal error"))
    resp = error_response(code, message, status)
    if status == 405 and exc.get_response().headers.get("Allow"):
        resp.headers["Allow"] = exc.get_response().headers["Allow"]
    return resp


def _internal(exc: Exception) -> Response:
    # Flask's default logs the path (which names a workspace) and the exception's
    # text (which may quote input). Log the code location and the type only.
    frames = "".join(traceback.format_tb(exc.__traceback__))
    log.error("internal error %s\n%s", type(exc).__name__, frames)
    return error_response("internal", "internal error", 500)


def init_app(app: Flask) -> None:
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _internal)
