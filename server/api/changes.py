"""Changes: keyholders pull whole bundles in change order, one range scan per page,
each page bounded by a count and by bytes (`FIELDSYNC_PAGE_BYTES`)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, g

from schemas.wire import MAX_SEQ, ChangesResponseSchema

from .. import auth, store
from ..auth import KEYHOLDER, signed
from ..openapi import doc, query_int
from ..store import bundles as stored
from ..store import delivery, nonces
from . import int_arg

bp = Blueprint("changes", __name__, url_prefix="/v1/w/<ws>")


@bp.get("/changes")
@doc(
    "Bundles with change > since, oldest first, with the cursor to continue from.",
    response=ChangesResponseSchema,
    query=[
        query_int("since", "last change already held (exclusive)", 0, MAX_SEQ),
        query_int("limit", "at most this many bundles per page (default 200)", 1, 1000),
    ],
    errors=(400,),
)
@signed(KEYHOLDER)
def changes(ws: str) -> Response:
    since = int_arg("since", 0, 0, MAX_SEQ)
    limit = int_arg("limit", 200, 1, 1000)
    # Asking for what follows `since` says the keyholder holds everything up to it:
    # what the server waits for before it drops a removed attachment's chunks.
    nonces.note_pulled(auth.paths(), ws, g.caller.device.device_id, since)
    conn = auth.workspace_conn(ws)
    assert conn is not None
    # Only a restore (with the server stopped) changes it: read outside the snapshot.
    inc = delivery.incarnation(conn)
    budget = int(current_app.config["PAGE_BYTES"])
    with store.read(conn):
        end = stored.page_end(conn, since, limit, budget)
        page, nxt = ("[]", since) if end is None else (stored.changes(conn, ws, since, end), end)
        last = stored.last_change(conn)
    done = "true" if last <= nxt else "false"
    # `incarnation` and `last` let a keyholder see a restored or recreated database.
    body = f'{{"bundles":{page},"next":{nxt},"done":{done},"incarnation":"{inc}","last":{last}}}'
    return Response(body, mimetype="application/json")
