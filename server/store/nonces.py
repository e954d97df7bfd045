"""Request nonces: each (key, nonce) is accepted once while its signature could be fresh.

Each workspace keeps its nonces in a file of their own, `nonces/<ws>.sqlite`, and
not in the workspace database: there, recording a nonce took the workspace's write
lock, so every signed read (a `changes?limit=1`, a key-log fetch) queued behind the
push that held it. Here a nonce costs one tiny transaction on a lock that no long
transaction ever holds. SQLite rather than memory, because the gunicorn workers are
separate processes and a replay must be refused by whichever worker receives it,
including after a restart within the window.

`synchronous = NORMAL` (in WAL mode: no fsync per commit, durable across a killed
process or a restart, not across a power cut). A nonce only has to outlive its
signature's window (a few minutes); a power cut within it could let one captured
request be replayed once, and every write the API takes is idempotent (a pushed
bundle is `stored` again) or ordered (a key-log event names its `seq`), so
the fsync per signed request that FULL would cost buys nothing.

The same file remembers how far each keyholder has pulled (`pulled`: the highest
`since` it asked for, so it holds every change up to it): what the server needs to
know before it drops the chunks of a removed attachment (server/store/chunks.py).
A changes page is a read, so this is kept here rather than in the workspace file,
whose write lock a read never takes. Losing it (the file is not backed up) only
delays drops until every keyholder pulls again.
"""

from __future__ import annotations

import sqlite3

from . import pool
from .paths import Paths

NONCES_DDL = """
CREATE TABLE IF NOT EXISTS nonces (
    key_id TEXT NOT NULL,
    nonce TEXT NOT NULL,
    expires INTEGER NOT NULL,
    PRIMARY KEY (key_id, nonce)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS nonces_expires ON nonces (expires);
CREATE TABLE IF NOT EXISTS pulled (
    device_id TEXT PRIMARY KEY,
    since INTEGER NOT NULL
) WITHOUT ROWID;
"""


def _setup(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA cache_size = -1024")
    conn.executescript(NONCES_DDL)


def _conn(paths: Paths, ws: str, create: bool) -> sqlite3.Connection | None:
    path = paths.nonce_db(ws)
    if not create and not path.exists():
        return None
    return pool.get(path, create=True, setup=_setup)


def seen(paths: Paths, ws: str, key_id: str, nonce: str) -> bool:
    """Was this nonce recorded for this key? A read: it takes no lock and creates no file."""
    conn = _conn(paths, ws, create=False)
    if conn is None:
        return False
    row = conn.execute(
        "SELECT 1 FROM nonces WHERE key_id = ? AND nonce = ?", (key_id, nonce)
    ).fetchone()
    return row is not None


def consume(paths: Paths, ws: str, key_id: str, nonce: str, expires: int, now: int) -> bool:
    """Record a nonce; False if it was recorded before (by any worker).

    Expired nonces are swept here, a range delete on the `expires` index, so the
    file holds only the last few minutes of requests.
    """
    conn = _conn(paths, ws, create=True)
    assert conn is not None
    with pool.write(conn):
        conn.execute("DELETE FROM nonces WHERE expires < ?", (now,))
        cur = conn.execute(
            "INSERT OR IGNORE INTO nonces (key_id, nonce, expires) VALUES (?, ?, ?)",
            (key_id, nonce, expires),
        )
        return cur.rowcount == 1


def note_pulled(paths: Paths, ws: str, device_id: str, since: int) -> None:
    """A keyholder asked for the changes after `since`: it holds every one up to it."""
    if since <= 0:
        return
    conn = _conn(paths, ws, create=True)
    assert conn is not None
    with pool.write(conn):
        conn.execute(
            "INSERT INTO pulled (device_id, since) VALUES (?, ?) ON CONFLICT (device_id)"
            " DO UPDATE SET since = max(since, excluded.since)",
            (device_id, since),
        )


def pulled(paths: Paths, ws: str) -> dict[str, int]:
    """device id -> the change up to which that keyholder has pulled."""
    conn = _conn(paths, ws, create=False)
    if conn is None:
        return {}
    return {str(d): int(s) for d, s in conn.execute("SELECT device_id, since FROM pulled")}
