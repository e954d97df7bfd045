"""The roster in the workbench: devices with their names, invites, approval, revocation
with rotation and re-key, this device's name, and the safety number."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import segno
from flask import Blueprint, abort, redirect, request, url_for
from markupsafe import Markup
from werkzeug.wrappers import Response

from schemas.records import N_

from .. import enrol, operations, rekey, team
from ..device import Session
from .app import device, jobs, page, reading, session

bp = Blueprint("roster", __name__)


def _qr_svg(text: str) -> Markup:
    """The invite as an inline SVG QR code: drawn in the page, never written to disk."""
    svg = segno.make(text, error="m", micro=False).svg_inline(scale=4, border=4, omitsize=True)
    return Markup(svg)  # noqa: S704 -- segno's own markup; the text is only in the code


@bp.get("/devices")
def devices() -> str:
    # Like `fieldsync devices`: the roster fetched and verified afresh when the server
    # answers (someone may have joined), the last verified one when it does not.
    with session() as s:
        items, offline = team.devices(s)
        return _page(s, items, offline=offline)


@bp.post("/devices/invite")
def invite() -> str:
    role = request.form.get("role", "volunteer")
    hours = float(request.form.get("hours", enrol.INVITE_HOURS) or enrol.INVITE_HOURS)
    with session() as s:
        text = team.invite(s, role, hours)
        items, _offline = team.devices(s, online=False)
        shown = {"text": text, "role": role, "hours": hours, "qr": _qr_svg(text)}
        return _page(s, items, invite=shown)


def _page(
    s: Session,
    items: list[dict[str, Any]],
    *,
    invite: dict[str, Any] | None = None,
    offline: str | None = None,
) -> str:
    """The roster page: devices, the safety number, this device's name, and for an
    admin the invite, approve, revoke and rotate forms."""
    from protocol.keylog import safety_number

    me = s.prof.me()
    return page(
        "devices.html",
        items=items,
        my_id=s.prof.device_id,
        admin=me.role == "admin" and me.status == "active",
        safety=safety_number(s.prof.seen[1]),
        seen=_last_seen(s),
        invite=invite,
        offline=offline,
    )


def _last_seen(s: Session) -> dict[str, str]:
    """device id -> when it last synced, as far as this device knows: the time in the
    last chain head it signed (a keyholder reads every device's at each sync), and
    this device's own last sync."""
    out = {
        dev: datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")
        for dev, at in s.prof.state.get("heads_at", {}).items()
    }
    if s.prof.state.get("last_sync"):
        out[s.prof.device_id] = s.prof.state["last_sync"]
    return out


@bp.post("/devices/approve")
def approve() -> Response:
    with session() as s:
        team.approve(s, request.form.get("device_id", ""))
    return redirect(url_for("roster.devices"))


@bp.get("/devices/<device_id>/revoke")
def confirm_revoke(device_id: str) -> str:
    with reading() as s:
        items, _offline = team.devices(s, online=False)
    target = next((d for d in items if d["device_id"] == device_id), None)
    if target is None:
        abort(404)
    return page("revoke.html", target=target)


@bp.post("/devices/<device_id>/revoke")
def revoke(device_id: str) -> Response:
    dev = device()

    # A job runs outside any request: it returns message ids and their values, and
    # the job's page translates them for whoever reads it.
    def work(job: object) -> list[tuple[str, dict[str, object]]]:
        lines: list[tuple[str, dict[str, object]]] = []
        with dev.session() as s:
            rotated = team.revoke(s, device_id)
            lines.append((N_("The device was revoked."), {}))
            if rotated:
                lines.append((N_("The epoch key was rotated: new captures use the new key."), {}))
                n = team.rekey(s, rekey.PAGE)
                lines.append((N_("Stored data re-sealed to the new key: %(n)s bundles."), {"n": n}))
        return lines

    job = jobs().start("revoke", work)
    return redirect(url_for("home.job", job_id=job.job_id))


@bp.post("/devices/rotate")
def rotate() -> Response:
    dev = device()

    def work(job: object) -> list[tuple[str, dict[str, object]]]:
        with dev.session() as s:
            epoch = team.rotate(s)
            n = team.rekey(s, rekey.PAGE)
        return [
            (N_("The epoch key was rotated: now epoch %(epoch)s."), {"epoch": epoch}),
            (N_("Stored data re-sealed to the new key: %(n)s bundles."), {"n": n}),
        ]

    job = jobs().start("rotate", work)
    return redirect(url_for("home.job", job_id=job.job_id))


@bp.post("/devices/name")
def name() -> Response:
    with session() as s:
        operations.name_device(s, request.form.get("name", ""))
    return redirect(url_for("roster.devices"))


@bp.post("/devices/refresh")
def refresh() -> Response:
    with session() as s:
        team.refresh(s)  # offline: the devices page says so itself
    return redirect(url_for("roster.devices"))
