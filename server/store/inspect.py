"""Administration over whole database files: dump, integrity check, online backup.

Not on the request path, so sqlite-utils' conveniences are welcome here.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import sqlite_utils

from .db import connect


def dump(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, ordered by primary key: a whole-value picture of a file."""
    db = sqlite_utils.Database(connect(path, create=False))
    try:
        out: dict[str, list[dict[str, Any]]] = {}
        for name in sorted(db.table_names()):
            table = db.table(name)
            out[name] = list(table.rows_where(order_by=", ".join(table.pks)))
        return out
    finally:
        db.conn.close()


def integrity_check(path: Path) -> str:
    conn = connect(path, create=False)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def backup(source: Path, target: Path) -> str:
    """Copy a live database with SQLite's online backup API, then check the copy.

    The copy is left in rollback-journal mode so it is one self-contained file.
    Returns the copy's `PRAGMA integrity_check` ("ok" when sound).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    src = connect(source, create=False)
    dst = sqlite3.connect(str(target), isolation_level=None)
    try:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode = DELETE")
    finally:
        dst.close()
        src.close()
    return integrity_check(target)
