"""Bundles and cells: what the push judges against, what it writes, what a pull reads.

Plain sqlite3 here (no sqlite-utils): this is the hot path. Callers hold the write
transaction (`db.write`) around `lookup` … `insert` so that what was judged is
what gets written.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from protocol.merge import CellMeta, Register, RegisterKey
from protocol.model import Bundle

_CHUNK = 500  # bound on SQL parameters per statement


@dataclass(frozen=True, slots=True)
class Stored:
    """What the push needs to know of a stored bundle."""

    change: int
    bundle_id: str
    device_id: str
    seq: int
    prev: str
    hash: str
    sig: str


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def _marks(n: int) -> str:
    return ",".join("?" * n)


_STORED = "SELECT change, bundle_id, device_id, seq, prev, hash, sig FROM bundles"


def by_ids(conn: sqlite3.Connection, bundle_ids: Sequence[str]) -> dict[str, Stored]:
    out: dict[str, Stored] = {}
    for part in _chunks(bundle_ids):
        sql = f"{_STORED} WHERE bundle_id IN ({_marks(len(part))})"
        for row in conn.execute(sql, part):
            out[row[1]] = Stored(*row)
    return out


def by_device_seqs(
    conn: sqlite3.Connection, device_id: str, seqs: Sequence[int]
) -> dict[tuple[str, int], Stored]:
    out: dict[tuple[str, int], Stored] = {}
    for part in _chunks(seqs):
        sql = f"{_STORED} WHERE device_id = ? AND seq IN ({_marks(len(part))})"
        for row in conn.execute(sql, [device_id, *part]):
            out[(row[2], row[3])] = Stored(*row)
    return out


def next_change(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT max(change) FROM bundles").fetchone()
    return (row[0] or 0) + 1


def last_change(conn: sqlite3.Connection) -> int:
    return next_change(conn) - 1


def registers(
    conn: sqlite3.Connection, record_ids: Sequence[str]
) -> tuple[dict[RegisterKey, Register], dict[RegisterKey, set[str]]]:
    """The stored registers of these records, and the ids of their cells flagged as heads.

    The digest is left empty: a cell id is a hash over the cell's clear fields and
    ciphertext, checked by `verify_bundle` before anything is stored, so one id
    cannot carry two contents and the id itself identifies the content.
    """
    cells: dict[RegisterKey, dict[str, CellMeta]] = {}
    flagged: dict[RegisterKey, set[str]] = {}
    for part in _chunks(record_ids):
        sql = (
            "SELECT c.record_id, c.field_tag, c.cell_id, c.hlc, b.device_id, c.supersedes,"  # noqa: S608
            " c.is_head FROM cells c JOIN bundles b ON b.change = c.bundle_change"
            f" WHERE c.record_id IN ({_marks(len(part))})"
        )
        for rid, tag, cid, hlc, dev, sup, is_head in conn.execute(sql, part):
            meta = CellMeta(rid, tag, cid, hlc, dev, tuple(json.loads(sup)) if sup != "[]" else ())
            cells.setdefault((rid, tag), {})[cid] = meta
            if is_head:
                flagged.setdefault((rid, tag), set()).add(cid)
    out: dict[RegisterKey, Register] = {}
    for key, members in cells.items():
        superseded = frozenset(s for c in members.values() for s in c.supersedes)
        heads = sorted(
            (c for c in members.values() if c.cell_id not in superseded),
            key=CellMeta.order,
            reverse=True,
        )
        out[key] = Register(members, superseded, tuple(heads))
    return out, flagged


def insert(
    conn: sqlite3.Connection,
    accepted: Sequence[tuple[int, Bundle, str]],
    heads: set[str],
    unheaded: Iterable[tuple[RegisterKey, str]],
) -> None:
    """Write accepted bundles `(change, bundle, hash)` and their cells, then clear the
    head flag of each `(register, cell_id)` in `unheaded`."""
    conn.executemany(
        "INSERT INTO bundles (change, bundle_id, device_id, seq, prev, epoch, key_epoch,"
        " key_commit, sealed_key, sig, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                change,
                b.bundle_id,
                b.device_id,
                b.seq,
                b.prev,
                b.epoch,
                b.key_epoch,
                b.key_commit,
                b.sealed_key,
                b.sig,
                h,
            )
            for change, b, h in accepted
        ],
    )
    conn.executemany(
        "INSERT INTO cells (bundle_change, idx, cell_id, record_id, field_tag, hlc, supersedes,"
        " ct, is_head) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                change,
                i,
                c.cell_id,
                c.record_id,
                c.field_tag,
                c.hlc,
                json.dumps(list(c.supersedes), separators=(",", ":")) if c.supersedes else "[]",
                c.ct,
                1 if c.cell_id in heads else 0,
            )
            for change, b, _ in accepted
            for i, c in enumerate(b.cells)
        ],
    )
    conn.executemany(
        "UPDATE cells SET is_head = 0 WHERE record_id = ? AND field_tag = ? AND cell_id = ?",
        [(rid, tag, cid) for (rid, tag), cid in unheaded],
    )


_BUNDLE_COLS = (
    "change, bundle_id, device_id, seq, prev, epoch, key_epoch, key_commit, sealed_key, sig"
)


def changes(conn: sqlite3.Connection, workspace: str, since: int, limit: int) -> tuple[str, int]:
    """Bundles with change > since, at most `limit`: their JSON array, and the last change.

    Two range scans, one on each clustered key, so the cost follows the page, not
    the database. Call inside `db.read` so both queries see the same commit.

    The JSON is assembled from the stored text rather than encoded from dicts (a
    third of a page's time): every stored string is base64url that passed the
    wire schema, so nothing needs escaping, and `supersedes` is stored as JSON.
    """
    rows = conn.execute(
        f"SELECT {_BUNDLE_COLS} FROM bundles WHERE change > ? ORDER BY change LIMIT ?",  # noqa: S608
        (since, limit),
    ).fetchall()
    if not rows:
        return "[]", since
    cells: dict[int, list[str]] = {row[0]: [] for row in rows}
    cur = conn.execute(
        "SELECT bundle_change, cell_id, record_id, field_tag, hlc, supersedes, ct FROM cells"
        " WHERE bundle_change > ? AND bundle_change <= ? ORDER BY bundle_change, idx",
        (since, rows[-1][0]),
    )
    for change, cid, rid, tag, hlc, sup, ct in cur:
        cells[change].append(
            f'{{"record_id":"{rid}","field_tag":"{tag}","cell_id":"{cid}","hlc":{hlc},'
            f'"supersedes":{sup},"ct":"{ct}"}}'
        )
    parts = [
        f'{{"workspace":"{workspace}","bundle_id":"{bid}","device_id":"{dev}","seq":{seq},'
        f'"prev":"{prev}","epoch":{epoch},"key_commit":"{commit}","key_epoch":{key_epoch},'
        f'"sealed_key":"{sealed}","sig":"{sig}","cells":[{",".join(cells[change])}],'
        f'"change":{change}}}'
        for change, bid, dev, seq, prev, epoch, key_epoch, commit, sealed, sig in rows
    ]
    return "[" + ",".join(parts) + "]", rows[-1][0]


def pending_rekey(
    conn: sqlite3.Connection, current_epoch: int, limit: int, after: int = 0
) -> tuple[list[tuple[str, int, str, str]], int]:
    """Bundles whose data key is sealed to an older epoch, oldest first from change
    `after` (exclusive), and the count of all such bundles."""
    rows = conn.execute(
        "SELECT bundle_id, key_epoch, sealed_key, key_commit FROM bundles"
        " WHERE key_epoch < ? AND change > ? ORDER BY change LIMIT ?",
        (current_epoch, after, limit),
    ).fetchall()
    (remaining,) = conn.execute(
        "SELECT count(*) FROM bundles WHERE key_epoch < ?", (current_epoch,)
    ).fetchone()
    return rows, remaining


def change_of(conn: sqlite3.Connection, bundle_id: str) -> int | None:
    row = conn.execute("SELECT change FROM bundles WHERE bundle_id = ?", (bundle_id,)).fetchone()
    return None if row is None else int(row[0])


def key_epochs(conn: sqlite3.Connection, bundle_ids: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in _chunks(bundle_ids):
        sql = f"SELECT bundle_id, key_epoch FROM bundles WHERE bundle_id IN ({_marks(len(part))})"  # noqa: S608
        out.update(conn.execute(sql, part).fetchall())
    return out


def swap_sealed_keys(conn: sqlite3.Connection, items: Sequence[tuple[str, int, str]]) -> int:
    """Set `(bundle_id, key_epoch, sealed_key)`; cells and signatures stay untouched."""
    conn.executemany(
        "UPDATE bundles SET key_epoch = ?, sealed_key = ? WHERE bundle_id = ?",
        [(epoch, sealed, bid) for bid, epoch, sealed in items],
    )
    return len(items)


def register_heads(conn: sqlite3.Connection) -> dict[RegisterKey, list[str]]:
    """Every register's flagged heads, winner first: for tests and audits, not a route."""
    out: dict[RegisterKey, list[tuple[tuple[int, str, str], str]]] = {}
    rows = conn.execute(
        "SELECT c.record_id, c.field_tag, c.cell_id, c.hlc, b.device_id FROM cells c"
        " JOIN bundles b ON b.change = c.bundle_change WHERE c.is_head = 1"
    )
    for rid, tag, cid, hlc, dev in rows:
        out.setdefault((rid, tag), []).append(((hlc, dev, cid), cid))
    return {k: [cid for _, cid in sorted(v, reverse=True)] for k, v in out.items()}
