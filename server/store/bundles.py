"""Bundles and cells: what the push judges against, what it writes, what a pull reads.

Plain sqlite3 here (no sqlite-utils): this is the hot path. Callers hold the write
transaction (`db.write`) around `lookup` … `insert` so that what was judged is
what gets written.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from protocol.merge import CellMeta, Namer, RegisterKey, View, keys_and_ids
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


_TRIPLES = 300  # (record, field, id) triples per statement: 900 parameters


def _wanted(triples: Sequence[tuple[str, str, str]]) -> str:
    return "WITH want(r, f, c) AS (VALUES " + ",".join(["(?,?,?)"] * len(triples)) + ")"


def view(
    conn: sqlite3.Connection, cells: Sequence[CellMeta], keyholder: Callable[[str], bool]
) -> View:
    """What the merge needs to judge `cells`, read through indexes only: the current
    heads of their registers (a partial index on heads, at most MAX_HEADS each), the
    stored cells carrying their ids, and the stored namings of those ids. Its cost
    follows the batch, not the registers: a register's history is never read.

    `keyholder(device_id)` tells whether a device's role is coordinator or admin.
    """
    keys, ids = keys_and_ids(cells)
    out = View()
    records = sorted({rid for rid, _ in keys})
    for part in _chunks(records):
        sql = (
            "SELECT c.record_id, c.field_tag, c.cell_id, c.hlc, b.device_id, c.supersedes"  # noqa: S608
            " FROM cells c JOIN bundles b ON b.change = c.bundle_change"
            f" WHERE c.is_head = 1 AND c.record_id IN ({_marks(len(part))})"
        )
        for row in conn.execute(sql, part):
            if (row[0], row[1]) in keys:
                out.heads.setdefault((row[0], row[1]), []).append(_meta(row, keyholder))
    triples = sorted(ids)
    for i in range(0, len(triples), _TRIPLES):
        part = triples[i : i + _TRIPLES]
        params = [x for t in part for x in t]
        known = (
            f"{_wanted(part)} SELECT c.record_id, c.field_tag, c.cell_id, c.hlc, b.device_id,"  # noqa: S608
            " c.supersedes FROM want CROSS JOIN cells c ON c.record_id = want.r"
            " AND c.field_tag = want.f AND c.cell_id = want.c"
            " JOIN bundles b ON b.change = c.bundle_change"
        )
        for row in conn.execute(known, params):
            out.known[(row[0], row[1], row[2])] = _meta(row, keyholder)
        named = (
            f"{_wanted(part)} SELECT n.record_id, n.field_tag, n.cell_id, n.by_device"  # noqa: S608
            " FROM want CROSS JOIN namings n ON n.record_id = want.r"
            " AND n.field_tag = want.f AND n.cell_id = want.c"
        )
        for rid, tag, cid, dev in conn.execute(named, params):
            out.named.setdefault((rid, tag, cid), []).append(Namer(dev, keyholder(dev)))
    return out


def _meta(row: Any, keyholder: Callable[[str], bool]) -> CellMeta:
    rid, tag, cid, hlc, dev, sup = row
    return CellMeta(
        rid, tag, cid, hlc, dev, tuple(json.loads(sup)) if sup != "[]" else (), "", keyholder(dev)
    )


def devices_of(
    conn: sqlite3.Connection, triples: Sequence[tuple[str, str, str]]
) -> dict[tuple[str, str, str], str]:
    """The writing device of each stored cell among `triples` (record, field, id)."""
    out: dict[tuple[str, str, str], str] = {}
    for i in range(0, len(triples), _TRIPLES):
        part = triples[i : i + _TRIPLES]
        sql = (
            f"{_wanted(part)} SELECT c.record_id, c.field_tag, c.cell_id, b.device_id"  # noqa: S608
            " FROM want CROSS JOIN cells c ON c.record_id = want.r"
            " AND c.field_tag = want.f AND c.cell_id = want.c"
            " JOIN bundles b ON b.change = c.bundle_change"
        )
        for rid, tag, cid, dev in conn.execute(sql, [x for t in part for x in t]):
            out[(rid, tag, cid)] = dev
    return out


def _digits(n: int) -> int:
    return len(str(n))


_CELL_FIXED = len('{"record_id":"","field_tag":"","cell_id":"","hlc":,"supersedes":,"ct":""}') + (
    22 + 22 + 43
)
_BUNDLE_FIXED = len(
    '{"workspace":"","bundle_id":"","device_id":"","seq":,"prev":"","epoch":,"key_commit":"",'
    '"key_epoch":,"sealed_key":"","sig":"","cells":[],"change":}'
) + (22 + 22 + 22 + 43 + 43 + 86)


def served_size(change: int, b: Bundle) -> int:
    """The bytes bundle `b` takes in a changes page (`changes` below builds exactly
    this text), counted without building it."""
    n = len(b.cells)
    size = _BUNDLE_FIXED + len(b.sealed_key) + max(n - 1, 0)
    size += _digits(b.seq) + _digits(b.epoch) + _digits(b.key_epoch) + _digits(change)
    for c in b.cells:
        k = len(c.supersedes)
        size += _CELL_FIXED + _digits(c.hlc) + len(c.ct) + (1 + 46 * k if k else 2)
    return size


def insert(
    conn: sqlite3.Connection,
    accepted: Sequence[tuple[int, Bundle, str, int]],
    heads: set[str],
    unheaded: Iterable[tuple[RegisterKey, str]],
    namings: Iterable[tuple[tuple[str, str, str], str]],
) -> None:
    """Write accepted bundles `(change, bundle, hash, size)` and their cells, clear the
    head flag of each `(register, cell_id)` in `unheaded`, and remember each naming
    `((record, field, named id), by_device)`."""
    conn.executemany(
        "INSERT INTO bundles (change, bundle_id, device_id, seq, prev, epoch, key_epoch,"
        " key_commit, sealed_key, sig, hash, size) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                size,
            )
            for change, b, h, size in accepted
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
            for change, b, _, _ in accepted
            for i, c in enumerate(b.cells)
        ],
    )
    conn.executemany(
        "UPDATE cells SET is_head = 0 WHERE record_id = ? AND field_tag = ? AND cell_id = ?",
        [(rid, tag, cid) for (rid, tag), cid in unheaded],
    )
    conn.executemany(
        "INSERT OR IGNORE INTO namings (record_id, field_tag, cell_id, by_device)"
        " VALUES (?, ?, ?, ?)",
        [(rid, tag, cid, dev) for (rid, tag, cid), dev in namings],
    )


_BUNDLE_COLS = (
    "change, bundle_id, device_id, seq, prev, epoch, key_epoch, key_commit, sealed_key, sig"
)


# What a page adds around its bundles (`{"bundles":[…],"next":N,"done":false}`), and
# per bundle: a comma, and room for a re-key to lengthen `key_epoch`.
PAGE_OVERHEAD = 64
_PER_BUNDLE_SLACK = 1 + 9


def page_end(conn: sqlite3.Connection, since: int, limit: int, budget: int) -> int | None:
    """The last change of the page after `since`: at most `limit` bundles, and as many as
    fit in `budget` bytes (always at least one). None when there is nothing after
    `since`. Reads the stored sizes only, never a bundle's cells."""
    total = PAGE_OVERHEAD
    last = None
    for change, size in conn.execute(
        "SELECT change, size FROM bundles WHERE change > ? ORDER BY change LIMIT ?",
        (since, limit),
    ):
        total += size + _PER_BUNDLE_SLACK
        if last is not None and total > budget:
            break
        last = change
    return last


def changes(conn: sqlite3.Connection, workspace: str, since: int, last: int) -> str:
    """Bundles with since < change <= last (see `page_end`), as a JSON array.

    Two range scans, one on each clustered key, so the cost follows the page, not
    the database. Call inside `db.read` so both queries see the same commit.

    The JSON is assembled from the stored text rather than encoded from dicts (a
    third of a page's time): every stored string is base64url that passed the
    wire schema, so nothing needs escaping, and `supersedes` is stored as JSON.
    `served_size` counts exactly this text.
    """
    rows = conn.execute(
        f"SELECT {_BUNDLE_COLS} FROM bundles WHERE change > ? AND change <= ? ORDER BY change",  # noqa: S608
        (since, last),
    ).fetchall()
    if not rows:
        return "[]"
    cells: dict[int, list[str]] = {row[0]: [] for row in rows}
    cur = conn.execute(
        "SELECT bundle_change, cell_id, record_id, field_tag, hlc, supersedes, ct FROM cells"
        " WHERE bundle_change > ? AND bundle_change <= ? ORDER BY bundle_change, idx",
        (since, last),
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
    return "[" + ",".join(parts) + "]"


def used_bytes(conn: sqlite3.Connection, device_id: str) -> int:
    """Bytes this device has stored (one row: the push keeps it current)."""
    row = conn.execute("SELECT bytes FROM usage WHERE device_id = ?", (device_id,)).fetchone()
    return 0 if row is None else int(row[0])


def add_usage(conn: sqlite3.Connection, device_id: str, nbytes: int) -> None:
    """Count `nbytes` more against `device_id`, inside the transaction that stores them.
    Anything a device stores (bundles now, attachment chunks later) is counted here."""
    conn.execute(
        "INSERT INTO usage (device_id, bytes) VALUES (?, ?)"
        " ON CONFLICT (device_id) DO UPDATE SET bytes = bytes + excluded.bytes",
        (device_id, nbytes),
    )


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
