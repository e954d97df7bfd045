"""The workbench's front: launch, unlock and lock, language, the home page, sync and jobs."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, g, redirect, request, url_for
from werkzeug.wrappers import Response

from .. import operations
from ..errors import CliError
from . import capture, i18n, security
from .app import device, jobs, page, reading
from .i18n import gettext as _

bp = Blueprint("home", __name__)


def _local_path(target: str | None) -> str:
    """Only a path of this site may follow a form (no open redirect)."""
    if not target:
        return url_for("home.index")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return url_for("home.index")
    return target


@bp.get("/launch")
def launch() -> Response:
    session_id = security.gate().exchange(request.args.get("token", ""))
    if session_id is None:
        abort(403, _("This launch address was used already: run `fieldsync ui` again."))
    resp = redirect(url_for("home.index"))
    security.set_session_cookie(resp, session_id)
    return resp


@bp.route("/unlock", methods=["GET", "POST"])
def unlock() -> Response | str:
    target = _local_path(request.values.get("next"))
    if not device().locked:
        return redirect(target)
    error = None
    if request.method == "POST":
        try:
            device().relock_with(request.form.get("passphrase", ""))
        except CliError:
            error = _("Wrong passphrase.")
        else:
            return redirect(target)
    return page("unlock.html", target=target, error=error)


@bp.post("/lock")
def lock() -> Response:
    device().lock()
    return redirect(url_for("home.unlock"))


@bp.post("/language")
def language() -> Response:
    chosen = request.form.get("locale", "")
    resp = redirect(_local_path(request.form.get("next")))
    if chosen in i18n.LOCALES:
        resp.set_cookie(i18n.LANG_COOKIE, chosen, samesite="Strict", httponly=True)
    return resp


@bp.get("/")
def index() -> str:
    with reading() as s:
        info = operations.status(s)
    return page("index.html", info=info, job=jobs().running())


@bp.post("/sync")
def sync() -> Response:
    dev, app = device(), current_app._get_current_object()  # type: ignore[attr-defined]

    def work(job: object) -> operations.SyncReport:
        with dev.session() as s:
            report = operations.sync(s)
        capture.on_sync_done(app)
        return report

    job = jobs().start("sync", work)
    return redirect(url_for("home.job", job_id=job.job_id))


@bp.get("/jobs/<job_id>")
def job(job_id: str) -> str:
    found = jobs().get(job_id)
    if found is None:
        abort(404)
    g.no_nav_refresh = True
    return page("job.html", job=found)
