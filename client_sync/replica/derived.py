"""What the read layer filters and sorts on, kept up to date as cells arrive.

After each page's merge, every record it touched is looked at again from its heads
(the partial index on heads: a record's open values, never its history), and its
row in `records`, its full-text row, its links and its likely duplicates are
rewritten; every register whose heads changed gets its row in `open_conflicts`
set or cleared. The cost is that of the records touched, not of the replica.

Deletion rule (docs/PROTOCOL.md "Deletion"): a record is deleted when the winner of
its `_deleted` register is `true` and no head of any other field has a greater HLC.

Likely duplicates: two records of one type, both not deleted, with the same day in
the type's date field and names (the type's name field, folded) whose longest common
subsequence covers at least 80 % of their combined length (2·LCS / (|a| + |b|) ≥ 0.8,
the Indel similarity; "Daulet Fakeuly" and "Daulet Fake-uly": 0.97). Blocking keeps it incremental:
a record whose day or name changes is compared only with its neighbours in its
day's block, the `NEIGHBOURS` records before and after it in name order and in
reversed-name order (so a difference at either end of a name is caught); within a
block of up to that many records, that is every pair. Pairs are pointed out, never
merged: a coordinator merges by writing.
"""

from __future__ import annotations

import functools
import json
import re
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from protocol.merge import CellMeta, RegisterKey
from schemas.records import DATE_FIELD, DELETED_FIELD, NAME_FIELD, RECORD_TYPES, RecordRef

from .values import fold, searchable

DUPLICATE_RATIO = 0.8
NEIGHBOURS = 4
_CHUNK = 500
_RECORD_ID = re.compile(r"^[A-Za-z0-9_-]{22}\Z")


@functools.lru_cache(maxsize=16)
def link_fields(record_type: str) -> frozenset[str]:
    """Fields of a type that name another record (a detention's `picket_id`)."""
    cls = RECORD_TYPES.get(record_type)
    if cls is None:
        return frozenset()
    return frozenset(n for n, f in cls().fields.items() if isinstance(f, RecordRef))


def is_deleted(own: dict[str, list[tuple[Any, int]]]) -> bool:
    """`own`: field -> [(value, hlc)] of the record's own type, winner first."""
    tomb = own.get(DELETED_FIELD)
    if not tomb or tomb[0][0] is not True:
        return False
    return not any(
        hlc > tomb[0][1] for name, hs in own.items() if name != DELETED_FIELD for _, hlc in hs
    )


class Name:
    """A folded name ready to be compared with many others (its bit masks built once)."""

    __slots__ = ("masks", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.masks: dict[str, int] = {}
        for i, ch in enumerate(text):
            self.masks[ch] = self.masks.get(ch, 0) | (1 << i)

    def lcs(self, other: str) -> int:
        """Length of the longest common subsequence, bit-parallel (Hyyrö 2004): one
        addition and a few masks per character of `other`, on Python integers."""
        n = len(self.text)
        full = (1 << n) - 1
        v = full
        for ch in other:
            u = v & self.masks.get(ch, 0)
            v = ((v + u) | (v - u)) & full
        return n - v.bit_count()

    def similar(self, other: str) -> bool:
        """2·LCS / (|a| + |b|) ≥ DUPLICATE_RATIO (the Indel similarity of the two)."""
        total = len(self.text) + len(other)
        if not total or 2 * min(len(self.text), len(other)) < DUPLICATE_RATIO * total:
            return False
        return 2 * self.lcs(other) >= DUPLICATE_RATIO * total


def ensure_records(db: Any, accepted: Iterable[Any]) -> None:
    """A `records` row for every record of `accepted` cells; its type is that of its
    earliest cell (cells of another type under its id are a device's error, shown as such)."""
    firsts: dict[str, tuple[str, int]] = {}
    for c in accepted:
        first = firsts.get(c.record_id)
        if first is None or c.hlc < first[1]:
            firsts[c.record_id] = (c.record_type, c.hlc)
    db.executemany(
        "INSERT INTO records (record_id, record_type, first_hlc) VALUES (?, ?, ?)"
        " ON CONFLICT (record_id) DO UPDATE SET"
        " record_type = CASE WHEN excluded.first_hlc < first_hlc"
        " THEN excluded.record_type ELSE record_type END,"
        " first_hlc = min(first_hlc, excluded.first_hlc)",
        [(rid, rtype, hlc) for rid, (rtype, hlc) in firsts.items()],
    )


def update_conflicts(db: Any, changed: dict[RegisterKey, list[CellMeta]]) -> None:
    """Set or clear the open-conflict row of each register whose heads changed."""
    opened, closed = [], []
    for (rid, tag), heads in changed.items():
        if len(heads) > 1:
            since = sorted(h.hlc for h in heads)[1]
            opened.append((rid, tag, since))
        else:
            closed.append((rid, tag))
    db.executemany("DELETE FROM open_conflicts WHERE record_id = ? AND field_tag = ?", closed)
    db.executemany("INSERT OR REPLACE INTO open_conflicts VALUES (?, ?, ?)", opened)


def refresh(db: Any, record_ids: Iterable[str]) -> None:
    """Rewrite the derived rows of each record in `record_ids` from its heads."""
    ids = sorted(set(record_ids))
    for i in range(0, len(ids), _CHUNK):
        _refresh_chunk(db, ids[i : i + _CHUNK])


def _refresh_chunk(db: Any, ids: list[str]) -> None:
    marks = ",".join("?" * len(ids))
    rows = db.execute(
        "SELECT rid, record_id, record_type, deleted, dup_day, dup_name FROM records"  # noqa: S608
        f" WHERE record_id IN ({marks})",
        ids,
    ).fetchall()
    heads: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for row in db.execute(
        "SELECT record_id, field_tag, record_type, field, value, hlc, winner, problem"  # noqa: S608
        " FROM cells"
        f" WHERE head = 1 AND record_id IN ({marks})",
        ids,
    ):
        heads[row[0]].append(row[1:])
    updates, texts, links, dups = [], [], [], []
    for rid_row, record_id, rtype, was_deleted, old_day, old_name in rows:
        own: dict[str, list[tuple[Any, int, int]]] = defaultdict(list)
        registers: dict[str, int] = defaultdict(int)
        invalid = 0
        words = [record_id.lower()]
        for tag, ctype, field, value_json, hlc, winner, why in heads[record_id]:
            value = json.loads(value_json)
            registers[tag] += 1
            if ctype != rtype or why is not None:
                invalid += 1
            if ctype == rtype:
                own[field].append((value, hlc, winner))
            if field != DELETED_FIELD:
                words.append(fold(searchable(field, value)))
        ordered = {
            f: [(v, h) for v, h, _ in sorted(hs, key=lambda x: (x[2], x[1]), reverse=True)]
            for f, hs in own.items()
        }
        winners = {f: hs[0][0] for f, hs in ordered.items()}
        deleted = is_deleted(ordered)
        conflicts = sum(1 for n in registers.values() if n > 1)
        day = name = rname = None
        date, named = winners.get(DATE_FIELD.get(rtype, "")), winners.get(NAME_FIELD.get(rtype, ""))
        if not deleted and isinstance(date, str) and date and isinstance(named, str):
            if fold(named):
                day, name = date[:10], fold(named)
                rname = name[::-1]
        updates.append((int(deleted), conflicts, invalid, day, name, rname, rid_row))
        texts.append((rid_row, "\n".join(words)))
        for field in link_fields(rtype):
            target = winners.get(field)
            if isinstance(target, str) and _RECORD_ID.match(target):
                links.append((target, record_id, field))
        if (day, name) != (old_day, old_name) or bool(was_deleted) != deleted:
            # Only a record that was in a block before can have pairs to take back.
            dups.append((record_id, rtype, day, name, rname, old_day is not None))
    db.executemany(
        "UPDATE records SET deleted = ?, conflicts = ?, invalid = ?, dup_day = ?, dup_name = ?,"
        " dup_rname = ? WHERE rid = ?",
        updates,
    )
    db.executemany("DELETE FROM search WHERE rowid = ?", [(r,) for r, _ in texts])
    db.executemany("INSERT INTO search (rowid, text) VALUES (?, ?)", texts)
    db.executemany("DELETE FROM links WHERE from_id = ?", [(r,) for r in ids])
    db.executemany("INSERT OR IGNORE INTO links VALUES (?, ?, ?)", links)
    for record_id, rtype, day, name, rname, paired in dups:
        _pair_duplicates(db, record_id, rtype, day, name, rname, paired)


def _pair_duplicates(
    db: Any,
    record_id: str,
    rtype: str,
    day: str | None,
    name: str | None,
    rname: str | None,
    paired: bool,
) -> None:
    partners = []
    if paired:
        partners = [r[0] for r in db.execute("SELECT b FROM duplicates WHERE a = ?", (record_id,))]
    if partners:
        db.executemany(
            "DELETE FROM duplicates WHERE a = ? AND b = ?",
            [p for other in partners for p in ((record_id, other), (other, record_id))],
        )
    if day is None or name is None or rname is None:
        return
    mine = Name(name)
    params = [
        x for key in (name, name, rname, rname) for x in (rtype, day, key, record_id, NEIGHBOURS)
    ]
    found = [
        other for other, other_name in db.execute(_NEIGHBOURS, params) if mine.similar(other_name)
    ]
    if found:
        db.executemany(
            "INSERT OR IGNORE INTO duplicates VALUES (?, ?)",
            [p for other in set(found) for p in ((record_id, other), (other, record_id))],
        )


def _neighbours(column: str, op: str, order: str) -> str:
    return (
        "SELECT * FROM (SELECT record_id, dup_name FROM records WHERE record_type = ?"  # noqa: S608
        f" AND dup_day = ? AND {column} {op} ? AND record_id != ? ORDER BY {column} {order}"
        " LIMIT ?)"
    )


# The block's neighbours of a name, in one statement: before and after it in name
# order and in reversed-name order (each range on its partial index).
_NEIGHBOURS = " UNION ALL ".join(
    _neighbours(column, op, order)
    for column in ("dup_name", "dup_rname")
    for op, order in (("<", "DESC"), (">=", "ASC"))
)
