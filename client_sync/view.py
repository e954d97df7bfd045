"""The coordinator's view of the replica: merged records, conflicts, duplicates, export.

Deletion rule (docs/PROTOCOL.md "Deletion"): a record is deleted when the winner
of its `_deleted` register is `true` and no head of any other field has a greater
HLC than that winner. A write concurrent with or later than the delete keeps the
record: losing testimony by accident is worse than showing one too many.

Likely duplicates: same type, same day in the type's date field, and names whose
`difflib.SequenceMatcher` ratio is at least 0.8 (case and spacing ignored). They
are pointed out, never merged automatically: a coordinator merges by writing.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from protocol.hlc import physical_ms
from schemas.records import DATE_FIELD, DELETED_FIELD, NAME_FIELD, RECORD_TYPES, field_names

from .replica import HeadCell, Replica

DUPLICATE_RATIO = 0.8


def hlc_time(stamp: int) -> str:
    when = datetime.fromtimestamp(physical_ms(stamp) / 1000, tz=UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _is_deleted(fields: dict[str, list[HeadCell]]) -> bool:
    tomb = fields.get(DELETED_FIELD)
    if not tomb or tomb[0].value is not True:
        return False
    return not any(
        h.hlc > tomb[0].hlc
        for name, heads in fields.items()
        if name != DELETED_FIELD
        for h in heads
    )


def merged_records(replica: Replica, record_type: str | None = None) -> list[dict[str, Any]]:
    """Every record: winners, open conflicts (every value, winner first), deleted or not."""
    heads = replica.all_heads()
    out = []
    for record_id, rtype in replica.records():
        if record_type is not None and rtype != record_type:
            continue
        if rtype.startswith("_"):
            continue  # protocol records (device names) are not records people made
        fields = heads.get(record_id, {})
        # Cells of another type under this record id are a device's error; show the
        # fields of the record's own type (the type of its first cell).
        fields = {name: [h for h in hs if h.record_type == rtype] for name, hs in fields.items()}
        fields = {name: hs for name, hs in fields.items() if hs}
        out.append(
            {
                "id": record_id,
                "type": rtype,
                "fields": {
                    name: hs[0].value
                    for name, hs in sorted(fields.items())
                    if name != DELETED_FIELD
                },
                "conflicts": {
                    name: [h.value for h in hs]
                    for name, hs in sorted(fields.items())
                    if len(hs) > 1 and name != DELETED_FIELD
                },
                "deleted": _is_deleted(fields),
            }
        )
    return out


def conflicts(replica: Replica, names: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Every open conflict, winner first; `names` maps device ids to device names."""
    names = names or {}
    heads = replica.all_heads()
    out = []
    for record_id, rtype in replica.records():
        if rtype.startswith("_"):
            continue  # protocol records (device names): never a conflict to review here
        for name, hs in sorted(heads.get(record_id, {}).items()):
            if len(hs) > 1:
                out.append(
                    {
                        "record_id": record_id,
                        "type": rtype,
                        "field": name,
                        "values": [
                            {
                                "value": h.value,
                                "device_id": h.device_id,
                                "device_name": names.get(h.device_id),
                                "hlc": h.hlc,
                            }
                            for h in hs
                        ],
                    }
                )
    return out


def _norm(text: Any) -> str:
    return " ".join(str(text).lower().split())


def duplicates(records: list[dict[str, Any]]) -> dict[str, list[str]]:
    """record id -> ids of likely duplicates (deleted records are left out)."""
    groups: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for rec in records:
        rtype = rec["type"]
        date = rec["fields"].get(DATE_FIELD.get(rtype, ""))
        name = rec["fields"].get(NAME_FIELD.get(rtype, ""))
        if rec["deleted"] or date is None or name is None:
            continue
        groups[(rtype, str(date)[:10])].append((rec["id"], _norm(name)))
    found: dict[str, list[str]] = defaultdict(list)
    for members in groups.values():
        for i, (id_a, name_a) in enumerate(members):
            for id_b, name_b in members[i + 1 :]:
                if difflib.SequenceMatcher(None, name_a, name_b).ratio() >= DUPLICATE_RATIO:
                    found[id_a].append(id_b)
                    found[id_b].append(id_a)
    return dict(found)


CONFLICT_SEP = " ‖ "  # between the open values of a field in a CSV cell, winner first


def _first_writes(replica: Replica, record_id: str) -> tuple[str | None, int | None]:
    """Who first wrote a record, and when (its earliest cell)."""
    history = replica.history(record_id)
    if not history:
        return None, None
    first = min(history, key=lambda h: h["hlc"])
    return first["device_id"], first["hlc"]


def type_rows(
    replica: Replica,
    record_type: str | None,
    *,
    deleted: bool = False,
    names: dict[str, str] | None = None,
) -> tuple[list[str], list[list[str]]]:
    """A sheet of one type (or of every type, when None): a header and one row per record.

    Columns: id, (type,) who recorded it and when, then the type's fields (a
    detention's picket also by its date and place, beside its id), and the fields
    with open conflicts. A field with an open conflict holds every open value,
    the winner first, joined by `CONFLICT_SEP`: never hidden. Deleted records are
    left out unless `deleted`, which adds a `deleted` column.
    """
    from schemas.records import specs

    names = names or {}
    recs = merged_records(replica, record_type)
    if not deleted:
        recs = [r for r in recs if not r["deleted"]]
    fields = [f.name for f in specs(record_type)] if record_type else export_columns()[3:]
    columns = ["id"] + ([] if record_type else ["type"]) + ["recorded_by", "recorded_at"]
    for name in fields:
        columns.append(name)
        if name == "picket_id":
            columns += ["picket_date", "picket_place"]
    if deleted:
        columns.append("deleted")
    columns.append("conflicts")
    pickets = (
        {r["id"]: r for r in merged_records(replica, "picket")} if "picket_id" in fields else {}
    )
    rows = []
    for rec in recs:
        device, stamp = _first_writes(replica, rec["id"])
        row = {
            "id": rec["id"],
            "type": rec["type"],
            "recorded_by": names.get(device or "", device or ""),
            "recorded_at": hlc_time(stamp) if stamp is not None else "",
            "deleted": _cell_text(rec["deleted"]),
            "conflicts": " ".join(sorted(rec["conflicts"])),
        }
        for name in fields:
            if name in rec["conflicts"]:
                row[name] = CONFLICT_SEP.join(_cell_text(v) for v in rec["conflicts"][name])
            else:
                row[name] = _cell_text(rec["fields"].get(name))
        picket = pickets.get(rec["fields"].get("picket_id") or "")
        row["picket_date"] = _cell_text(picket["fields"].get("date")) if picket else ""
        row["picket_place"] = _cell_text(picket["fields"].get("place")) if picket else ""
        rows.append([row.get(c, "") for c in columns])
    return columns, rows


def rows_csv(columns: list[str], rows: list[list[str]], *, bom: bool = True) -> str:
    """CSV text; with a byte-order mark so spreadsheet programs read it as UTF-8
    (Cyrillic, Chinese and Arabic-script names intact)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return ("\ufeff" if bom else "") + buf.getvalue()


def export_columns() -> list[str]:
    cols = ["id", "type", "deleted"]
    for rtype in RECORD_TYPES:
        cols.extend(name for name in field_names(rtype) if name not in cols)
    return cols


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def to_csv(records: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    cols = export_columns()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    for rec in records:
        row = {"id": rec["id"], "type": rec["type"], "deleted": rec["deleted"], **rec["fields"]}
        writer.writerow([_cell_text(row.get(c)) for c in cols])
    return buf.getvalue()


def to_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2)


def _short(value: Any, width: int = 60) -> str:
    text = _cell_text(value).replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def records_table(records: list[dict[str, Any]]) -> str:
    """One block per record: its fields, open conflicts and likely duplicates."""
    dups = duplicates(records)
    lines: list[str] = []
    for rec in records:
        flags = []
        if rec["deleted"]:
            flags.append("DELETED")
        if rec["conflicts"]:
            flags.append(f"{len(rec['conflicts'])} conflict(s)")
        head = f"{rec['type']} {rec['id']}" + (f"  [{', '.join(flags)}]" if flags else "")
        lines.append(head)
        width = max((len(n) for n in rec["fields"]), default=0)
        for name, value in rec["fields"].items():
            text = _short(value)
            if name in rec["conflicts"]:
                others = " | ".join(_short(v, 30) for v in rec["conflicts"][name])
                text += f"   <- CONFLICT: {others}"
            lines.append(f"  {name.ljust(width)}  {text}")
        for other in dups.get(rec["id"], []):
            lines.append(f"  likely duplicate of {other}")
        lines.append("")
    lines.append(f"{len(records)} record(s)")
    return "\n".join(lines)


def conflicts_table(items: list[dict[str, Any]]) -> str:
    if not items:
        return "no open conflicts"
    lines = []
    for item in items:
        lines.append(f"{item['type']} {item['record_id']} {item['field']}:")
        for n, v in enumerate(item["values"]):
            mark = "winner" if n == 0 else "      "
            lines.append(
                f"  [{n}] {mark} {_short(v['value'])!s:30}  from {v['device_id']}"
                f" at {hlc_time(v['hlc'])}"
            )
    lines.append(
        f"{len(items)} open conflict(s); close one with"
        " `fieldsync resolve RECORD_ID FIELD --keep N`"
    )
    return "\n".join(lines)


def show(replica: Replica, record_id: str) -> dict[str, Any] | None:
    records = merged_records(replica)
    rec = next((r for r in records if r["id"] == record_id), None)
    if rec is None:
        return None
    return {
        **rec,
        "duplicates": duplicates(records).get(record_id, []),
        "history": replica.history(record_id),
    }


def show_text(rec: dict[str, Any]) -> str:
    lines = records_table([rec]).splitlines()[:-2]  # without the blank line and the count
    for other in rec["duplicates"]:
        lines.append(f"  likely duplicate of {other}")
    lines.append("  history:")
    for h in rec["history"]:
        state = "current" if h["head"] else "superseded"
        lines.append(
            f"    {hlc_time(h['hlc'])}  {h['field']} = {_short(h['value'], 40)}"
            f"  ({state}; device {h['device_id']})"
        )
    return "\n".join(lines)
