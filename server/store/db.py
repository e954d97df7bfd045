"""Connections and transactions: the pragmas every connection gets, and the write lock."""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BUSY_TIMEOUT_MS = 10_000


class Connection(sqlite3.Connection):
    """A connection that also holds its database's writer lock file (see `write`)."""

    lock_fd: int | None = None

    def close(self) -> None:
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None
        super().close()


def connect(path: Path, *, create: bool = True) -> sqlite3.Connection:
    """Open a database in autocommit mode: transactions are begun explicitly below.

    With `create=False` a missing file is an error (sqlite3.OperationalError)
    rather than a new empty database.
    """
    target = str(path) if create else Path(path).resolve().as_uri() + "?mode=rw"
    conn = sqlite3.connect(
        target,
        isolation_level=None,
        timeout=BUSY_TIMEOUT_MS / 1000,
        uri=not create,
        factory=Connection,
    )
    assert isinstance(conn, Connection)
    conn.lock_fd = os.open(f"{path}-lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    # WAL persists in the file, but asking again costs nothing and covers a file
    # restored from a backup made in another mode.
    conn.execute("PRAGMA journal_mode = WAL")
    # FULL, not NORMAL: in WAL mode NORMAL may lose the last commits on power loss,
    # and the server acknowledges a bundle only once it is on disk.
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    # 32 MiB of page cache (default 2 MiB): a push touches index pages all over.
    conn.execute("PRAGMA cache_size = -32768")
    return conn


@contextmanager
def write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction. BEGIN IMMEDIATE takes the write lock at once (waiting up
    to the busy timeout), so a transaction never fails later upgrading a read lock.

    Writers first queue on an flock of `<db>-lock`: SQLite's busy handler polls
    with sleeps of up to 100 ms, so under contention the write lock would sit
    free while waiters sleep; a blocked flock wakes as soon as it is released.
    The busy timeout still covers writers that do not take the flock (the
    backup command, another tool).
    """
    fd = getattr(conn, "lock_fd", None)
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    finally:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)


@contextmanager
def read(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One read snapshot, so that several queries see the same commit."""
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        conn.execute("COMMIT")
