"""Restore a backup into a data directory, and the lock a running server holds on it.

`fieldsync-server run` holds an exclusive flock on `<data dir>/server.lock` for its
lifetime (the master and its forked workers share it; it goes with the last of
them, also after a kill -9). `restore` takes the same lock without waiting, so it
refuses while a server runs on the directory, and no server can start mid-restore.

A restore checks every file of the backup first (`PRAGMA integrity_check`, the
tables a fieldsync database has) and changes nothing if one fails. Each restored
workspace gets a new incarnation, so keyholders see that the server went back in
time and pull again from the start, and devices re-send what the backup lacks.
A stale `-wal` or `-shm` beside a restored file would be replayed onto it by
SQLite, so they are removed before the file is put in place.

The attachment chunks a restored workspace's backup holds are put back after its
database (`chunks/<ws>/`), each checked against its name (the hash of its bytes);
chunks uploaded since the backup stay (their rows are gone with the newer database,
and a device that still keeps them uploads them again, which writes their rows).
How far each keyholder had pulled is forgotten: change numbers restart from the
backup's, so releases wait for keyholders to pull again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .delivery import set_incarnation
from .paths import Paths, fsync, valid_workspace_id
from .schema import DELIVERY_DDL

RUN_LOCK = "server.lock"


class DataDirBusy(Exception):
    """A server runs on this data directory (or another restore does)."""


class BadBackup(Exception):
    """The backup is missing, damaged, or not a fieldsync backup; nothing was changed."""


@contextlib.contextmanager
def run_lock(data_dir: Path) -> Iterator[None]:
    """Hold the data directory's run lock, or raise DataDirBusy at once."""
    fd = os.open(data_dir / RUN_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataDirBusy(f"a fieldsync-server runs on {data_dir}: stop it first") from None
        yield
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Restored:
    name: str  # relative to the data directory
    incarnation: str | None  # workspaces only
    chunks: int | None = None  # attachment chunks put back (workspaces only)


def _backup_files(backup: Path) -> list[Path]:
    if not backup.is_dir():
        raise BadBackup(f"{backup} is not a directory")
    found = [backup / "server.sqlite"] if (backup / "server.sqlite").is_file() else []
    for path in sorted((backup / "workspaces").glob("*.sqlite")):
        if not valid_workspace_id(path.stem):
            raise BadBackup(f"{path.name} is not named by a workspace id")
        found.append(path)
    if not found:
        raise BadBackup(f"no fieldsync databases in {backup}")
    return found


def _check(path: Path, name: str, workspace: bool) -> None:
    """Integrity and shape of one copied file (`name`: the backup's); raises BadBackup."""
    conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, isolation_level=None)
    try:
        verdict = conn.execute("PRAGMA integrity_check").fetchone()[0]
        if verdict != "ok":
            raise BadBackup(f"{name}: integrity check failed: {verdict}")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        need = {"events", "bundles", "cells"} if workspace else {"codes"}
        if not need <= tables:
            raise BadBackup(f"{name} is not a fieldsync database")
        if workspace and conn.execute("SELECT count(*) FROM events").fetchone()[0] == 0:
            raise BadBackup(f"{name} holds no key log")
    except sqlite3.DatabaseError as exc:
        raise BadBackup(f"{name}: {exc}") from None
    finally:
        conn.close()


def _renew(path: Path) -> str:
    """A new incarnation for a workspace copy, left in one self-contained file."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = DELETE")
        conn.execute("PRAGMA synchronous = FULL")
        conn.executescript(DELIVERY_DDL)  # a backup made before these tables existed
        conn.execute("BEGIN IMMEDIATE")
        value = set_incarnation(conn)
        conn.execute("COMMIT")
        return value
    finally:
        conn.close()


def restore(backup: Path, data_dir: Path) -> list[Restored]:
    """Put every database of `backup` into `data_dir`; databases the backup lacks stay."""
    paths = Paths(data_dir)
    paths.ensure()
    with run_lock(data_dir):
        sources = _backup_files(backup)
        staged: list[tuple[Path, Path, str | None]] = []
        try:
            for src in sources:
                workspace = src.parent.name == "workspaces"
                target = paths.workspace_db(src.stem) if workspace else paths.server_db
                tmp = target.parent / f".restore-{secrets.token_hex(6)}.sqlite"
                shutil.copyfile(src, tmp)
                os.chmod(tmp, 0o600)
                staged.append((tmp, target, None))
                _check(tmp, src.name, workspace)
                incarnation = _renew(tmp) if workspace else None
                fsync(tmp)
                staged[-1] = (tmp, target, incarnation)
        except BaseException:
            for tmp, _, _ in staged:
                tmp.unlink(missing_ok=True)
            raise
        done = []
        for tmp, target, incarnation in staged:
            for suffix in ("-wal", "-shm", "-journal"):
                Path(f"{target}{suffix}").unlink(missing_ok=True)
            os.replace(tmp, target)
            fsync(target.parent)
            chunks = None
            if incarnation is not None:
                chunks = restore_chunks(Paths(backup), paths, target.stem)
                forget_pulled(paths, target.stem)
            done.append(Restored(str(target.relative_to(data_dir)), incarnation, chunks))
        return done


def restore_chunks(backup: Paths, paths: Paths, ws: str) -> int:
    """Put back the chunk files the backup holds for `ws`; returns how many."""
    from protocol.attachment import chunk_id

    from .chunks import all_files, write_file

    put = 0
    for src in all_files(backup, ws):
        data = src.read_bytes()
        if chunk_id(data) != src.name:
            continue  # damaged in the backup: a device that keeps it sends it again
        target = paths.chunk_path(ws, src.name)
        if target.exists() and chunk_id(target.read_bytes()) == src.name:
            continue
        write_file(target, data)
        put += 1
    return put


def forget_pulled(paths: Paths, ws: str) -> None:
    """How far keyholders pulled counts in the old numbering: forget it."""
    path = paths.nonce_db(ws)
    if not path.exists():
        return
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        with contextlib.suppress(sqlite3.OperationalError):  # no such table: nothing kept
            conn.execute("DELETE FROM pulled")
    finally:
        conn.close()
