"""What the review pages show, read through the replica's indexes (`client_sync/view.py`).

The pages cost what they show: a table is one page of the read layer (sorted by any
field in any script, filtered over the decrypted values), a record reads its own
rows, the queue reads the index of open conflicts. Values are judged against the
record schema as they arrive: a value that does not validate (an `attendance` of
"forty", as a buggy or hostile device could send) or a record of a type this version
does not know is marked, never hidden or dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schemas.records import N_, RECORD_TYPES, specs

from .. import review, team, view
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
    if name.startswith("_file_"):
        return N_("Attachment")
    if record_type not in RECORD_TYPES:
        return None
    for spec in specs(record_type):
        if spec.name == name:
            return spec.label
    return None


def choice_label(record_type: str, name: str, value: Any) -> str | None:
    """The label (a message id) of a choice value, or of yes/no; None for other values."""
    if name.startswith("_file_") and value is None:
        return N_("removed")
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


def _plain(rec: view.Record) -> dict[str, Any]:
    return {"id": rec.id, "type": rec.type, "fields": rec.fields, "deleted": rec.deleted}


def _briefs(replica: Replica, ids: set[Any]) -> dict[str, str]:
    wanted = sorted(i for i in ids if isinstance(i, str))
    return {r.id: brief(_plain(r)) for r in view.load(replica, wanted, duplicates=False)}


def _view_query(q: Query, offset: int, limit: int) -> view.Query:
    rtype = view.UNKNOWN_TYPES if q.record_type == OTHER else q.record_type
    known = {f.name for f in specs(q.record_type)} if q.record_type in RECORD_TYPES else set()
    return view.Query(
        record_type=rtype,
        search=q.text,
        sort=q.sort if q.sort in known else None,
        descending=q.descending,
        include_deleted=q.deleted,
        offset=offset,
        limit=limit,
    )


def _row(rec: view.Record) -> Row:
    values = rec.fields
    same = values.get("same_as")
    return Row(
        record_id=rec.id,
        record_type=rec.type,
        values=values,
        conflicts=set(rec.conflicts),
        invalid=set(rec.invalid),
        duplicates=rec.duplicates,
        deleted=rec.deleted,
        same_as=same if isinstance(same, str) else None,
    )


def table(s: Session, replica: Replica, q: Query, per_page: int) -> Table:
    page = view.records_page(replica, _view_query(q, (q.page - 1) * per_page, per_page))
    total = page.total or 0
    pages = max(1, -(-total // per_page))
    rows = [_row(r) for r in page.records]
    linked = {r.values.get("picket_id") for r in rows} | {r.same_as for r in rows}
    return Table(rows, total, min(q.page, pages), pages, _briefs(replica, linked))


def every_row(replica: Replica, q: Query) -> list[view.Record]:
    """Every record the table's filter and order give, on all its pages (for exports)."""
    return view.records_page(replica, _view_query(q, 0, 2**62)).records


def record(s: Session, replica: Replica, record_id: str) -> dict[str, Any] | None:
    detail = review.record_detail(replica, record_id)
    if detail is None:
        return None
    rec = detail.record
    names = team.device_names(s)
    linked = view.load(replica, [x["id"] for x in detail.links_out + detail.links_in], False)
    by_id = {r.id: _plain(r) for r in linked}
    history = [
        {**h, "device_name": names.get(h["device_id"]), "at": view.hlc_time(h["hlc"])}
        for h in detail.history
    ]
    conflicts = [
        {
            "field": name,
            "values": [
                {
                    "value": v.value,
                    "device_id": v.device_id,
                    "device_name": names.get(v.device_id),
                    "at": view.hlc_time(v.hlc),
                }
                for v in values
            ],
        }
        for name, values in sorted(rec.values.items())
        if len(values) > 1 and not name.startswith("_")
    ]
    dups = view.load(replica, rec.duplicates, False)
    return {
        "attachments": _attachments(replica, rec, names),
        **_plain(rec),
        "conflicts": rec.conflicts,
        "specs": specs(rec.type) if rec.type in RECORD_TYPES else [],
        "invalid": set(rec.invalid),
        "conflict_list": conflicts,
        "linked_to": [by_id[x["id"]] for x in detail.links_out if x["id"] in by_id],
        "linked_from": [by_id[x["id"]] for x in detail.links_in if x["id"] in by_id],
        "duplicate_records": [_plain(r) for r in dups],
        "history": history,
    }


def _attachments(replica: Replica, rec: view.Record, names: dict[str, str]) -> list[dict[str, Any]]:
    """A record's attachments as its page lists them: what the descriptor says (its
    SHA-256 as sealed at capture), who attached it, and whether the copy kept here was
    verified whole against that hash, and when."""
    from ..replica.files import checks

    listed = rec.attachments
    kept = checks(replica, [a["id"] for a in listed])
    return [
        {
            **a,
            "device_name": names.get(a["device_id"]),
            "size_text": f"{a['size']:,} B",
            "verified": kept.get(a["id"], (None, None))[0],
            "verified_at": kept.get(a["id"], (None, None))[1],
        }
        for a in listed
    ]


def conflict_queue(s: Session, replica: Replica) -> list[dict[str, Any]]:
    """Every open conflict, the oldest first."""
    names = team.device_names(s)
    items = review.conflict_queue(replica)
    briefs = _briefs(replica, {c.record_id for c in items})
    return [
        {
            "record_id": c.record_id,
            "type": c.type,
            "field": c.field,
            "brief": briefs.get(c.record_id, ""),
            "values": [
                {
                    "n": n,
                    "value": v.value,
                    "device_id": v.device_id,
                    "device_name": names.get(v.device_id),
                    "at": view.hlc_time(v.hlc),
                }
                for n, v in enumerate(c.values)
            ],
        }
        for c in items
    ]


def invalid_fields(record_type: str, values: dict[str, Any]) -> set[str]:
    """For tests and tools: the fields whose value this version's schema refuses."""
    from ..replica.values import problem

    return {n for n, v in values.items() if problem(record_type, n, v) is not None}
