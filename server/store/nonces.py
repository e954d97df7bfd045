"""Request nonces: each (key, nonce) is accepted once while its signature could be fresh."""

from __future__ import annotations

import sqlite3


def nonce_seen(conn: sqlite3.Connection, key_id: str, nonce: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM nonces WHERE key_id = ? AND nonce = ?", (key_id, nonce)
    ).fetchone()
    return row is not None


def consume_nonce(
    conn: sqlite3.Connection, key_id: str, nonce: str, expires: int, now: int
) -> bool:
    """Record a nonce inside the caller's write transaction; False if it was used already.

    Expired nonces are swept here, a range delete on the `expires` index, so the
    table holds only the last few minutes of requests.
    """
    conn.execute("DELETE FROM nonces WHERE expires < ?", (now,))
    cur = conn.execute(
        "INSERT OR IGNORE INTO nonces (key_id, nonce, expires) VALUES (?, ?, ?)",
        (key_id, nonce, expires),
    )
    return cur.rowcount == 1
