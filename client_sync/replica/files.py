"""Attachments in the replica: each record's attachment fields, and the opened chunks
of the files a coordinator fetched (client_sync/fetching.py), encrypted with the rest.

The chunks are kept opened (the file's padded stream, piece by piece) in a rowid
table of blobs, one row per chunk, so that a fetch cut off resumes where it stopped
and a verified file is read back without the network. `file_checks` says which files
were checked whole against the SHA-256 sealed at capture, and when.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from protocol.descriptor import FILE_FIELD_PREFIX, file_field

from .core import HeadCell, Replica, head_of, ordered

FILES_DDL = """
CREATE TABLE IF NOT EXISTS file_chunks (
    attachment_id TEXT NOT NULL, idx INTEGER NOT NULL, data BLOB NOT NULL,
    UNIQUE (attachment_id, idx)
);
CREATE TABLE IF NOT EXISTS file_checks (
    attachment_id TEXT PRIMARY KEY, sha256 TEXT NOT NULL, at TEXT NOT NULL
) WITHOUT ROWID;
"""
# The fields of attachments sort together: `_file_` then 32 hex digits.
_FIRST, _PAST = FILE_FIELD_PREFIX, FILE_FIELD_PREFIX[:-1] + chr(ord("_") + 1)


def record_files(replica: Replica, record_id: str) -> dict[str, list[HeadCell]]:
    """Each attachment field of a record -> its open values, winner first. Reads the
    record's own cells only."""
    rows = replica.db.execute(
        "SELECT r.record_id, c.record_type, c.field, c.value, c.hlc, c.device_id, c.cell_id"
        " FROM records r JOIN cells c ON c.rid = r.rid AND c.head = 1"
        " AND c.field >= ? AND c.field < ? WHERE r.record_id = ?",
        (_FIRST, _PAST, record_id),
    )
    out: dict[str, list[HeadCell]] = {}
    for r in rows:
        h = head_of(r)
        out.setdefault(h.field, []).append(h)
    return {name: ordered(hs) for name, hs in sorted(out.items())}


class _Elsewhere:
    """Is a chunk id listed by another attachment this replica holds? Asked only when a
    server served bytes that are not the chunk asked for (then it reads every
    attachment cell once: a lie is rare, and worth naming)."""

    def __init__(self, replica: Replica, but: str) -> None:
        self.db = replica.db
        self.field = file_field(but)

    def __contains__(self, chunk_id: object) -> bool:
        if not isinstance(chunk_id, str):
            return False
        row = self.db.execute(
            "SELECT 1 FROM cells WHERE field >= ? AND field < ? AND field != ?"
            " AND instr(value, ?) > 0 LIMIT 1",
            (_FIRST, _PAST, self.field, json.dumps(chunk_id)),
        ).fetchone()
        return row is not None


def has_files(replica: Replica) -> bool:
    """Has this replica kept any file yet (are its tables there)? A read."""
    row = replica.db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'file_checks'"
    ).fetchone()
    return row is not None


def checks(replica: Replica, attachment_ids: list[str]) -> dict[str, tuple[str, str]]:
    """attachment id -> (verified SHA-256, when) of the files kept and checked whole. A
    read: a reading session (the workbench's pages) may call it."""
    if not attachment_ids or not has_files(replica):
        return {}
    marks = ",".join("?" * len(attachment_ids))
    rows = replica.db.execute(
        f"SELECT attachment_id, sha256, at FROM file_checks WHERE attachment_id IN ({marks})",  # noqa: S608
        attachment_ids,
    )
    return {str(a): (str(h), str(t)) for a, h, t in rows}


class FileCache:
    """`fetching.Cache` over the replica. Each chunk kept is its own transaction: a fetch
    cut off keeps what it got. `create=False` (a reading session): the tables are not
    made, and a replica without them keeps nothing yet."""

    def __init__(self, replica: Replica, create: bool = True) -> None:
        self.replica = replica
        self.db = replica.db
        if create:
            for statement in FILES_DDL.split(";"):
                if statement.strip():
                    self.db.execute(statement)
        elif not has_files(replica):
            raise LookupError("no file is kept in this replica yet")

    def piece(self, attachment_id: str, index: int) -> bytes | None:
        row = self.db.execute(
            "SELECT data FROM file_chunks WHERE attachment_id = ? AND idx = ?",
            (attachment_id, index),
        ).fetchone()
        return None if row is None else bytes(row[0])

    def keep(self, attachment_id: str, index: int, plain: bytes) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO file_chunks (attachment_id, idx, data) VALUES (?, ?, ?)",
            (attachment_id, index, plain),
        )

    def verified(self, attachment_id: str) -> str | None:
        row = self.db.execute(
            "SELECT sha256 FROM file_checks WHERE attachment_id = ?", (attachment_id,)
        ).fetchone()
        return None if row is None else str(row[0])

    def mark_verified(self, attachment_id: str, sha256: str) -> None:
        at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.db.execute(
            "INSERT OR REPLACE INTO file_checks (attachment_id, sha256, at) VALUES (?, ?, ?)",
            (attachment_id, sha256, at),
        )

    def checked_at(self, attachment_id: str) -> str | None:
        row = self.db.execute(
            "SELECT at FROM file_checks WHERE attachment_id = ?", (attachment_id,)
        ).fetchone()
        return None if row is None else str(row[0])

    def forget(self, attachment_id: str) -> None:
        self.db.execute("DELETE FROM file_chunks WHERE attachment_id = ?", (attachment_id,))
        self.db.execute("DELETE FROM file_checks WHERE attachment_id = ?", (attachment_id,))

    def known_chunks(self, but: str) -> Any:
        return _Elsewhere(self.replica, but)
