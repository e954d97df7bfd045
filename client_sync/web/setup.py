"""Making this machine's profile from the workbench: join with an invite, or found a workspace.

Only served while no profile exists (`fieldsync ui` on a new device). The same core
flows as `fieldsync join` and `fieldsync init` (client_sync/enrol.py), with the
passphrase from the form: typed twice, warned about when weak.
"""

from __future__ import annotations

from flask import Blueprint, redirect, request, url_for
from werkzeug.wrappers import Response

from .. import enrol, operations
from ..device import Device, Session
from ..errors import CliError
from ..profile import check_new_home, home_dir, passphrase_weakness, profile_lock
from .app import adopt, has_profile, page
from .i18n import gettext as _

bp = Blueprint("setup", __name__)


def _form(**context: object) -> str:
    return page("setup.html", values=request.form, **context)


def _passphrase() -> tuple[str | None, str | None]:
    """(passphrase, error) from the form's two fields."""
    first, second = request.form.get("passphrase", ""), request.form.get("passphrase2", "")
    if not first:
        return None, _("Choose a passphrase.")
    if first != second:
        return None, _("The two passphrases differ.")
    return first, None


@bp.get("/setup")
def start() -> Response | str:
    if has_profile():
        return redirect(url_for("home.index"))
    return _form()


@bp.post("/setup/<how>")
def make(how: str) -> Response | tuple[str, int]:
    if has_profile():
        return redirect(url_for("home.index"))
    passphrase, error = _passphrase()
    if passphrase is None:
        return _form(how=how, error=error), 422
    if passphrase_weakness(passphrase) and not request.form.get("weak_ok"):
        return _form(how=how, weak=True), 422
    home = home_dir()
    name = request.form.get("device_name", "").strip()
    try:
        check_new_home(home)
        with profile_lock(home):
            if how == "join":
                prof = enrol.join(home, passphrase, request.form.get("invite", "").strip())
            else:
                prof = enrol.init(
                    home,
                    passphrase,
                    request.form.get("server", ""),
                    request.form.get("workspace", ""),
                    request.form.get("code", "").strip(),
                )
            if name:
                s = Session(prof)
                try:
                    operations.name_device(s, name)
                finally:
                    s.close()
    except CliError as exc:
        return _form(how=how, failure=exc.message), 422
    adopt(Device(home, prof.vault))
    return redirect(url_for("home.index"))
