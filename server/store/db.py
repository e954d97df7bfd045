"""Connections and transactions: the pragmas every connection gets, and the write lock."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BUSY_TIMEOUT_MS = 10_000


def connect(path: Path, *, create: bool = True) -> sqlite3.Connection:
    """Open a database in autocommit mode: transactions are begun explicitly below.

    With `create=False` a missing file is an error (sqlite3.OperationalError)
    rather than a new empty database.
    """
    target = str(path) if create else Path(path).resolve().as_uri() + "?mode=rw"
    conn = sqlite3.connect(
        target, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, uri=not create
    )
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    # WAL persists in the file, but asking again costs nothing and covers a file
    # restored from a backup made in another mode.
    conn.execute("PRAGMA journal_mode = WAL")
    # FULL, not NORMAL: in WAL mode NORMAL may lose the last commits on power loss,
    # and the server acknowledges a bundle only once it is on disk.
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


@contextmanager
def write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction. BEGIN IMMEDIATE takes the write lock at once (waiting up
    to the busy timeout), so a transaction never fails later upgrading a read lock."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@contextmanager
def read(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One read snapshot, so that several queries see the same commit."""
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        conn.execute("COMMIT")
