"""Connections kept open per thread, so a request does not pay for opening a database.

Closing a database's last connection also checkpoints its WAL and deletes it, an
fsync per request; a connection held open by each worker avoids that. Each
thread keeps its own (sqlite3 connections are not shared across threads), and
at most `LIMIT` of them, closing the least recently used.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from .db import connect, write

__all__ = ["LIMIT", "close_all", "get", "release", "write"]

LIMIT = 64

_local = threading.local()


def _cache() -> OrderedDict[str, sqlite3.Connection]:
    cache = getattr(_local, "conns", None)
    if cache is None:
        cache = _local.conns = OrderedDict()
    return cache


def get(
    path: Path,
    *,
    create: bool = False,
    setup: Callable[[sqlite3.Connection], None] | None = None,
) -> sqlite3.Connection:
    """An open connection to a database file: an existing one (sqlite3.OperationalError
    if none), or with `create` one made on first use. `setup` runs once per new
    connection (pragmas, tables)."""
    key = str(path)
    cache = _cache()
    conn = cache.get(key)
    if conn is not None:
        cache.move_to_end(key)
        return conn
    conn = connect(path, create=create)
    if setup is not None:
        try:
            setup(conn)
        except BaseException:
            conn.close()
            raise
    cache[key] = conn
    while len(cache) > LIMIT:
        _, old = cache.popitem(last=False)
        old.close()
    return conn


def release(conn: sqlite3.Connection) -> None:
    """End of a request: leave the connection reusable, with no transaction open."""
    if conn.in_transaction:
        conn.rollback()


def close_all() -> None:
    cache = _cache()
    while cache:
        cache.popitem()[1].close()
