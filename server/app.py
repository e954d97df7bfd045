"""The Flask application factory (flaskr's `create_app`), configured from FIELDSYNC_* variables.

    app = create_app({"TESTING": True, "DATA_DIR": tmp_path})

Settings, each with a safe default (docs/PROTOCOL.md, HTTP API, "Limits"):
- `FIELDSYNC_DATA_DIR` (`./fieldsync-data`): databases live here and nowhere else;
- `FIELDSYNC_MAX_BODY` (8 MiB): larger bodies get 413 (a declared length before
  anything else; a chunked body as soon as it passes the limit);
- `FIELDSYNC_BODY_TIMEOUT` (60 s): a body must arrive within this, else 408;
- `FIELDSYNC_DEVICE_REQUESTS` (2): requests one key may have in progress, else 429;
- `FIELDSYNC_PAGE_BYTES` (4 MiB): a changes page stops before this many bytes;
- `FIELDSYNC_DEVICE_QUOTA` (512 MiB): bytes one device may have stored;
- `FIELDSYNC_MIN_FREE_DISK` (256 MiB): pushes are refused below this much free disk;
- `FIELDSYNC_MAX_SKEW` (300 s): how far ahead of the server clock a cell's HLC may be;
- `FIELDSYNC_PUBLIC_URL` (unset): the URL clients use behind a reverse proxy, from
  which the signed `@target-uri` is rebuilt.

`FIELDSYNC_HEADER_TIMEOUT` (10 s) belongs to the gunicorn worker (server/worker.py).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, request

from . import auth, body, errors, store
from .api import register_blueprints
from .errors import ApiError
from .logs import configure_app_logging
from .openapi import build_spec

MIB = 1024 * 1024


def config_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    return {
        "DATA_DIR": env.get("FIELDSYNC_DATA_DIR", "./fieldsync-data"),
        "MAX_BODY": int(env.get("FIELDSYNC_MAX_BODY", 8 * MIB)),
        "BODY_TIMEOUT": float(env.get("FIELDSYNC_BODY_TIMEOUT", 60)),
        "DEVICE_REQUESTS": int(env.get("FIELDSYNC_DEVICE_REQUESTS", 2)),
        "PAGE_BYTES": int(env.get("FIELDSYNC_PAGE_BYTES", 4 * MIB)),
        "DEVICE_QUOTA": int(env.get("FIELDSYNC_DEVICE_QUOTA", 512 * MIB)),
        "MIN_FREE_DISK": int(env.get("FIELDSYNC_MIN_FREE_DISK", 256 * MIB)),
        "MAX_SKEW": int(env.get("FIELDSYNC_MAX_SKEW", 300)),
        "PUBLIC_URL": env.get("FIELDSYNC_PUBLIC_URL") or None,
    }


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    # No static folder: the sync server serves no page and no script, ever.
    app = Flask(__name__, static_folder=None)
    app.config.update(config_from_env(os.environ))
    app.config.update(SIGNATURE_WINDOW=120, CLOCK=time.time)
    if config:
        app.config.update(config)
    app.config["MAX_CONTENT_LENGTH"] = app.config["MAX_BODY"]
    paths = store.Paths(Path(app.config["DATA_DIR"]))
    paths.ensure()
    app.extensions["fieldsync_paths"] = paths
    # werkzeug's request log names client addresses; it only runs under the dev
    # server, and is quieted there too.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    configure_app_logging()

    errors.init_app(app)
    app.before_request(_limits)
    app.after_request(_after)
    app.teardown_appcontext(auth.close_connections)
    register_blueprints(app)
    app.extensions["fieldsync_openapi"] = build_spec(app)
    return app


def _limits() -> None:
    """Route, declared size and type are refused before the body is read or any
    signature checked. A route with a body limit of its own (body.ROUTE_LIMITS) has
    it for the whole request, so the body is read against it too."""
    if request.routing_exception is not None:
        raise request.routing_exception
    own = body.ROUTE_LIMITS.get(request.endpoint or "")
    if own is not None:
        request.max_content_length = own
    limit = request.max_content_length
    if limit is not None and request.content_length is not None and request.content_length > limit:
        raise body.too_large(limit)
    if request.method in ("POST", "PUT") or body.has_body():
        wanted = body.ROUTE_TYPES.get(request.endpoint or "", "application/json")
        if request.mimetype != wanted:
            raise ApiError("unsupported_media_type", f"the body must be {wanted}", 415)


def _after(resp: Response) -> Response:
    """An answer given without reading the announced body closes its connection, and
    the caller's request slot is held until the answer has been sent."""
    body.close_if_unread()
    # Under a real server the answer is written after this returns, and a slow reader
    # holds its thread until then. (Flask's test client closes no answer: there the
    # slot is released when the request's context ends.)
    if "gunicorn.socket" in request.environ:
        slot = g.pop("fs_slot", None)
        if slot is not None:
            resp.call_on_close(slot.release)
    return resp
