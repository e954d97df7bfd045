"""Capturing in forms, and the outbox: what this device still has to send.

Each form is generated from the record schema (`schemas.records.specs`): labels,
help, required marks, choices as dropdowns; an input is named after its field.
A refused value is shown beside its field, with everything typed kept.

A detention may name the picket it happened at: the field offers the pickets this
device captured since its last sync (kept in this process's memory only, never on
disk: a volunteer's device cannot read back what it sealed), a keyholder's recent
pickets from its replica, or any pasted record id.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

from flask import Blueprint, abort, current_app, redirect, request, url_for
from werkzeug.wrappers import Response

from schemas.records import RECORD_TYPES, TYPE_LABELS, FieldSpec, specs

from .. import operations, outbox, view
from ..errors import CliError
from .app import page, reading, session
from .attachments import BAD_CAPTION, caption_refused, uploaded
from .i18n import gettext as _

bp = Blueprint("capture", __name__)


class Recent:
    """Pickets captured in this workbench since the last sync: (id, date, place), in
    memory only, dropped at the next sync or lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: list[tuple[str, str, str]] = []

    def add(self, record_id: str, date: str, place: str) -> None:
        with self._lock:
            self.items.append((record_id, date, place))

    def clear(self) -> None:
        with self._lock:
            self.items = []


def recent() -> Recent:
    found: Recent | None = current_app.extensions.get("fieldsync_recent")
    if found is None:
        found = current_app.extensions["fieldsync_recent"] = Recent()
    return found


def _pickets() -> list[tuple[str, str]]:
    """(record id, label) of the pickets a detention form offers."""
    out = [(rid, f"{date} · {place}") for rid, date, place in reversed(recent().items)]
    with reading() as s:
        if s.prof.is_keyholder and s.prof.me().status == "active":
            replica = s.writable_replica()
            if replica is not None:
                # The fifty pickets captured last: one page of the read layer.
                recent_page = view.records_page(
                    replica, view.Query("picket", descending=True, limit=50, count=False)
                )
                seen = {rid for rid, _ in out}
                for r in recent_page.records:
                    if r.id not in seen:
                        label = f"{r.fields.get('date', '')} · {r.fields.get('place', '')}"
                        out.append((r.id, label))
    return out


def _form(
    record_type: str,
    values: dict[str, str],
    errors: dict[str, list[str]],
    record_id: str | None = None,
    files: list[Any] | None = None,
) -> str:
    fields: list[FieldSpec] = [f for f in specs(record_type) if f.capture]
    if record_id is not None:
        # Adding to a record: nothing is required, what is filled in is written.
        fields = [dataclasses.replace(f, required=False) for f in fields]
    pickets = _pickets() if record_type == "detention" else []
    return page(
        "capture.html",
        record_type=record_type,
        type_label=TYPE_LABELS[record_type],
        fields=fields,
        values=values,
        # Field messages are catalogue ids; the core's refusals (a bad record id) are
        # shown as they are, marked as such in the page.
        errors={
            name: msgs if name in ("", "record_id") else [_(m) for m in msgs]
            for name, msgs in errors.items()
        },
        pickets=pickets,
        saved=request.args.get("saved"),
        record_id=record_id,
        # A browser cannot put chosen files back into a form shown again: say so.
        files_dropped=[name for name, _stream in files or []],
        caption=request.form.get("caption", ""),
    )


@bp.get("/capture/<record_type>")
def form(record_type: str) -> str:
    if record_type not in RECORD_TYPES:
        abort(404)
    record_id = request.args.get("record")
    return _form(record_type, {}, {}, record_id.strip() if record_id is not None else None)


@bp.post("/capture/<record_type>")
def capture(record_type: str) -> Response | tuple[str, int]:
    if record_type not in RECORD_TYPES:
        abort(404)
    names = {f.name for f in specs(record_type) if f.capture}
    typed = {k: v.strip() for k, v in request.form.items() if k in names}
    values = {k: v for k, v in typed.items() if v}
    target = request.form.get("record_id")
    files = uploaded()
    caption = request.form.get("caption", "").strip() or None
    if files:
        # Before the record is sealed: a caption refused after it would leave the record
        # saved under a page that says to fix and send again (a second record).
        if caption_refused(caption):
            return _form(record_type, typed, {"caption": [BAD_CAPTION]}, target, files), 422
    try:
        with session() as s:
            if target is None:
                record_id = operations.add(s, record_type, values)
            else:
                record_id = outbox.check_record_id(target.strip())
                if values or not files:
                    operations.edit(s, record_id, record_type, values)
            if files:  # sealed as their own capture, right after the record's
                operations.attach(s, record_id, files, record_type, caption)
    except outbox.InvalidValues as exc:
        return _form(record_type, typed, exc.errors, target, files), 422
    except CliError as exc:  # not a record id, nothing to write, another type
        errors = {"record_id": [exc.message]} if target is not None else {"": [exc.message]}
        return _form(record_type, typed, errors, target, files), 422
    if record_type == "picket":
        recent().add(record_id, values.get("date", ""), values.get("place", ""))
    return redirect(url_for("capture.form", record_type=record_type, saved=record_id))


@bp.get("/outbox")
def waiting() -> str:
    with reading() as s:
        items = operations.waiting(s)
    return page("outbox.html", items=items, discarded=request.args.get("discarded"))


@bp.post("/outbox/discard")
def discard() -> Response:
    with session() as s:
        gone = operations.discard(s, request.form.get("bundle_id", ""))
    return redirect(url_for("capture.waiting", discarded=gone.record_type))


def on_sync_done(app: Any) -> None:
    """After a sync the device's captures are on their way: forget the session's list."""
    found = app.extensions.get("fieldsync_recent")
    if found is not None:
        found.clear()
