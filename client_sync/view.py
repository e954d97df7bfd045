"""The read layer over a coordinator's replica: what the command line and the workbench show.

Every call costs what it returns, read through the replica's indexes:

- `records_page(replica, Query(...))`: records of a type, a page at a time, sorted by
  capture time or by any field (a normalised sort key: any script, no ICU), with a
  full-text filter over the decrypted values (FTS5 trigrams over folded text:
  Cyrillic, Latin, Chinese, Arabic script alike), markers on records with open
  conflicts, likely duplicates or values that fail their schema, deleted records
  hidden unless asked for;
- `iter_records(replica)`: every record, streamed in capture order (export, `records`);
- `load(replica, ids)`: records by id, the building block of the rest.

One record in full and the conflict queue: `client_sync/review.py`.

Deletion rule and likely duplicates: `client_sync/replica/derived.py`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from protocol.hlc import physical_ms
from schemas.records import DELETED_FIELD

# Exports' columns and cells live in export.py; named here too, for the callers of before.
from .export import cell_text as cell_text
from .export import csv_row as csv_row
from .export import export_columns as export_columns
from .files import is_file, listed, shown
from .replica import Replica
from .replica.values import fold

MARKERS = ("conflicts", "duplicates", "invalid")
STREAM_BATCH = 500
# `Query.record_type` for the records whose type this version does not know (a buggy
# or hostile device's): shown as such, never dropped. Reserved types (`_device` names,
# `_distinct` judgments: docs/PROTOCOL.md "Reserved records") are never records to list.
UNKNOWN_TYPES = "?"
_KNOWN = ("picket", "detention", "relative")  # schemas.records.RECORD_TYPES, without importing it


def hlc_time(stamp: int) -> str:
    when = datetime.fromtimestamp(physical_ms(stamp) / 1000, tz=UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Value:
    """One open value of a field: who wrote it and when, and whether its schema accepts it."""

    value: Any
    device_id: str
    hlc: int
    cell_id: str
    problem: str | None = None


@dataclass
class Record:
    id: str
    type: str
    recorded: int  # the HLC of its first cell
    deleted: bool
    values: dict[str, list[Value]]  # field -> open values, winner first (its own type)
    foreign: dict[str, list[Value]] = field(default_factory=dict)  # "type.field" of another type
    duplicates: list[str] = field(default_factory=list)

    @property
    def fields(self) -> dict[str, Any]:
        return {
            n: vs[0].value
            for n, vs in sorted(self.values.items())
            if n != DELETED_FIELD and not is_file(n)
        }

    @property
    def conflicts(self) -> dict[str, list[Any]]:
        return {
            n: [v.value for v in vs]
            for n, vs in sorted(self.values.items())
            if len(vs) > 1 and n != DELETED_FIELD and not is_file(n)
        }

    @property
    def attachments(self) -> list[dict[str, Any]]:
        """The record's attachments, in capture order (`files.listed`)."""
        return listed(self.values, hlc_time)

    @property
    def invalid(self) -> dict[str, dict[str, Any]]:
        """name -> the first value its schema refuses and why; cells of another type too."""
        out = {}
        for name, vs in sorted([*self.values.items(), *self.foreign.items()]):
            for v in vs:
                if v.problem is not None:
                    out[name] = {"value": shown(name, v.value), "problem": v.problem}
                    break
        return out

    def as_json(self) -> dict[str, Any]:
        """The shape of `fieldsync records --format json`; `invalid` only when there is any."""
        out: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "fields": self.fields,
            "conflicts": self.conflicts,
            "deleted": self.deleted,
        }
        if self.invalid:
            out["invalid"] = self.invalid
        if self.attachments:
            out["attachments"] = self.attachments
        return out


@dataclass(frozen=True)
class Query:
    record_type: str | None = None
    search: str = ""  # words that must all appear in some value (folded)
    sort: str | None = None  # a field; None: capture order
    descending: bool = False
    include_deleted: bool = False
    only: str | None = None  # one of MARKERS: records that carry it
    offset: int = 0
    limit: int = 50
    count: bool = True  # the total too: one count over an index (or over the matches)


@dataclass
class Page:
    records: list[Record]
    total: int | None  # records that match, on every page (None: not counted)
    query: Query


# --- loading records by id ------------------------------------------------------------


def load(replica: Replica, ids: Sequence[str], duplicates: bool = True) -> list[Record]:
    """The records with these ids, in this order (unknown ids are left out)."""
    if not ids:
        return []
    db = replica.db
    marks = ",".join("?" * len(ids))
    rows = {
        r[0]: r
        for r in db.execute(
            f"SELECT record_id, record_type, first_hlc, deleted FROM records"  # noqa: S608
            f" WHERE record_id IN ({marks})",
            ids,
        )
    }
    heads: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for row in db.execute(
        "SELECT r.record_id, c.record_type, c.field, c.value, c.hlc, c.device_id, c.cell_id,"  # noqa: S608
        " c.winner, c.problem FROM records r JOIN cells c ON c.rid = r.rid AND c.head = 1"
        f" WHERE r.record_id IN ({marks})",
        ids,
    ):
        heads[row[0]].append(row)
    dups: dict[str, list[str]] = defaultdict(list)
    if duplicates:
        judged: set[tuple[str, str]] | None = None
        for a, b in db.execute(
            f"SELECT a, b FROM duplicates WHERE a IN ({marks}) ORDER BY a, b",  # noqa: S608
            ids,
        ):
            if judged is None:
                judged = distinct_pairs(replica)
            if (min(a, b), max(a, b)) not in judged:
                dups[a].append(b)
    out = []
    for rid in ids:
        row = rows.get(rid)
        if row is None:
            continue
        _, rtype, first, deleted = row
        own: dict[str, list[tuple[tuple[int, int, str, str], Value]]] = defaultdict(list)
        foreign: dict[str, list[tuple[tuple[int, int, str, str], Value]]] = defaultdict(list)
        for _, ctype, name, value_json, hlc, dev, cid, winner, why in heads[rid]:
            value = json.loads(value_json)
            if ctype == rtype:
                own[name].append(((winner, hlc, dev, cid), Value(value, dev, hlc, cid, why)))
            else:
                why = f"a {ctype} value under a {rtype} record"
                foreign[f"{ctype}.{name}"].append(
                    ((winner, hlc, dev, cid), Value(value, dev, hlc, cid, why))
                )
        rec = Record(rid, rtype, first, bool(deleted), _winner_first(own), _winner_first(foreign))
        rec.duplicates = dups.get(rid, [])
        out.append(rec)
    return out


def distinct_pairs(replica: Replica) -> set[tuple[str, str]]:
    """The pairs a keyholder judged *not* duplicates (`_distinct` records that stand),
    each as (smaller id, larger id). Few: read whole, through the winners' index."""
    out: set[tuple[str, str]] = set()
    for (value,) in replica.db.execute(
        "SELECT c.value FROM cells c JOIN records r ON r.rid = c.rid"
        " WHERE c.record_type = '_distinct' AND c.field = 'pair' AND c.winner = 1"
        " AND c.head = 1 AND r.deleted = 0"
    ):
        pair = json.loads(value)
        if isinstance(pair, str) and len(pair.split()) == 2:
            a, b = sorted(pair.split())
            out.add((a, b))
    return out


def _winner_first(
    by_name: dict[str, list[tuple[tuple[int, int, str, str], Value]]],
) -> dict[str, list[Value]]:
    return {
        n: [v for _, v in sorted(vs, key=lambda kv: kv[0], reverse=True)]
        for n, vs in by_name.items()
    }


# --- pages ----------------------------------------------------------------------------


def records_page(replica: Replica, query: Query) -> Page:
    """One page of records; its cost follows the page (and the matches of a filter)."""
    if query.only is not None and query.only not in MARKERS:
        raise ValueError(f"unknown marker {query.only!r}")
    total: int | None
    if query.search.strip() or query.only:
        ids, total = _filtered(replica, query)
    else:
        ids, total = _scanned(replica, query)
    return Page(load(replica, ids), total, query)


def _where(query: Query, alias: str = "r") -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if query.record_type == UNKNOWN_TYPES:
        marks = ",".join("?" * len(_KNOWN))
        clauses.append(f"{alias}.record_type NOT IN ({marks})")
        clauses.append(f"{alias}.record_type NOT LIKE '\\_%' ESCAPE '\\'")
        params.extend(_KNOWN)
    elif query.record_type is not None:
        clauses.append(f"{alias}.record_type = ?")
        params.append(query.record_type)
    else:
        clauses.append(f"{alias}.record_type NOT LIKE '\\_%' ESCAPE '\\'")
    if not query.include_deleted:
        clauses.append(f"{alias}.deleted = 0")
    return (" AND ".join(clauses) or "1"), params


def _scanned(replica: Replica, q: Query) -> tuple[list[str], int | None]:
    """No filter: walk an index in the order asked for, from the offset."""
    db = replica.db
    where, params = _where(q)
    total = None
    if q.count:
        sql = f"SELECT count(*) FROM records r WHERE {where}"  # noqa: S608
        total = int(db.execute(sql, params).fetchone()[0])
    direction = "DESC" if q.descending else "ASC"
    if q.sort is None:
        order = "r.record_type, " if q.record_type is not None else ""
        rows = db.execute(
            f"SELECT r.record_id FROM records r WHERE {where}"  # noqa: S608
            f" ORDER BY {order}r.first_hlc {direction}, r.record_id {direction} LIMIT ? OFFSET ?",
            [*params, q.limit, q.offset],
        ).fetchall()
        return [r[0] for r in rows], total
    # Records that hold the field, in its order (the partial index on winners) ...
    sort_params: list[Any] = [q.sort]
    type_match = "c.record_type = r.record_type"
    if q.record_type is not None:
        type_match = "c.record_type = ? AND r.record_type = ?"
        sort_params = [q.record_type, q.record_type, q.sort]
    having = (
        f"SELECT r.record_id FROM cells c JOIN records r ON r.rid = c.rid"  # noqa: S608
        f" WHERE c.winner = 1 AND {type_match} AND c.field = ? AND {where}"
    )
    rows = db.execute(
        f"{having} ORDER BY c.sort_key {direction}, c.rid {direction} LIMIT ? OFFSET ?",
        [*sort_params, *params, q.limit, q.offset],
    ).fetchall()
    ids = [r[0] for r in rows]
    if len(ids) == q.limit:
        return ids, total
    # ... then those without it, in capture order.
    if ids:
        held = q.offset + len(ids)
    else:
        (held,) = db.execute(f"SELECT count(*) FROM ({having})", [*sort_params, *params]).fetchone()  # noqa: S608
    rows = db.execute(
        f"SELECT r.record_id FROM records r WHERE {where} AND NOT EXISTS"  # noqa: S608
        " (SELECT 1 FROM cells c WHERE c.rid = r.rid AND c.field = ?"
        " AND c.head = 1 AND c.winner = 1 AND c.record_type = r.record_type)"
        " ORDER BY r.first_hlc, r.record_id LIMIT ? OFFSET ?",
        [*params, q.sort, q.limit - len(ids), max(0, q.offset - held)],
    ).fetchall()
    return ids + [r[0] for r in rows], total


_ONLY = {
    "conflicts": "SELECT DISTINCT record_id FROM open_conflicts",
    "duplicates": "SELECT DISTINCT a FROM duplicates",
    "invalid": "SELECT record_id FROM records WHERE invalid > 0",
}


def _filtered(replica: Replica, q: Query) -> tuple[list[str], int | None]:
    """A filter: its matches (from the full-text index or a marker's table), sorted here."""
    db = replica.db
    where, params = _where(q)
    sources, source_params = [], []
    words = fold(q.search).split()
    long_words = [w for w in words if len(w) >= 3]
    if long_words:
        # Trigram phrases: any script; every word must appear.
        sources.append("r.rid IN (SELECT rowid FROM search WHERE search MATCH ?)")
        source_params.append(" AND ".join('"' + w.replace('"', '""') + '"' for w in long_words))
    for w in words:
        if len(w) < 3:  # too short for a trigram: a scan of the folded text
            sources.append("r.rid IN (SELECT rowid FROM search WHERE instr(text, ?) > 0)")
            source_params.append(w)
    if q.only is not None:
        sources.append(f"r.record_id IN ({_ONLY[q.only]})")
    sql = f"SELECT r.record_id, r.first_hlc FROM records r WHERE {where} AND " + " AND ".join(  # noqa: S608
        sources
    )
    rows = db.execute(sql, [*params, *source_params]).fetchall()
    if q.sort is None:
        rows.sort(key=lambda r: (r[1], r[0]), reverse=q.descending)
        ids = [r[0] for r in rows]
    else:
        ids = _sorted_by_field(replica, [r[0] for r in rows], q.sort, q.descending)
    return ids[q.offset : q.offset + q.limit], len(rows)


def _sorted_by_field(replica: Replica, ids: list[str], name: str, descending: bool) -> list[str]:
    keys: dict[str, str] = {}
    for i in range(0, len(ids), STREAM_BATCH):
        part = ids[i : i + STREAM_BATCH]
        marks = ",".join("?" * len(part))
        keys.update(
            replica.db.execute(
                "SELECT r.record_id, c.sort_key FROM records r JOIN cells c"  # noqa: S608
                f" ON c.rid = r.rid WHERE r.record_id IN ({marks})"
                " AND c.head = 1 AND c.field = ? AND c.winner = 1"
                " AND c.record_type = r.record_type",
                [*part, name],
            ).fetchall()
        )
    held = sorted((i for i in ids if i in keys), key=lambda i: (keys[i], i), reverse=descending)
    return held + [i for i in ids if i not in keys]


def iter_records(
    replica: Replica, record_type: str | None = None, *, include_deleted: bool = True
) -> Iterator[Record]:
    """Every record in capture order, loaded a batch at a time (memory stays flat)."""
    where, params = _where(Query(record_type, include_deleted=include_deleted))
    after: tuple[int, str] = (-1, "")
    while True:
        rows = replica.db.execute(
            f"SELECT r.first_hlc, r.record_id FROM records r WHERE {where}"  # noqa: S608
            " AND (r.first_hlc, r.record_id) > (?, ?) ORDER BY r.first_hlc, r.record_id LIMIT ?",
            [*params, *after, STREAM_BATCH],
        ).fetchall()
        if not rows:
            return
        yield from load(replica, [r[1] for r in rows])
        after = (rows[-1][0], rows[-1][1])
