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
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.wrappers import Response

from ..device import Device, Session
from ..errors import CliError
from . import i18n, security
from .jobs import Jobs

# Paths served while the device is locked: the unlock form and what it needs.
UNLOCKED_NOT_NEEDED = ("/unlock", "/launch", "/static/", "/language")
# Paths served before this machine has a profile: joining or founding a workspace.
NO_PROFILE_NEEDED = ("/setup", "/launch", "/static/", "/language")


class Idle:
    """Locks the device after `minutes` without a request (checked by a timer and on
    each request, so a sleeping laptop locks on waking too)."""

    def __init__(self, device: Device | None, minutes: float) -> None:
        self.device = device
        self.seconds = minutes * 60
        self.last = time.monotonic()
        self._stop = threading.Event()

    def touch(self) -> None:
        if time.monotonic() - self.last > self.seconds and self.device is not None:
            self.device.lock()
        self.last = time.monotonic()

    def watch(self) -> None:
        def loop() -> None:
            while not self._stop.wait(min(30.0, self.seconds / 4)):
                if time.monotonic() - self.last > self.seconds and self.device is not None:
                    self.device.lock()

        threading.Thread(target=loop, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()


def device() -> Device:
    found: Device | None = current_app.extensions["fieldsync_device"]
    if found is None:
        raise NotFound()  # no profile yet: only the setup pages answer
    return found


def has_profile() -> bool:
    return current_app.extensions["fieldsync_device"] is not None


def adopt(dev: Device) -> None:
    """The profile that the setup pages just made is the one this workbench serves."""
    current_app.extensions["fieldsync_device"] = dev
    current_app.extensions["fieldsync_idle"].device = dev


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
    if not has_profile():
        if request.path.startswith(NO_PROFILE_NEEDED):
            return None
        return redirect(url_for("setup.start"))
    if device().locked and not request.path.startswith(UNLOCKED_NOT_NEEDED):
        return redirect(url_for("home.unlock", next=request.full_path.rstrip("?")))
    return None


def _whoami() -> dict[str, Any]:
    """What every page's header shows: role, names, counts (read without the lock)."""
    if not g.get("authorized") or not has_profile() or device().locked:
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
    # Our own refusals carry a translated detail; werkzeug's stock English ones do not
    # show (the page's translated heading says enough).
    detail = exc.description if exc.description != type(exc).description else None
    if status == 413:  # only the forms with files get near the bound: say it, and what else
        from .attachments import MAX_UPLOAD

        return page("error.html", status=status, upload_mb=MAX_UPLOAD >> 20), status
    return page("error.html", status=status, detail=detail), status


def _cli_error(exc: CliError) -> tuple[str, int]:
    # The core's refusals are English sentences naming ids: shown as they are, after
    # a translated lead, and marked as not for translation.
    return page("error.html", status=400, core_detail=exc.message), 400


def create_app(
    dev: Device | None, gate: security.Gate, *, idle_minutes: float = 15.0, watch: bool = True
) -> Flask:
    from . import attachments

    app = Flask(__name__, static_folder="static", template_folder="templates")
    app.request_class = attachments.MemoryRequest  # uploads in memory, never in /tmp
    app.config.update(TEMPLATES_AUTO_RELOAD=False, MAX_CONTENT_LENGTH=64 * 1024 * 1024)
    app.extensions["fieldsync_device"] = dev
    app.extensions["fieldsync_jobs"] = Jobs()
    idle = Idle(dev, idle_minutes)
    app.extensions["fieldsync_idle"] = idle
    if watch:
        idle.watch()
    i18n.init_app(app)  # first, so that even a refusal is in the reader's language
    app.before_request(attachments.allow_uploads)  # before the CSRF check reads the form
    security.init_app(app, gate)
    app.before_request(_before)
    app.context_processor(_whoami)
    app.register_error_handler(HTTPException, _error)
    app.register_error_handler(CliError, _cli_error)

    from . import capture, home, review, review_data, roster, setup

    app.jinja_env.globals.update(
        field_label=review_data.field_label,
        choice_label=review_data.choice_label,
        record_brief=review_data.brief,
    )

    for module in (home, capture, review, attachments, roster, setup):
        app.register_blueprint(module.bp)
    return app
