"""A keyholder's review: the records of each type, one record, the conflict queue, exports.

Everything here is read from the local replica (decrypted on this machine only)
through `review_data`, and every change is an ordinary sealed write through the
device's operations: resolving a conflict, editing, deleting, judging duplicates.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, redirect, request, url_for
from werkzeug.wrappers import Response

from schemas.records import RECORD_TYPES, TYPE_LABELS, TYPE_PLURALS, specs

from .. import operations, outbox
from . import review_data as data
from .app import page, reading, session
from .i18n import gettext as _

bp = Blueprint("review", __name__)
PAGE = 100


def _keyholder_replica(s: Any) -> Any:
    return s.reading_replica("read records")


def _query() -> data.Query:
    rtype = request.args.get("type", "picket")
    if rtype not in RECORD_TYPES:
        rtype = "picket"
    return data.Query(
        record_type=rtype,
        text=request.args.get("q", "").strip(),
        sort=request.args.get("sort", ""),
        descending=request.args.get("dir") == "desc",
        deleted=request.args.get("deleted") == "1",
        page=_page_number(request.args.get("page", "1")),
    )


def _page_number(raw: str) -> int:
    return max(1, int(raw)) if raw.isascii() and raw.isdigit() and len(raw) < 7 else 1


@bp.get("/records")
def records() -> str:
    q = _query()
    with reading() as s:
        table = data.table(s, _keyholder_replica(s), q, PAGE)
    return page(
        "records.html",
        q=q,
        table=table,
        types=list(RECORD_TYPES),
        type_labels=TYPE_PLURALS,
        fields=specs(q.record_type),
    )


@bp.get("/records/<record_id>")
def record(record_id: str) -> str:
    return record_page(record_id)


def record_page(record_id: str, **form: Any) -> str:
    """The record's page; `form`: what its attach form shows again (errors, caption)."""
    with reading() as s:
        rec = data.record(s, _keyholder_replica(s), record_id)
    if rec is None:
        abort(404, _("No such record in this replica: sync first."))
    return page(
        "record.html", rec=rec, type_label=TYPE_LABELS.get(rec["type"], rec["type"]), **form
    )


@bp.post("/records/<record_id>/resolve")
def resolve(record_id: str) -> Response:
    field = request.form.get("field", "")
    keep = request.form.get("keep")
    value = request.form.get("value")
    with session() as s:
        if keep is not None and keep.isascii() and keep.isdigit():
            operations.resolve(s, record_id, field, None, int(keep))
        else:
            operations.resolve(s, record_id, field, (value or "").strip(), None)
    back = request.form.get("back") or url_for("review.record", record_id=record_id)
    return redirect(back if back.startswith("/") and not back.startswith("//") else "/")


@bp.post("/records/<record_id>/edit")
def edit(record_id: str) -> Response | tuple[str, int]:
    with reading() as s:
        rec = data.record(s, _keyholder_replica(s), record_id)
    if rec is None:
        abort(404)
    names = {f.name for f in specs(rec["type"])} if rec["type"] in RECORD_TYPES else set()
    changed = {
        k: v.strip()
        for k, v in request.form.items()
        if k in names and v.strip() and data.as_text(rec["fields"].get(k)) != v.strip()
    }
    if not changed:
        return redirect(url_for("review.record", record_id=record_id))
    try:
        with session() as s:
            operations.edit(s, record_id, rec["type"], changed)
    except outbox.InvalidValues as exc:
        errors = {name: [_(m) for m in msgs] for name, msgs in exc.errors.items()}
        form = {**{k: data.as_text(v) for k, v in rec["fields"].items()}, **changed}
        return page(
            "record.html",
            rec=rec,
            type_label=TYPE_LABELS.get(rec["type"], rec["type"]),
            values=form,
            errors=errors,
        ), 422
    return redirect(url_for("review.record", record_id=record_id, saved="1"))


@bp.post("/records/<record_id>/delete")
def delete(record_id: str) -> Response:
    with session() as s:
        operations.delete(s, record_id, None)
    return redirect(url_for("review.record", record_id=record_id, saved="1"))


@bp.post("/records/<record_id>/duplicate")
def duplicate(record_id: str) -> Response:
    other = request.form.get("other", "")
    verdict = request.form.get("verdict")
    with session() as s:
        if verdict == "same":
            operations.same_as(s, record_id, other)
        elif verdict == "distinct":
            operations.not_duplicates(s, record_id, other)
        else:
            abort(400)
    return redirect(url_for("review.record", record_id=record_id, saved="1"))


@bp.get("/conflicts")
def conflicts() -> str:
    with reading() as s:
        items = data.conflict_queue(s, _keyholder_replica(s))
    return page("conflicts.html", items=items)


@bp.get("/export")
def export() -> str:
    return page("export.html", types=list(RECORD_TYPES), type_labels=TYPE_PLURALS)


@bp.get("/export/<name>")
def download(name: str) -> Response:
    """A file of exactly what was asked: a type's table (CSV, UTF-8 with BOM) or JSON."""
    stem, _dot, fmt = name.rpartition(".")
    if fmt not in ("csv", "json"):
        abort(404)
    q = _query()
    filtered = bool(q.text or q.sort or request.args.get("type") == data.OTHER)
    with reading() as s:
        replica = _keyholder_replica(s)
        chosen = data.every_row(replica, q) if filtered else None
        rtype = q.record_type if q.record_type in RECORD_TYPES else None
        body = "".join(operations.export(s, fmt, rtype, deleted=q.deleted, records=chosen))
    resp = Response(
        body.encode("utf-8"), mimetype="text/csv" if fmt == "csv" else "application/json"
    )
    safe = "".join(c for c in stem if c.isalnum() or c in "-_") or "records"
    resp.headers["Content-Disposition"] = f'attachment; filename="{safe}.{fmt}"'
    return resp
