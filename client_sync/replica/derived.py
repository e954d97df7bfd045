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

import bisect
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
BLOCK = 64  # rows of a day's block read whole, per record of the page in it (else by index)
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


@functools.cache
def _lcs_seq() -> Any:
    """rapidfuzz's LCS, imported when a name is first compared (not for `show`)."""
    from rapidfuzz.distance import LCSseq

    return LCSseq


class Name:
    """A folded name to compare with its neighbours' names."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def lcs(self, other: str) -> int:
        """Length of the longest common subsequence, over code points: rapidfuzz's, in C
        (with the bit-parallel algorithm in Python this module ran before, the likely
        duplicates of a first pull cost 35 µs of CPU per record rather than 21)."""
        return int(_lcs_seq().similarity(self.text, other))

    def similar(self, other: str) -> bool:
        """2·LCS / (|a| + |b|) ≥ DUPLICATE_RATIO (the Indel similarity of the two)."""
        total = len(self.text) + len(other)
        if not total or 2 * min(len(self.text), len(other)) < DUPLICATE_RATIO * total:
            return False
        return 2 * self.lcs(other) >= DUPLICATE_RATIO * total


def update_conflicts(
    db: Any, changed: dict[RegisterKey, list[CellMeta]], before: dict[RegisterKey, Any]
) -> None:
    """Set or clear the open-conflict row of each register whose heads changed; `before`:
    the heads of each register when the page was loaded (no row unless there were two)."""
    opened, closed = [], []
    for (rid, tag), heads in changed.items():
        if len(heads) > 1:
            since = sorted(h.hlc for h in heads)[1]
            opened.append((rid, tag, since))
        elif len(before.get((rid, tag), ())) > 1:
            closed.append((rid, tag))
    db.executemany("DELETE FROM open_conflicts WHERE record_id = ? AND field_tag = ?", closed)
    db.executemany("INSERT OR REPLACE INTO open_conflicts VALUES (?, ?, ?)", opened)


Fresh = dict[int, tuple[str, str, list[tuple[Any, ...]]]]


def refresh(db: Any, rids: Iterable[int], fresh: Fresh | None = None) -> None:
    """Rewrite the derived rows of each record (by arrival number) from its heads.

    `fresh`: records created by this page, with their heads (`PageMerge.fresh_heads`):
    nothing of theirs is read back or taken away, since nothing was derived before."""
    ids = sorted(set(rids))
    for i in range(0, len(ids), _CHUNK):
        _refresh_chunk(db, ids[i : i + _CHUNK], fresh or {})


def _refresh_chunk(db: Any, ids: list[int], fresh: Fresh) -> None:
    stored = [n for n in ids if n not in fresh]
    marks = ",".join("?" * len(stored))
    rows = db.execute(
        "SELECT rid, record_id, record_type, deleted, dup_day, dup_name FROM records"  # noqa: S608
        f" WHERE rid IN ({marks})",
        stored,
    ).fetchall()
    heads: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    for row in db.execute(
        "SELECT rid, field_tag, record_type, field, value, hlc, winner, problem"  # noqa: S608
        f" FROM cells WHERE head = 1 AND rid IN ({marks})",
        stored,
    ):
        heads[row[0]].append(row[1:])
    for n in ids:
        if n in fresh:
            record_id, rtype, heads[n] = fresh[n]
            rows.append((n, record_id, rtype, 0, None, None))
    updates, texts, links, dups = [], [], [], []
    for rid_row, record_id, rtype, was_deleted, old_day, old_name in rows:
        own: dict[str, list[tuple[Any, int, int]]] = defaultdict(list)
        registers: dict[str, int] = defaultdict(int)
        invalid = 0
        words = [record_id.lower()]
        for tag, ctype, field, value_json, hlc, winner, why in heads[rid_row]:
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
        texts.append((rid_row, "\n".join([words[0], *sorted(words[1:])])))  # in any order read
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
    db.executemany(
        "DELETE FROM search WHERE rowid = ?", [(r[0],) for r in rows if r[0] not in fresh]
    )
    db.executemany("INSERT INTO search (rowid, text) VALUES (?, ?)", texts)
    db.executemany(
        "DELETE FROM links WHERE from_id = ?", [(r[1],) for r in rows if r[0] not in fresh]
    )
    db.executemany("INSERT OR IGNORE INTO links VALUES (?, ?, ?)", links)
    pair_duplicates(db, dups)


def pair_duplicates(db: Any, dups: list[tuple[str, str, Any, Any, Any, bool]]) -> None:
    """Take back the pairs of records that left or moved in their block, then pair each
    record of `dups` (record id, type, day, name, reversed name, was in a block) with
    its similar neighbours. A day's block is read once for all its records here when it
    holds up to `BLOCK` records for each of them (so the read costs what the records
    touched do); a larger one is searched record by record, by index."""
    gone = [record_id for record_id, *_, paired in dups if paired]
    for record_id in gone:
        partners = [r[0] for r in db.execute("SELECT b FROM duplicates WHERE a = ?", (record_id,))]
        db.executemany(
            "DELETE FROM duplicates WHERE a = ? AND b = ?",
            [p for other in partners for p in ((record_id, other), (other, record_id))],
        )
    blocks: dict[tuple[str, str], list[tuple[str, str, str]]] = defaultdict(list)
    for record_id, rtype, day, name, rname, _ in dups:
        if day is not None and name is not None and rname is not None:
            blocks[(rtype, day)].append((record_id, name, rname))
    found: set[tuple[str, str]] = set()
    judged: set[tuple[str, str]] = set()
    for (rtype, day), members in blocks.items():
        block = db.execute(
            "SELECT dup_name, record_id, dup_rname FROM records"
            " WHERE record_type = ? AND dup_day = ? LIMIT ?",
            (rtype, day, BLOCK * len(members) + 1),
        ).fetchall()
        orders = [_ranked(block, 0), _ranked(block, 2)]  # by name, by reversed name
        for record_id, name, rname in members:
            if len(block) > BLOCK * len(members):
                params = [
                    x
                    for key in (name, name, rname, rname)
                    for x in (rtype, day, key, record_id, NEIGHBOURS)
                ]
                near = db.execute(_NEIGHBOURS, params).fetchall()
            else:
                near = _near(orders, record_id, (name, rname))
            mine = Name(name)
            for other, other_name in dict(near).items():  # a neighbour in both orders: once
                pair = (record_id, other) if record_id < other else (other, record_id)
                if pair not in judged:  # two records of the page, each the other's neighbour
                    judged.add(pair)
                    if mine.similar(other_name):
                        found.add(pair)
    db.executemany(
        "INSERT OR IGNORE INTO duplicates VALUES (?, ?)",
        sorted({p for a, b in found for p in ((a, b), (b, a))}),
    )


Ranked = tuple[list[tuple[str, str, str]], list[str]]


def _ranked(block: list[tuple[str, str, str]], at: int) -> Ranked:
    """A block's rows (name, record id, reversed name) in the order of its index on column
    `at` (equal keys by record id, the index's next column), and those keys."""
    ranked = sorted(block, key=lambda r: (r[at], r[1]))
    return ranked, [r[at] for r in ranked]


def _near(orders: list[Ranked], record_id: str, keys: tuple[str, str]) -> list[tuple[str, str]]:
    """(record id, name) of the neighbours `_NEIGHBOURS` reads, from a block held whole:
    in each order, the `NEIGHBOURS` before the key (the index read backwards) and from
    it on, the record itself left out."""
    out: list[tuple[str, str]] = []
    for (ranked, ordered), key in zip(orders, keys, strict=True):
        i = bisect.bisect_left(ordered, key)
        before = ranked[max(0, i - NEIGHBOURS) : i][::-1]
        after = [r for r in ranked[i : i + NEIGHBOURS + 1] if r[1] != record_id][:NEIGHBOURS]
        out += [(r[1], r[0]) for r in before + after]
    return out


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
