"""What a coordinator reviews, read from the replica through its indexes:

- `record_detail(replica, id)`: one record, its fields, every open value with device
  and time, its linked records both ways, its likely duplicates, each field's history;
- `conflict_queue(replica)`: the open conflicts, oldest first.

Records and pages of them: `client_sync/view.py`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .files import shown
from .replica import Replica
from .replica.values import problem
from .view import Record, Value, load

# --- one record -----------------------------------------------------------------------


@dataclass
class Detail:
    record: Record
    links_out: list[dict[str, Any]]  # {"field", "id", "type"} (type None: not in the replica)
    links_in: list[dict[str, Any]]
    history: list[dict[str, Any]]  # every cell, oldest first

    def as_json(self, names: dict[str, str] | None = None) -> dict[str, Any]:
        """`names`: device id -> the device's name (sealed `_device` records)."""
        rec = self.record
        named = names or {}
        return {
            "id": rec.id,
            "type": rec.type,
            "fields": rec.fields,
            "conflicts": rec.conflicts,
            "deleted": rec.deleted,
            "invalid": rec.invalid,
            "duplicates": rec.duplicates,
            "links": {"out": self.links_out, "in": self.links_in},
            "history": [
                {
                    **h,
                    "value": shown(h["field"], h["value"]),
                    "device_name": named.get(h["device_id"]),
                }
                for h in self.history
            ],
            "attachments": rec.attachments,
        }


def record_detail(replica: Replica, record_id: str) -> Detail | None:
    """One record: reads its row, its heads, its cells, its links and duplicate pairs."""
    found = load(replica, [record_id])
    if not found:
        return None
    rec = found[0]
    db = replica.db
    history = [
        {
            "field": name,
            "value": shown(name, json.loads(value)),  # never an attachment's key
            "device_id": dev,
            "hlc": hlc,
            "cell_id": cid,
            "head": bool(head),
            "supersedes": json.loads(sup),
        }
        for name, value, dev, hlc, cid, head, sup in db.execute(
            "SELECT c.field, c.value, c.device_id, c.hlc, c.cell_id, c.head, c.supersedes"
            " FROM records r JOIN cells c ON c.rid = r.rid WHERE r.record_id = ?"
            " ORDER BY c.hlc, c.device_id, c.cell_id",
            (record_id,),
        )
    ]
    out_ids = [(name, vs[0].value) for name, vs in sorted(rec.values.items())]
    links_out = [
        {"field": name, "id": target, "type": replica.record_type(target)}
        for name, target in out_ids
        if name in _link_fields(rec.type) and isinstance(target, str)
    ]
    links_in = [
        {"field": name, "id": src, "type": rtype}
        for src, name, rtype in db.execute(
            "SELECT l.from_id, l.field, r.record_type FROM links l JOIN records r"
            " ON r.record_id = l.from_id WHERE l.to_id = ? ORDER BY r.first_hlc, l.from_id",
            (record_id,),
        )
    ]
    return Detail(rec, links_out, links_in, history)


def _link_fields(record_type: str) -> frozenset[str]:
    from .replica.derived import link_fields

    return link_fields(record_type)


# --- the conflict queue ---------------------------------------------------------------


@dataclass
class Conflict:
    record_id: str
    type: str
    field: str
    since: int
    values: list[Value]

    def as_json(self, names: dict[str, str] | None = None) -> dict[str, Any]:
        """`names`: device id -> the device's name (sealed `_device` records)."""
        named = names or {}
        return {
            "record_id": self.record_id,
            "type": self.type,
            "field": self.field,
            "values": [
                {
                    "value": v.value,
                    "device_id": v.device_id,
                    "device_name": named.get(v.device_id),
                    "hlc": v.hlc,
                }
                for v in self.values
            ],
        }


def conflict_queue(replica: Replica, offset: int = 0, limit: int | None = None) -> list[Conflict]:
    """Open conflicts, oldest first (by the second-oldest open value's time)."""
    db = replica.db
    rows = db.execute(
        "SELECT o.record_id, o.field_tag, o.since, r.record_type FROM open_conflicts o"
        " JOIN records r ON r.record_id = o.record_id"
        " WHERE r.record_type NOT LIKE '\\_%' ESCAPE '\\'"  # reserved records: not a person's
        " ORDER BY o.since, o.record_id, o.field_tag LIMIT ? OFFSET ?",
        (-1 if limit is None else limit, offset),
    ).fetchall()
    out = []
    for rid, tag, since, rtype in rows:
        heads = replica.heads(rid, tag)
        if len(heads) < 2:
            continue
        top = heads[0]
        name = top.field if top.record_type == rtype else f"{top.record_type}.{top.field}"
        values = [
            Value(h.value, h.device_id, h.hlc, h.cell_id, problem(h.record_type, h.field, h.value))
            for h in heads
        ]
        out.append(Conflict(rid, rtype, name, since, values))
    return out
