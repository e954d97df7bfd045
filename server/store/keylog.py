"""The stored key log, and the verified authorisation state the server derives from it.

The server authorises every request against its own copy of the log. Replaying a
long log costs a signature check per event, so each process caches the verified
state per database file, keyed by the log's length and head hash; another worker
may have appended since, so every request reads the length (one index probe) and
applies only the new events.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Mapping
from typing import Any

from protocol.encoding import canonical_json
from protocol.errors import InvalidKeyLog
from protocol.keylog import KeyLogState, apply_event, event_hash, genesis_state

_cache: dict[str, KeyLogState] = {}
_lock = threading.Lock()


class LogConflict(Exception):
    """The event's seq is not the log's length: another admin appended first."""


def insert_event(conn: sqlite3.Connection, event: Mapping[str, Any]) -> str:
    """Store one already-verified event; returns its hash."""
    h = event_hash(event)
    conn.execute(
        "INSERT INTO events (seq, kind, hash, event) VALUES (?, ?, ?, ?)",
        (event["seq"], event["kind"], h, canonical_json(dict(event)).decode("utf-8")),
    )
    return h


def head(conn: sqlite3.Connection) -> tuple[int, str] | None:
    row = conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    return None if row is None else (row[0] + 1, row[1])


def events_since(conn: sqlite3.Connection, since: int) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT event FROM events WHERE seq >= ? ORDER BY seq", (since,))
    return [json.loads(r[0]) for r in rows]


def state(conn: sqlite3.Connection, key: str) -> KeyLogState:
    """The verified state of this database's log. `key` names the file in the cache."""
    top = head(conn)
    if top is None:
        raise InvalidKeyLog("empty", "the workspace has no key log")
    length, head_hash = top
    with _lock:
        cached = _cache.get(key)
    if cached is not None and cached.length == length and cached.head == head_hash:
        return cached
    if cached is not None and cached.length < length:
        # Verify only what others appended, if it continues the log we hold.
        new = events_since(conn, cached.length)
        if new and new[0]["prev"] == cached.head:
            st = cached
            for ev in new:
                st = apply_event(st, ev)
            if st.head == head_hash:
                return _remember(key, st)
    events = events_since(conn, 0)
    st = genesis_state(events[0])
    for ev in events[1:]:
        st = apply_event(st, ev)
    return _remember(key, st)


def _remember(key: str, st: KeyLogState) -> KeyLogState:
    with _lock:
        _cache[key] = st
    return st


def append(conn: sqlite3.Connection, key: str, event: Mapping[str, Any], now: int) -> KeyLogState:
    """Verify `event` against the log and append it; call inside a write transaction.

    Raises LogConflict when `event.seq` is not the current length, and
    InvalidKeyLog (from protocol.keylog) when the event does not verify.
    """
    st = state(conn, key)
    if event.get("seq") != st.length:
        raise LogConflict()
    new = apply_event(st, event, now)
    insert_event(conn, event)
    return _remember(key, new)
