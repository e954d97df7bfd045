"""Attachment chunks: bytes in files, their bookkeeping in the workspace database.

A chunk's bytes live in `chunks/<ws>/<2 characters>/<chunk id>` (`Paths.chunk_path`),
never in SQLite: a 200 MB video would otherwise bloat the database, its WAL and
every backup of it, and a changes page never needs them. Each file is written
under a temporary name, fsynced, renamed over its final name and its directory
fsynced, so a crash leaves the whole chunk or none of it; its row is committed
after the file, so a row always names a file that was on disk (a file without a
row is an upload the server never answered, harmless and overwritten by a retry).

The rows: `chunks` (id, uploading device, size, time), counted in the device's
`usage`; `chunk_releases` (each signed release as sent); `released` (which release
lets each chunk go, after which change, and whether it was dropped).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bundles import add_usage
from .db import write
from .paths import Paths, fsync
from .schema import CHUNKS_DDL

DISK_BLOCK = 4096
_CHUNK = 500  # bound on SQL parameters per statement


def cost(size: int) -> int:
    """What a chunk counts in its device's quota: the disk it takes, whole 4 KiB blocks
    (so a flood of tiny chunks is counted for the files it makes)."""
    return -(-size // DISK_BLOCK) * DISK_BLOCK


def ensure(conn: sqlite3.Connection) -> None:
    """The chunk tables exist (a workspace file made before them gets them once)."""
    if getattr(conn, "fs_chunks", False):
        return
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'released'"
    ).fetchone()
    if found is None:
        with write(conn):
            for statement in CHUNKS_DDL.split(";"):
                if statement.strip():
                    conn.execute(statement)
    with contextlib.suppress(AttributeError):  # a plain sqlite3 connection: check again
        conn.fs_chunks = True  # type: ignore[attr-defined]


# --- files --------------------------------------------------------------------------------


def _make_dirs(path: Path) -> None:
    """Create `path` and the directories above it that are missing, each made durable
    (its parent fsynced) before a file inside it is counted on."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=0o700)
        fsync(folder.parent)


def write_file(path: Path, data: bytes) -> None:
    """Put `data` at `path` atomically and durably: temporary name, fsync, rename,
    fsync of the directory."""
    _make_dirs(path.parent)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync(path.parent)


def read_file(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


# --- rows ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredChunk:
    chunk_id: str
    device_id: str
    size: int


def stored(conn: sqlite3.Connection, chunk_ids: Sequence[str]) -> dict[str, StoredChunk]:
    out: dict[str, StoredChunk] = {}
    for i in range(0, len(chunk_ids), _CHUNK):
        part = chunk_ids[i : i + _CHUNK]
        marks = ",".join("?" * len(part))
        sql = f"SELECT chunk_id, device_id, size FROM chunks WHERE chunk_id IN ({marks})"  # noqa: S608
        for cid, dev, size in conn.execute(sql, part):
            out[cid] = StoredChunk(cid, dev, size)
    return out


def dropped(conn: sqlite3.Connection, chunk_ids: Sequence[str]) -> set[str]:
    """Those of `chunk_ids` that a release let go and the server dropped."""
    out: set[str] = set()
    for i in range(0, len(chunk_ids), _CHUNK):
        part = chunk_ids[i : i + _CHUNK]
        marks = ",".join("?" * len(part))
        sql = f"SELECT chunk_id FROM released WHERE dropped = 1 AND chunk_id IN ({marks})"  # noqa: S608
        out.update(r[0] for r in conn.execute(sql, part))
    return out


def insert(conn: sqlite3.Connection, chunk: StoredChunk, at: int) -> bool:
    """Record an uploaded chunk and count it against its device; False if it was known.
    Call inside a write transaction, after its file is on disk."""
    cur = conn.execute(
        "INSERT OR IGNORE INTO chunks (chunk_id, device_id, size, at) VALUES (?, ?, ?, ?)",
        (chunk.chunk_id, chunk.device_id, chunk.size, at),
    )
    if cur.rowcount != 1:
        return False
    add_usage(conn, chunk.device_id, cost(chunk.size))
    return True


def bundle_device(conn: sqlite3.Connection, change: int) -> str | None:
    """The device whose bundle has change number `change`, if one is stored."""
    row = conn.execute("SELECT device_id FROM bundles WHERE change = ?", (change,)).fetchone()
    return None if row is None else str(row[0])


def record_release(
    conn: sqlite3.Connection, release: dict[str, Any], chunk_ids: Iterable[str]
) -> int:
    """Keep a verified release and mark the chunks it lets go (a chunk released before
    keeps its first release); returns how many chunks it newly released."""
    cur = conn.execute(
        "INSERT INTO chunk_releases (device_id, change, release) VALUES (?, ?, ?)",
        (release["device_id"], release["change"], json.dumps(release, separators=(",", ":"))),
    )
    rid = cur.lastrowid
    cur = conn.executemany(
        "INSERT OR IGNORE INTO released (chunk_id, release_id, change, dropped)"
        " VALUES (?, ?, ?, 0)",
        [(cid, rid, release["change"]) for cid in chunk_ids],
    )
    return max(cur.rowcount, 0)


def release_of(conn: sqlite3.Connection, chunk_id: str) -> tuple[dict[str, Any], bool] | None:
    """The signed release that let `chunk_id` go, and whether it was dropped."""
    row = conn.execute(
        "SELECT r.release, x.dropped FROM released x JOIN chunk_releases r ON r.id = x.release_id"
        " WHERE x.chunk_id = ?",
        (chunk_id,),
    ).fetchone()
    return None if row is None else (json.loads(row[0]), bool(row[1]))


def due(conn: sqlite3.Connection, floor: int, limit: int) -> list[str]:
    """Released chunks not dropped yet whose release's change every keyholder has
    pulled (change <= floor), oldest first: one range of the `released_due` index."""
    rows = conn.execute(
        "SELECT chunk_id FROM released WHERE dropped = 0 AND change <= ? ORDER BY change LIMIT ?",
        (floor, limit),
    )
    return [str(r[0]) for r in rows]


def drop(paths: Paths, ws: str, conn: sqlite3.Connection, chunk_ids: Sequence[str]) -> int:
    """Delete released chunks: their files first, then their rows, and give their bytes
    back to their devices' quotas. Call inside a write transaction; a crash between
    the two leaves rows whose files are gone, which the next drop finishes."""
    if not chunk_ids:
        return 0
    rows = stored(conn, chunk_ids)
    for cid in chunk_ids:
        paths.chunk_path(ws, cid).unlink(missing_ok=True)
    back: dict[str, int] = {}
    for c in rows.values():
        back[c.device_id] = back.get(c.device_id, 0) + cost(c.size)
    conn.executemany("DELETE FROM chunks WHERE chunk_id = ?", [(c,) for c in rows])
    conn.executemany(
        "UPDATE released SET dropped = 1 WHERE chunk_id = ?", [(c,) for c in chunk_ids]
    )
    for device_id, nbytes in sorted(back.items()):
        add_usage(conn, device_id, -nbytes)
    return len(rows)


def all_files(paths: Paths, ws: str) -> list[Path]:
    """Every chunk file of a workspace (for backups and audits, not a route)."""
    folder = paths.chunk_dir(ws)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*/*") if p.is_file() and not p.name.startswith("."))


def listed(conn: sqlite3.Connection) -> list[str]:
    """Every chunk id the database holds a row for (for backups, not a route)."""
    return [str(r[0]) for r in conn.execute("SELECT chunk_id FROM chunks ORDER BY chunk_id")]


def backup_files(paths: Paths, ws: str, backup_db: Path, out_dir: Path) -> tuple[int, int, int]:
    """Copy the chunk files that a workspace's backed-up database lists into `out_dir`
    (the same layout under it). Chunks are named by their hash and never change, so a
    file already in `out_dir` is kept: a second backup into the same place copies only
    what is new. Returns (listed, copied, missing from the live disk)."""
    conn = sqlite3.connect(f"file:{backup_db}?mode=ro", uri=True)
    try:
        ids = listed(conn) if _has_chunks(conn) else []
    finally:
        conn.close()
    target = Paths(out_dir)
    copied = missing = 0
    for cid in ids:
        dest = target.chunk_path(ws, cid)
        if dest.exists():
            continue
        data = read_file(paths.chunk_path(ws, cid))
        if data is None:
            missing += 1  # dropped since the snapshot, or lost: `missing` asks for it again
            continue
        write_file(dest, data)
        copied += 1
    return len(ids), copied, missing


def _has_chunks(conn: sqlite3.Connection) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'chunks'")
    return row.fetchone() is not None
