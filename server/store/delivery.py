"""Delivery state: the database's incarnation, receipts, chain heads, one bundle by seq.

A workspace file made before these tables existed gets them on first use
(`ensure`, once per connection); a file without an incarnation gets one then.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

from protocol.encoding import b64e, canonical_json
from protocol.model import ZERO_HASH

from .bundles import changes
from .db import write
from .schema import DELIVERY_DDL

INCARNATION = "incarnation"


def new_incarnation() -> str:
    return b64e(secrets.token_bytes(16))


def set_incarnation(conn: sqlite3.Connection, value: str | None = None) -> str:
    """Give the database a new incarnation; call inside a write transaction (or on a
    file no server has open: `restore`, `create_workspace`)."""
    value = value or new_incarnation()
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (INCARNATION, value),
    )
    return value


def ensure(conn: sqlite3.Connection) -> None:
    """The delivery tables and an incarnation exist (older files get them once)."""
    if getattr(conn, "fs_delivery", False):
        return
    row = None
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (INCARNATION,)).fetchone()
    except sqlite3.OperationalError:
        pass  # no table yet
    if row is None:
        with write(conn):
            for statement in DELIVERY_DDL.split(";"):
                if statement.strip():
                    conn.execute(statement)
            if conn.execute("SELECT 1 FROM meta WHERE key = ?", (INCARNATION,)).fetchone() is None:
                set_incarnation(conn)
    try:
        conn.fs_delivery = True  # type: ignore[attr-defined]
    except AttributeError:
        pass  # a plain sqlite3 connection: check again next time


def incarnation(conn: sqlite3.Connection) -> str:
    """The database's incarnation: one primary-key probe on every call (a file made
    before there was one gets it first, once). Call outside a read snapshot."""
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (INCARNATION,)).fetchone()
    except sqlite3.OperationalError:
        row = None  # no table yet
    if row is None:
        ensure(conn)
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (INCARNATION,)).fetchone()
    return str(row[0])


# --- receipts -----------------------------------------------------------------------------


def store_receipts(conn: sqlite3.Connection, receipts: Iterable[Mapping[str, Any]]) -> int:
    """Keep the newest receipt per (device, signer); call inside a write transaction."""
    rows = [
        (r["device_id"], r["signer"], r["seq"], r["at"], canonical_json(dict(r)).decode())
        for r in receipts
    ]
    conn.executemany(
        "INSERT INTO receipts (device_id, signer, seq, at, receipt) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (device_id, signer) DO UPDATE SET seq = excluded.seq,"
        " at = excluded.at, receipt = excluded.receipt WHERE excluded.at >= receipts.at",
        rows,
    )
    return len(rows)


def receipts_for(conn: sqlite3.Connection, device_id: str) -> list[tuple[str, dict[str, Any]]]:
    """(signer, receipt) of every receipt about `device_id`: one primary-key range."""
    rows = conn.execute(
        "SELECT signer, receipt FROM receipts WHERE device_id = ? ORDER BY signer", (device_id,)
    )
    return [(str(s), json.loads(r)) for s, r in rows]


# --- chain heads --------------------------------------------------------------------------


def store_head(conn: sqlite3.Connection, head: Mapping[str, Any]) -> tuple[int, str]:
    """Keep the device's highest signed head; returns the (seq, hash) now stored. Inside a
    write transaction."""
    conn.execute(
        "INSERT INTO heads (device_id, seq, head) VALUES (?, ?, ?)"
        " ON CONFLICT (device_id) DO UPDATE SET seq = excluded.seq, head = excluded.head"
        " WHERE excluded.seq > heads.seq",
        (head["device_id"], head["seq"], canonical_json(dict(head)).decode()),
    )
    row = conn.execute("SELECT head FROM heads WHERE device_id = ?", (head["device_id"],))
    kept = json.loads(row.fetchone()[0])
    return int(kept["seq"]), str(kept["hash"])


def all_heads(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    return [json.loads(r[0]) for r in conn.execute("SELECT head FROM heads ORDER BY device_id")]


# --- a device's chain as stored -----------------------------------------------------------


def chain_head(conn: sqlite3.Connection, device_id: str) -> tuple[int, str]:
    """The highest stored seq of a device and its bundle hash: one probe of (device_id, seq)."""
    row = conn.execute(
        "SELECT seq, hash FROM bundles WHERE device_id = ? ORDER BY seq DESC LIMIT 1",
        (device_id,),
    ).fetchone()
    return (0, ZERO_HASH) if row is None else (int(row[0]), str(row[1]))


def bundle_at(conn: sqlite3.Connection, workspace: str, device_id: str, seq: int) -> str | None:
    """One bundle as the changes feed serves it (JSON text), or None."""
    row = conn.execute(
        "SELECT change FROM bundles WHERE device_id = ? AND seq = ?", (device_id, seq)
    ).fetchone()
    if row is None:
        return None
    change = int(row[0])
    return changes(conn, workspace, change - 1, change)[1:-1]  # the one element of the array
