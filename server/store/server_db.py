"""The server's own database: one-time workspace codes (stored as SHA-256 only)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from .db import connect, write
from .delivery import set_incarnation
from .keylog import insert_event
from .paths import Paths, fsync
from .schema import create_server_tables, create_workspace_tables


class CodeRefused(Exception):
    """The code is unknown or was used."""


class WorkspaceExists(Exception):
    """A workspace with this id is already hosted."""


def _hash(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


def open_server_db(paths: Paths) -> sqlite3.Connection:
    paths.ensure()
    conn = connect(paths.server_db)
    create_server_tables(conn)
    return conn


def new_code(paths: Paths, now: int) -> str:
    """Mint a one-time code; only its hash is kept, so the database never reveals it."""
    code = secrets.token_urlsafe(18)
    conn = open_server_db(paths)
    try:
        with write(conn):
            conn.execute(
                "INSERT INTO codes (code_hash, created, used) VALUES (?, ?, NULL)",
                (_hash(code), now),
            )
    finally:
        conn.close()
    return code


def code_usable(paths: Paths, code: str) -> bool:
    """Is `code` a minted code not used yet? A read: a refusal stores nothing."""
    if not paths.server_db.exists():
        return False
    conn = connect(paths.server_db, create=False)
    try:
        row = conn.execute("SELECT used FROM codes WHERE code_hash = ?", (_hash(code),)).fetchone()
    finally:
        conn.close()
    return row is not None and row[0] is None


def create_workspace(
    paths: Paths,
    ws: str,
    code: str,
    genesis: dict[str, Any],
    now: int,
    later: Sequence[Mapping[str, Any]] = (),
) -> None:
    """Create `<ws>.sqlite` holding the genesis (and, to recreate a lost workspace, the
    verified events `later`), consuming the code in the same transaction. The file gets
    a new incarnation.

    The file is built under a temporary name in rollback-journal mode (one file, so it
    can be renamed whole), fsynced, then linked to its final name, which fails if the
    name is taken. The code is marked used in the server database's transaction that
    encloses all of this: if anything fails the code stays usable and no file remains.
    """
    final = paths.workspace_db(ws)
    tmp = paths.workspaces / f".tmp-{ws}-{secrets.token_hex(6)}.sqlite"
    conn = open_server_db(paths)
    try:
        with write(conn):
            row = conn.execute(
                "SELECT used FROM codes WHERE code_hash = ?", (_hash(code),)
            ).fetchone()
            if row is None or row[0] is not None:
                raise CodeRefused()
            if final.exists():
                raise WorkspaceExists()
            _build(tmp, genesis, later)
            try:
                os.link(tmp, final)
            except FileExistsError as exc:
                raise WorkspaceExists() from exc
            finally:
                tmp.unlink()
            fsync(paths.workspaces)
            try:
                conn.execute("UPDATE codes SET used = ? WHERE code_hash = ?", (now, _hash(code)))
            except BaseException:
                final.unlink()
                raise
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    finally:
        conn.close()


def _build(
    tmp: os.PathLike[str], genesis: dict[str, Any], later: Sequence[Mapping[str, Any]]
) -> None:
    db = sqlite3.connect(str(tmp), isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode = DELETE")
        db.execute("PRAGMA synchronous = FULL")
        create_workspace_tables(db)
        with write(db):
            insert_event(db, genesis)
            for event in later:
                insert_event(db, event)
            set_incarnation(db)
    finally:
        db.close()
