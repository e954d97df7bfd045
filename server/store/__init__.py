"""Storage: the only package that holds SQL. One SQLite file per workspace.

Layout under DATA_DIR: `server.sqlite` (one-time workspace codes, founder nonces),
`workspaces/<ws>.sqlite`, and `chunks/<ws>/…` (attachment chunks, as files). Every
connection runs in WAL mode with `synchronous=FULL` (a commit is on disk before the
answer) and a busy timeout; every write goes through `write()`, which takes the
write lock up front with `BEGIN IMMEDIATE` so concurrent gunicorn workers queue
instead of failing with "database is locked" on a lock upgrade.
"""

from __future__ import annotations

import sqlite3

from . import bundles, chunks, keylog, pool
from .db import connect, read, write
from .paths import Paths, valid_chunk_id, valid_workspace_id

__all__ = [
    "Paths",
    "bundles",
    "chunks",
    "connect",
    "keylog",
    "open_workspace",
    "pool",
    "read",
    "valid_chunk_id",
    "valid_workspace_id",
    "write",
]


def open_workspace(paths: Paths, ws: str) -> sqlite3.Connection | None:
    """A pooled connection to a hosted workspace, or None when this server hosts no such id.

    Give it back with `pool.release` at the end of the request, never close it.
    """
    if not valid_workspace_id(ws):
        return None
    path = paths.workspace_db(ws)
    if not path.exists():
        return None
    try:
        return pool.get(path, setup=_workspace_setup)
    except sqlite3.OperationalError:
        return None


# WAL pages between automatic checkpoints (SQLite's default is 1,000). A push of 250
# bundles writes some 700 pages, most of them index leaves of random ids that the
# next pushes dirty again: checkpointing after every push or two copied each such
# page to the database (and paid two more fsyncs) over and over, inside the push
# that crossed the mark, with the write lock held. Every 16 MiB, a page written by
# several pushes is copied once; the WAL of a busy workspace stays about that size.
CHECKPOINT_PAGES = 4096


def _workspace_setup(conn: sqlite3.Connection) -> None:
    conn.execute(f"PRAGMA wal_autocheckpoint = {CHECKPOINT_PAGES}")
