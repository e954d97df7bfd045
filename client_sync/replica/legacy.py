"""Migrate a replica of the sealed-file format (`replica.sealed`) on first open.

Until this format, a replica was one serialized SQLite database sealed with
ChaCha20-Poly1305 under the vault's `replica_key` (`FSBLOB1`, `vault.seal_blob`),
read whole into memory and written back whole by every command. On first open the
new code opens it in memory, builds `replica.db` beside it under a temporary name
(the same key), renames it into place and only then deletes the old file, so a
crash at any point leaves one complete replica: the old one (the migration runs
again) or the new one (a stale old file is deleted on the next open).

The bundles, the cursor and the per-bundle problems are copied as they were; the
cells are merged again with the current merge (the same rules the old code used,
now with the role-scoped supersession of the key log) and every derived index is
built from them; chain problems are computed afresh.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from ..vault import fsync_dir, open_blob
from . import chains
from .core import Replica
from .opening import Opened

LEGACY_FILE = "replica.sealed"
_BATCH = 5000


def migrate(legacy: Path, target: Path, key: bytes, workspace: str, keyholders: set[str]) -> None:
    """Build `target` from the sealed replica `legacy`, then delete `legacy`."""
    if target.exists():
        legacy.unlink()  # the migration finished; only the deletion was cut off
        fsync_dir(target.parent)
        return
    old = sqlite3.connect(":memory:")
    old.deserialize(open_blob(key, workspace.encode("ascii"), legacy.read_bytes(), "replica"))
    building = target.with_name(target.name + ".migrating")
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(building) + suffix).unlink(missing_ok=True)
    new = Replica(building, key)
    try:
        _copy(old, new, keyholders)
    finally:
        new.close()
        old.close()
    os.replace(building, target)
    fsync_dir(target.parent)
    legacy.unlink()
    fsync_dir(target.parent)


def _copy(old: sqlite3.Connection, new: Replica, keyholders: set[str]) -> None:
    db = new.db
    new.begin()
    try:
        bundles = old.execute(
            "SELECT bundle_id, device_id, seq, prev, hash, change, ok FROM bundles"
        ).fetchall()
        db.executemany("INSERT INTO bundles VALUES (?, ?, ?, ?, ?, ?, ?)", bundles)
        db.executemany(
            "INSERT INTO problems SELECT ?, ?, ?",
            old.execute(
                "SELECT key, device_id, message FROM problems WHERE key NOT LIKE 'chain:%'"
            ).fetchall(),
        )
        for key, value in old.execute("SELECT key, value FROM meta"):
            if key == "cursor" or key.startswith("dirty:"):
                db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
        problems = chains.rebuild(db)
        for dev in {d for (d,) in old.execute("SELECT DISTINCT device_id FROM bundles")}:
            problems += [
                (f"chain:{dev}:{i:06d}", dev, m) for i, m in enumerate(chains.gaps(db, dev))
            ]
        db.executemany("INSERT OR REPLACE INTO problems VALUES (?, ?, ?)", problems)
        rows = old.execute(
            "SELECT record_id, field_tag, cell_id, hlc, supersedes, device_id, bundle_id,"
            " record_type, field, value FROM cells ORDER BY hlc, cell_id"
        )
        while batch := rows.fetchmany(_BATCH):
            opened = [
                Opened.of(rid, tag, cid, hlc, tuple(json.loads(sup)), dev, bid, rtype, fname,
                          json.loads(value))
                for rid, tag, cid, hlc, sup, dev, bid, rtype, fname, value in batch
            ]  # fmt: skip
            # The old replica merged these already: unbounded (a register it let grow
            # past the bound is kept, not refused now).
            new.merge_opened(opened, keyholders.__contains__, max_heads=None)
        db.execute("INSERT INTO meta VALUES ('count:bundles', ?)", (len(bundles),))
        new.save()
    except BaseException:
        new.close()
        raise
