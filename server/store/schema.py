"""Table definitions. Nothing here but ciphertext, public keys and pseudonyms.

A workspace database holds:
- `events`: the key log, each event as verified canonical JSON, with its hash;
- `bundles`: one row per accepted bundle; `change` (the rowid) is its change
  number, contiguous in commit order because writes are serialised; `size` is
  the bytes it takes in a changes page (for pages bounded in bytes, and quotas);
- `cells`: one row per cell, clustered by (bundle_change, idx) so a changes page
  is one range scan; `cells_register` finds a register's cells for the merge and
  keeps a cell id unique within its register; `cells_heads` (partial: heads
  only) gives a register's heads without reading its history. There is no index on `cell_id`
  alone: ids are random, so such an index dirties one more page per cell in every
  push (most of a push's WAL volume), and a cell id cannot recur in another
  register anyway, since the record id and field tag are hashed into it;
- `namings`: who named which cell id in a `supersedes` (per register), so that a
  cell arriving after the cell that names it is judged by one index probe;
- `usage`: bytes stored per device, for the quota (kept in the push's
  transaction, so checking a quota reads one row), attachment chunks included;
- `chunks`, `chunk_releases`, `released`: attachment chunks (their bytes are files,
  `server/store/chunks.py`): who uploaded each and its size, the signed releases of
  removed attachments, and which chunks each lets go (`CHUNKS_DDL`).

Request nonces live in a file of their own (`nonces.py`).

Delivery: `meta`, `receipts`, `heads` (`DELIVERY_DDL`, server/store/delivery.py).
"""

from __future__ import annotations

import sqlite3

WORKSPACE_DDL = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    hash TEXT NOT NULL,
    event TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS bundles (
    change INTEGER PRIMARY KEY,
    bundle_id TEXT NOT NULL UNIQUE,
    device_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    prev TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    key_epoch INTEGER NOT NULL,
    key_commit TEXT NOT NULL,
    sealed_key TEXT NOT NULL,
    sig TEXT NOT NULL,
    hash TEXT NOT NULL,
    size INTEGER NOT NULL,
    UNIQUE (device_id, seq)
);
CREATE INDEX IF NOT EXISTS bundles_key_epoch ON bundles (key_epoch, change);
CREATE TABLE IF NOT EXISTS cells (
    bundle_change INTEGER NOT NULL REFERENCES bundles (change),
    idx INTEGER NOT NULL,
    cell_id TEXT NOT NULL,
    record_id TEXT NOT NULL,
    field_tag TEXT NOT NULL,
    hlc INTEGER NOT NULL,
    supersedes TEXT NOT NULL,
    ct TEXT NOT NULL,
    is_head INTEGER NOT NULL,
    PRIMARY KEY (bundle_change, idx)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS cells_register ON cells (record_id, field_tag, cell_id);
CREATE INDEX IF NOT EXISTS cells_heads ON cells (record_id, field_tag) WHERE is_head = 1;
CREATE TABLE IF NOT EXISTS namings (
    record_id TEXT NOT NULL,
    field_tag TEXT NOT NULL,
    cell_id TEXT NOT NULL,
    by_device TEXT NOT NULL,
    PRIMARY KEY (record_id, field_tag, cell_id, by_device)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS usage (
    device_id TEXT PRIMARY KEY,
    bytes INTEGER NOT NULL
) WITHOUT ROWID;
"""

# Delivery: the database's incarnation (a random id, new whenever its data was
# restored or recreated), each keyholder's latest signed receipt per device, and
# each device's latest signed chain head. Also run on files made before them.
DELIVERY_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS receipts (
    device_id TEXT NOT NULL,
    signer TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at INTEGER NOT NULL,
    receipt TEXT NOT NULL,
    PRIMARY KEY (device_id, signer)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS heads (
    device_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    head TEXT NOT NULL
) WITHOUT ROWID;
"""
WORKSPACE_DDL += DELIVERY_DDL

# Attachment chunks. Also run on files made before them (`chunks.ensure`).
CHUNKS_DDL = """
CREATE TABLE IF NOT EXISTS chunks (
    chunk_id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    size INTEGER NOT NULL,
    at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS chunk_releases (
    id INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL,
    change INTEGER NOT NULL,
    release TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS released (
    chunk_id TEXT PRIMARY KEY,
    release_id INTEGER NOT NULL REFERENCES chunk_releases (id),
    change INTEGER NOT NULL,
    dropped INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS released_due ON released (dropped, change);
"""
WORKSPACE_DDL += CHUNKS_DDL

SERVER_DDL = """
CREATE TABLE IF NOT EXISTS codes (
    code_hash TEXT PRIMARY KEY,
    created INTEGER NOT NULL,
    used INTEGER
) WITHOUT ROWID;
"""


def create_workspace_tables(conn: sqlite3.Connection) -> None:
    conn.executescript(WORKSPACE_DDL)


def create_server_tables(conn: sqlite3.Connection) -> None:
    conn.executescript(SERVER_DDL)
