"""The replica's database: SQLCipher, keyed from the vault, and its schema.

One SQLite file, `replica.db`, encrypted page by page by SQLCipher 4 (AES-256-CBC
and HMAC-SHA512 per page, through the `sqlcipher3` binding; why this library:
docs/REPLICA.md). The key is the vault's random 32-byte `replica_key`, given as a
raw key (`x'…'`), so no key derivation runs on open. The write-ahead log holds
pages encrypted the same way; temporary tables and sorts stay in memory
(`temp_store = MEMORY`), so no plaintext reaches a temporary file. Crash safety is
SQLite's own: WAL with `synchronous = FULL`, a transaction per page of a pull.

This module owns the schema; the other modules of the package own the SQL that
reads and writes each part of it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import CliError

SCHEMA_VERSION = "3"

# Cells and namings (schema 2 keyed them by the random record id: `_from_2`).
CELLS = """
-- Decrypted cells, under their record's arrival number: a new record's cells append
-- to the table and to its heads index, and a record's cells lie together. `head`: no
-- effective naming reaches it; `winner`: the head that wins its register. `sort_key`:
-- the value's order-preserving key; `problem`: why the record schema refuses the
-- value, NULL when it fits (values.py).
CREATE TABLE cells (
    rid INTEGER NOT NULL, field_tag TEXT NOT NULL, cell_id TEXT NOT NULL,
    record_type TEXT NOT NULL, field TEXT NOT NULL, value TEXT NOT NULL,
    hlc INTEGER NOT NULL, device_id TEXT NOT NULL, bundle_id TEXT NOT NULL,
    supersedes TEXT NOT NULL, sort_key TEXT NOT NULL, problem TEXT,
    head INTEGER NOT NULL, winner INTEGER NOT NULL,
    PRIMARY KEY (rid, field_tag, cell_id)
) WITHOUT ROWID;
CREATE INDEX cells_heads ON cells (rid, field_tag) WHERE head = 1;
CREATE INDEX cells_sort ON cells (record_type, field, sort_key, rid) WHERE winner = 1;

-- Who named which cell in a `supersedes`: the merge's view of a late cell (merging.py).
CREATE TABLE namings (
    rid INTEGER NOT NULL, field_tag TEXT NOT NULL, cell_id TEXT NOT NULL,
    by_device TEXT NOT NULL,
    PRIMARY KEY (rid, field_tag, cell_id, by_device)
) WITHOUT ROWID;
"""

SCHEMA = (
    """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;

-- Every bundle seen: ok = 0 when it failed verification or the merge refused it.
CREATE TABLE bundles (
    bundle_id TEXT PRIMARY KEY, device_id TEXT NOT NULL, seq INTEGER NOT NULL,
    prev TEXT NOT NULL, hash TEXT NOT NULL, change INTEGER, ok INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX bundles_chain ON bundles (device_id, seq);

-- Each device's chain as stretches of consecutive, linked bundles (chains.py).
CREATE TABLE runs (
    device_id TEXT NOT NULL, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL,
    first_prev TEXT NOT NULL, last_hash TEXT NOT NULL,
    PRIMARY KEY (device_id, first_seq)
) WITHOUT ROWID;

-- One row per record, with what the read layer filters on, kept as cells arrive
-- (derived.py). `rid`: the record's arrival number in this replica (merging.py), which
-- keys its cells and its row in `search`.
CREATE TABLE records (
    rid INTEGER PRIMARY KEY, record_id TEXT NOT NULL UNIQUE, record_type TEXT NOT NULL,
    first_hlc INTEGER NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,
    conflicts INTEGER NOT NULL DEFAULT 0, invalid INTEGER NOT NULL DEFAULT 0,
    dup_day TEXT, dup_name TEXT, dup_rname TEXT
);
CREATE INDEX records_order ON records (first_hlc, record_id);
CREATE INDEX records_type ON records (record_type, first_hlc, record_id);
-- Likely duplicates' blocks, in name and in reversed-name order: covering indexes, so
-- that a block or a name's neighbours are read from the index alone.
CREATE INDEX records_block ON records (record_type, dup_day, dup_name, record_id)
    WHERE dup_day IS NOT NULL;
CREATE INDEX records_rblock ON records (record_type, dup_day, dup_rname, dup_name, record_id)
    WHERE dup_day IS NOT NULL;

-- Registers with more than one head, and since when (the second-oldest head's HLC).
CREATE TABLE open_conflicts (
    record_id TEXT NOT NULL, field_tag TEXT NOT NULL, since INTEGER NOT NULL,
    PRIMARY KEY (record_id, field_tag)
) WITHOUT ROWID;
CREATE INDEX open_conflicts_age ON open_conflicts (since, record_id, field_tag);

-- Likely duplicates, both directions; links from a record field to another record.
CREATE TABLE duplicates (a TEXT NOT NULL, b TEXT NOT NULL, PRIMARY KEY (a, b)) WITHOUT ROWID;
CREATE TABLE links (
    to_id TEXT NOT NULL, from_id TEXT NOT NULL, field TEXT NOT NULL,
    PRIMARY KEY (to_id, from_id, field)
) WITHOUT ROWID;
CREATE INDEX links_from ON links (from_id);

-- The folded text of every open value of a record, for the full-text filter.
CREATE VIRTUAL TABLE search USING fts5 (text, tokenize = 'trigram');

CREATE TABLE problems (key TEXT PRIMARY KEY, device_id TEXT, message TEXT NOT NULL) WITHOUT ROWID;
"""
    + CELLS
)


def sqlcipher() -> Any:
    """The `sqlcipher3` DB-API module, imported when a replica is opened (it is 20 MB)."""
    from sqlcipher3 import dbapi2

    # Binding a None, the module looks for an adapter and, finding none, raises and
    # clears an AttributeError: ~1 µs a NULL, 4 % of a first pull's merging (a cell's
    # `problem`, a record's blocking keys). With one registered it is a dict lookup.
    dbapi2.register_adapter(type(None), _null)
    return dbapi2


def _null(value: None) -> None:
    return value


def connect(path: Path, key: bytes) -> Any:
    """Open (or create) the encrypted database at `path` with the raw 32-byte `key`."""
    dbapi = sqlcipher()
    new = not path.exists()
    if new:
        # Owner-only from the first byte: SQLite would create it with the umask's mode.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    db = dbapi.connect(str(path), isolation_level=None, check_same_thread=False)
    try:
        db.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
        db.execute("PRAGMA temp_store = MEMORY")
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except dbapi.DatabaseError:
            raise CliError(
                f"the replica {path} is damaged or not this profile's (it does not decrypt)"
            ) from None
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        db.execute("PRAGMA cache_size = -65536")  # 64 MiB of decrypted pages
        row = db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'meta'").fetchone()
        if not row[0]:
            db.execute("BEGIN")
            for statement in _statements(SCHEMA):
                db.execute(statement)
            db.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            db.execute("COMMIT")
        version = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if version is not None and version[0] == "2":
            _from_2(db)
            version = (SCHEMA_VERSION,)
        if version is None or version[0] != SCHEMA_VERSION:
            raise CliError("this replica was written by another fieldsync version")
    except BaseException:
        db.close()
        raise
    return db


def _from_2(db: Any) -> None:
    """Schema 2 to 3, in one transaction: the cells and namings rewritten under their
    records' arrival numbers (every cell's record has its row: the merge writes it), and
    the likely duplicates' block indexes made covering."""
    db.execute("BEGIN IMMEDIATE")
    try:
        for statement in (
            "DROP INDEX cells_heads",
            "DROP INDEX cells_sort",
            "DROP INDEX records_block",
            "DROP INDEX records_rblock",
            *(s for s in _statements(SCHEMA) if "INDEX records_" in s and "block" in s),
            "ALTER TABLE cells RENAME TO cells_2",
            "ALTER TABLE namings RENAME TO namings_2",
            *_statements(CELLS),
        ):
            db.execute(statement)
        moved = db.execute(
            "INSERT INTO cells SELECT r.rid, c.field_tag, c.cell_id, c.record_type, c.field,"
            " c.value, c.hlc, c.device_id, c.bundle_id, c.supersedes, c.sort_key, c.problem,"
            " c.head, c.winner FROM cells_2 c JOIN records r ON r.record_id = c.record_id"
            " ORDER BY r.rid, c.field_tag, c.cell_id"
        ).rowcount
        named = db.execute(
            "INSERT INTO namings SELECT r.rid, n.field_tag, n.cell_id, n.by_device"
            " FROM namings_2 n JOIN records r ON r.record_id = n.record_id"
        ).rowcount
        held = db.execute(
            "SELECT (SELECT count(*) FROM cells_2), (SELECT count(*) FROM namings_2)"
        ).fetchone()
        if (moved, named) != tuple(held):
            raise CliError("the replica could not be upgraded: a cell has no record row")
        db.execute("DROP TABLE cells_2")
        db.execute("DROP TABLE namings_2")
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (SCHEMA_VERSION,))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _statements(script: str) -> list[str]:
    """The statements of `script`, for running them inside one transaction."""
    out, current = [], ""
    for line in script.splitlines():
        if line.startswith("--") or not line.strip():
            continue
        current += line + "\n"
        if line.rstrip().endswith(";"):
            out.append(current)
            current = ""
    return out
