"""What the review pages show, gathered from the replica: tables, one record, the queue.

Values are checked against the record schema as they are shown: a value that does
not validate (an `attendance` of "forty", as a buggy or hostile device could send)
or a record of a type this version does not know is marked, never hidden or dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from schemas.records import RECORD_TYPES, RecordError, load_fields, specs

from .. import operations, view
from ..device import Session
from ..replica import Replica

OTHER = "_other"  # the tab of records whose type this version does not know


@dataclass(frozen=True)
class Query:
    record_type: str
    text: str = ""
    sort: str = ""
    descending: bool = False
    deleted: bool = False
    page: int = 1


@dataclass
class Row:
    record_id: str
    record_type: str
    values: dict[str, Any]
    conflicts: set[str] = field(default_factory=set)
    invalid: set[str] = field(default_factory=set)
    duplicates: list[str] = field(default_factory=list)
    deleted: bool = False
    same_as: str | None = None


@dataclass
class Table:
    rows: list[Row]
    total: int
    page: int
    pages: int
    briefs: dict[str, str] = field(default_factory=dict)  # linked record id -> brief


def field_label(record_type: str, name: str) -> str | None:
    """The label (a message id) of a field of a known type, else None."""
    if record_type not in RECORD_TYPES:
        return None
    for spec in specs(record_type):
        if spec.name == name:
            return spec.label
    return None


def choice_label(record_type: str, name: str, value: Any) -> str | None:
    """The label (a message id) of a choice value, or of yes/no; None for other values."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if record_type not in RECORD_TYPES or not isinstance(value, str):
        return None
    for spec in specs(record_type):
        if spec.name == name:
            return next((label for v, label in spec.choices if v == value), None)
    return None


def brief(rec: dict[str, Any] | None) -> str:
    """A record in a few words: a picket's date and place, a person's name."""
    if not rec:
        return ""
    f = rec.get("fields", {})
    if rec.get("type") == "picket":
        return f"{f.get('date', '')} · {f.get('place', '')}"
    if rec.get("type") == "detention":
        return f"{f.get('person_name', '')} · {f.get('detained_at', '')}".strip(" ·")
    return str(f.get("full_name", "") or rec.get("id", ""))


def as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def invalid_fields(record_type: str, values: dict[str, Any]) -> set[str]:
    """The fields whose value does not validate against this version's schema."""
    if record_type not in RECORD_TYPES:
        return set(values)
    bad: set[str] = set()
    for name, value in values.items():
        try:
            load_fields(record_type, {name: value})
        except RecordError:
            bad.add(name)
    return bad


def _matches(rec: dict[str, Any], text: str) -> bool:
    needle = text.casefold()
    return any(needle in as_text(v).casefold() for v in rec["fields"].values()) or (
        needle == rec["id"].casefold()
    )


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (2, "")
    if isinstance(value, bool):
        return (0, int(value))
    if isinstance(value, int):
        return (0, value)
    return (1, str(value).casefold())


def _rows(replica: Replica, q: Query) -> list[Row]:
    every = view.merged_records(replica)
    dups = view.duplicates(every)
    wanted = [
        r
        for r in every
        if (r["type"] == q.record_type)
        or (q.record_type == OTHER and r["type"] not in RECORD_TYPES)
    ]
    rows = []
    for rec in wanted:
        if rec["deleted"] and not q.deleted:
            continue
        if q.text and not _matches(rec, q.text):
            continue
        rows.append(
            Row(
                record_id=rec["id"],
                record_type=rec["type"],
                values=rec["fields"],
                conflicts=set(rec["conflicts"]),
                invalid=invalid_fields(rec["type"], rec["fields"]),
                duplicates=dups.get(rec["id"], []),
                deleted=rec["deleted"],
                same_as=rec["fields"].get("same_as"),
            )
        )
    if q.sort:
        rows.sort(key=lambda r: _sort_key(r.values.get(q.sort)), reverse=q.descending)
    return rows


def table(s: Session, replica: Replica, q: Query, per_page: int) -> Table:
    rows = _rows(replica, q)
    pages = max(1, -(-len(rows) // per_page))
    page = min(q.page, pages)
    start = (page - 1) * per_page
    shown = rows[start : start + per_page]
    linked = {r.values.get("picket_id") for r in shown} | {r.same_as for r in shown}
    briefs = {}
    if linked - {None}:
        by_id = {r["id"]: r for r in view.merged_records(replica)}
        briefs = {rid: brief(by_id.get(rid)) for rid in linked if isinstance(rid, str)}
    return Table(shown, len(rows), page, pages, briefs)


def record(s: Session, replica: Replica, record_id: str) -> dict[str, Any] | None:
    shown = view.show(replica, record_id)
    if shown is None:
        return None
    names = operations.device_names(s)
    every = view.merged_records(replica)
    by_id = {r["id"]: r for r in every}
    linked_to = []
    picket = shown["fields"].get("picket_id")
    if isinstance(picket, str) and picket in by_id:
        linked_to.append(by_id[picket])
    linked_from = [r for r in every if r["fields"].get("picket_id") == record_id]
    heads: dict[str, list[dict[str, Any]]] = {}
    for h in shown["history"]:
        h["device_name"] = names.get(h["device_id"])
        h["at"] = view.hlc_time(h["hlc"])
        if h["head"]:
            heads.setdefault(h["field"], []).append(h)
    conflicts = []
    for name, values in shown["conflicts"].items():
        ordered = sorted(
            heads.get(name, []), key=lambda h: (h["hlc"], h["device_id"]), reverse=True
        )
        conflicts.append({"field": name, "values": ordered or [{"value": v} for v in values]})
    return {
        **shown,
        "specs": specs(shown["type"]) if shown["type"] in RECORD_TYPES else [],
        "invalid": invalid_fields(shown["type"], shown["fields"]),
        "conflict_list": conflicts,
        "linked_to": linked_to,
        "linked_from": linked_from,
        "duplicate_records": [by_id[d] for d in shown["duplicates"] if d in by_id],
    }


def conflict_queue(s: Session, replica: Replica) -> list[dict[str, Any]]:
    """Every open conflict, the oldest first (by its oldest open value)."""
    names = operations.device_names(s)
    items = view.conflicts(replica, names)
    for item in items:
        for n, v in enumerate(item["values"]):
            v["n"] = n
            v["at"] = view.hlc_time(v["hlc"])
    items.sort(key=lambda i: min(v["hlc"] for v in i["values"]))
    by_id = {r["id"]: r for r in view.merged_records(replica)} if items else {}
    for item in items:
        item["brief"] = brief(by_id.get(item["record_id"]))
    return items


def export(s: Session, replica: Replica, q: Query, fmt: str, stem: str) -> tuple[bytes, str]:
    """The rows of `q` (every page) as CSV (UTF-8 with BOM) or JSON, and a file name."""
    rows = _rows(replica, q)
    names = operations.device_names(s)
    if fmt == "json":
        recs = [{"id": r.record_id, "type": r.record_type, "fields": r.values} for r in rows]
        return json.dumps(recs, ensure_ascii=False, indent=2).encode("utf-8"), f"{stem}.json"
    rtype = q.record_type if q.record_type in RECORD_TYPES else None
    columns, every = view.type_rows(replica, rtype, deleted=q.deleted, names=names)
    shown = {r.record_id for r in rows}
    body = view.rows_csv(columns, [row for row in every if row[0] in shown])
    return body.encode("utf-8"), f"{stem}.csv"
