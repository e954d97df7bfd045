"""The Flask application factory (flaskr's `create_app`), configured from FIELDSYNC_* variables.

    app = create_app({"TESTING": True, "DATA_DIR": tmp_path})

Settings, each with a safe default:
- `FIELDSYNC_DATA_DIR` (`./fieldsync-data`): databases live here and nowhere else;
- `FIELDSYNC_MAX_BODY` (8 MiB): larger bodies get 413 before they are read;
- `FIELDSYNC_MAX_SKEW` (300 s): how far ahead of the server clock a cell's HLC may be;
- `FIELDSYNC_PUBLIC_URL` (unset): the URL clients use behind a reverse proxy, from
  which the signed `@target-uri` is rebuilt.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, request

from . import auth, errors, store
from .api import register_blueprints
from .errors import ApiError
from .logs import configure_app_logging
from .openapi import build_spec

MIB = 1024 * 1024


def config_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    return {
        "DATA_DIR": env.get("FIELDSYNC_DATA_DIR", "./fieldsync-data"),
        "MAX_BODY": int(env.get("FIELDSYNC_MAX_BODY", 8 * MIB)),
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
    app.teardown_appcontext(auth.close_connections)
    register_blueprints(app)
    app.extensions["fieldsync_openapi"] = build_spec(app)
    return app


def _limits() -> None:
    """Size and type are refused before the body is read or any signature checked."""
    if request.routing_exception is not None:
        raise request.routing_exception
    limit = request.max_content_length
    if limit is not None and request.content_length is not None and request.content_length > limit:
        raise ApiError("too_large", f"the body is larger than {limit} bytes", 413)
    if request.method == "POST" or request.content_length:
        if request.mimetype != "application/json":
            raise ApiError("unsupported_media_type", "the body must be application/json", 415)
