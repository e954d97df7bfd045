"""The workbench's Flask application: a device's own pages, served on loopback only.

    app = create_app(device, Gate(port), idle_minutes=15)

It is a face of the device core, like the command line: every page gathers input,
calls one operation (`client_sync/operations.py`) in a session of the unlocked
`Device`, and renders the result. The sync server never serves these pages; they
run on the volunteer's or coordinator's own machine, and nothing decrypted is
written to disk except an export the user asked for.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask, current_app, g, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from ..device import Device, Session
from ..errors import CliError
from . import i18n, security
from .jobs import Jobs

# Paths served while the device is locked: the unlock form and what it needs.
UNLOCKED_NOT_NEEDED = ("/unlock", "/launch", "/static/", "/language")


class Idle:
    """Locks the device after `minutes` without a request (checked by a timer and on
    each request, so a sleeping laptop locks on waking too)."""

    def __init__(self, device: Device, minutes: float) -> None:
        self.device = device
        self.seconds = minutes * 60
        self.last = time.monotonic()
        self._stop = threading.Event()

    def touch(self) -> None:
        if time.monotonic() - self.last > self.seconds:
            self.device.lock()
        self.last = time.monotonic()

    def watch(self) -> None:
        def loop() -> None:
            while not self._stop.wait(min(30.0, self.seconds / 4)):
                if time.monotonic() - self.last > self.seconds:
                    self.device.lock()

        threading.Thread(target=loop, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()


def device() -> Device:
    found: Device = current_app.extensions["fieldsync_device"]
    return found


def jobs() -> Jobs:
    found: Jobs = current_app.extensions["fieldsync_jobs"]
    return found


@contextmanager
def session() -> Iterator[Session]:
    """One operation that may change the profile (holds the profile's lock)."""
    with device().session() as s:
        yield s


@contextmanager
def reading() -> Iterator[Session]:
    """A look at the profile that changes nothing (waits for no lock)."""
    with device().reading() as s:
        yield s


def page(template: str, **context: Any) -> str:
    return render_template(template, **context)


def _before() -> Response | None:
    idle: Idle = current_app.extensions["fieldsync_idle"]
    idle.touch()
    if device().locked and not request.path.startswith(UNLOCKED_NOT_NEEDED):
        return redirect(url_for("home.unlock", next=request.full_path.rstrip("?")))
    return None


def _whoami() -> dict[str, Any]:
    """What every page's header shows: role, names, counts (read without the lock)."""
    if not g.get("authorized") or device().locked:
        return {}  # a refused request sees no name, no count, nothing of the profile
    if "me" in g:
        return {"me": g.me}
    try:
        with reading() as s:
            me = s.prof.me()
            g.me = {
                "role": me.role,
                "status": me.status,
                "keyholder": me.is_keyholder and me.status == "active",
                "admin": me.role == "admin" and me.status == "active",
                "workspace": s.prof.workspace_name,
                "device_name": s.prof.state.get("device_name"),
                "outbox": len(s.prof.state["outbox"]),
                "last_sync": s.prof.state["last_sync"],
            }
    except CliError:
        g.me = {}
    return {"me": g.me}


def _error(exc: HTTPException) -> tuple[str, int]:
    status = exc.code or 500
    return page("error.html", status=status, detail=exc.description), status


def _cli_error(exc: CliError) -> tuple[str, int]:
    return page("error.html", status=400, detail=exc.message), 400


def create_app(
    dev: Device, gate: security.Gate, *, idle_minutes: float = 15.0, watch: bool = True
) -> Flask:
    app = Flask(__name__, static_folder="static", template_folder="templates")
    app.config.update(TEMPLATES_AUTO_RELOAD=False, MAX_CONTENT_LENGTH=64 * 1024 * 1024)
    app.extensions["fieldsync_device"] = dev
    app.extensions["fieldsync_jobs"] = Jobs()
    idle = Idle(dev, idle_minutes)
    app.extensions["fieldsync_idle"] = idle
    if watch:
        idle.watch()
    i18n.init_app(app)  # first, so that even a refusal is in the reader's language
    security.init_app(app, gate)
    app.before_request(_before)
    app.context_processor(_whoami)
    app.register_error_handler(HTTPException, _error)
    app.register_error_handler(CliError, _cli_error)

    from . import capture, home, review, roster

    for module in (home, capture, review, roster):
        app.register_blueprint(module.bp)
    return app
