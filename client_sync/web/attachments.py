"""Attachments in the workbench: attach files to a record, fetch and verify a record's
files (a job, with progress in bytes), download a verified file, remove one.

Uploaded files are read into memory, never spooled to a temporary file
(`MemoryRequest`): a photo of a detention must not sit in the clear in /tmp. They
are sealed at once, like the command line's `fieldsync attach`. A download is served
only once the file was verified whole against the SHA-256 sealed at capture, always
as a download (`Content-Disposition: attachment`, `application/octet-stream`, a
sandbox policy): a device chose its name and type, and an HTML file must never run
in the workbench's origin.
"""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Request, abort, redirect, request, url_for
from werkzeug.wrappers import Response

from schemas.records import N_

from .. import operations
from ..attachments import check_caption
from ..errors import CliError
from .app import device, jobs, reading, session

bp = Blueprint("attachments", __name__)

MAX_UPLOAD = 256 * 1024 * 1024  # a page's files at once; larger: `fieldsync attach`
# The core's refusal names the command line's option; a page says it in its own words.
BAD_CAPTION = N_(
    "A caption is 1 to 1,000 characters of text, without tabs or other control characters."
)
UPLOAD_ENDPOINTS = ("attachments.attach", "capture.capture")


class MemoryRequest(Request):
    """Uploaded files in memory, whatever their size (bounded by MAX_UPLOAD)."""

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> Any:
        return io.BytesIO()


def allow_uploads() -> None:
    """Before the form is read (the CSRF check reads it): the routes that take files may
    take MAX_UPLOAD, every other keeps the workbench's bound."""
    if request.endpoint in UPLOAD_ENDPOINTS:
        request.max_content_length = MAX_UPLOAD


def uploaded() -> list[tuple[str, Any]]:
    """The files of the form's `files` input, as (name, stream)."""
    return [
        (f.filename or "attachment", f.stream) for f in request.files.getlist("files") if f.filename
    ]


def caption_refused(caption: str | None) -> bool:
    """Would sealing refuse this caption? Asked before anything is sealed."""
    try:
        check_caption(caption)
    except CliError:
        return True
    return False


@bp.post("/records/<record_id>/attach")
def attach(record_id: str) -> Response | tuple[str, int]:
    from .review import record_page

    files = uploaded()
    caption = request.form.get("caption", "").strip() or None
    if files and caption_refused(caption):
        shown = record_page(
            record_id,
            errors={"caption": [BAD_CAPTION]},
            caption=request.form.get("caption", ""),
            files_dropped=[name for name, _stream in files],
        )
        return shown, 422
    if files:
        with session() as s:
            operations.attach(s, record_id, files, None, caption)
    return redirect(url_for("review.record", record_id=record_id, saved="1" if files else None))


@bp.post("/records/<record_id>/fetch")
def fetch(record_id: str) -> Response:
    dev = device()

    def work(job: object) -> list[tuple[str, dict[str, Any]]]:
        with dev.session() as s:
            got = operations.fetch_attachments(s, record_id)
        return [
            (N_("%(n)d file(s) verified against the SHA-256 taken at capture."), {"n": len(got)})
        ]

    job = jobs().start("fetch", work)
    job.back = url_for("review.record", record_id=record_id)
    return redirect(url_for("home.job", job_id=job.job_id))


@bp.get("/records/<record_id>/files/<attachment_id>")
def download(record_id: str, attachment_id: str) -> Response:
    from .. import fetching, view
    from ..replica.files import FileCache, checks

    with reading() as s:
        replica = s.reading_replica("read records")
        found = view.load(replica, [record_id], duplicates=False)
        if not found:
            abort(404)
        desc = next(
            (d for d in fetching.descriptors(found[0].values) if d.id == attachment_id), None
        )
        if desc is None or attachment_id not in checks(replica, [attachment_id]):
            abort(404)
        data = b"".join(fetching.file_bytes(FileCache(replica, create=False), desc))
    name = fetching.safe_name(desc.name)
    ascii_name = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name
    )
    resp = Response(data, mimetype="application/octet-stream")
    resp.headers["Content-Disposition"] = (
        f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"
    )
    resp.headers["Content-Security-Policy"] = "sandbox; default-src 'none'"
    return resp


@bp.post("/records/<record_id>/files/<attachment_id>/detach")
def detach(record_id: str, attachment_id: str) -> Response:
    with session() as s:
        operations.detach(s, record_id, attachment_id, None)
    return redirect(url_for("review.record", record_id=record_id, saved="1"))
