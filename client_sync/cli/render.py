"""Text forms of the read layer's records and conflicts, for a terminal."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from ..files import is_file
from ..review import Conflict, Detail
from ..view import Record, cell_text, hlc_time


def _short(value: Any, width: int = 60) -> str:
    text = cell_text(value).replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def record_lines(rec: Record) -> list[str]:
    """One block: its fields, open conflicts, values that fail their schema, duplicates."""
    flags = []
    if rec.deleted:
        flags.append("DELETED")
    if rec.conflicts:
        flags.append(f"{len(rec.conflicts)} conflict(s)")
    invalid = rec.invalid
    if invalid:
        flags.append(f"{len(invalid)} invalid value(s)")
    lines = [f"{rec.type} {rec.id}" + (f"  [{', '.join(flags)}]" if flags else "")]
    fields = rec.fields
    width = max((len(n) for n in [*fields, *invalid]), default=0)
    for name, value in fields.items():
        text = _short(value)
        if name in rec.conflicts:
            others = " | ".join(_short(v, 30) for v in rec.conflicts[name])
            text += f"   <- CONFLICT: {others}"
        if name in invalid:
            text += f"   <- INVALID: {invalid[name]['problem']}"
        lines.append(f"  {name.ljust(width)}  {text}")
    for name, bad in invalid.items():
        if name not in fields:
            text = f"{_short(bad['value'])}   <- INVALID: {bad['problem']}"
            lines.append(f"  {name.ljust(width)}  {text}")
    for other in rec.duplicates:
        lines.append(f"  likely duplicate of {other}")
    return lines


# The columns a table shows of each type (the rest is in `show` and the exports).
TABLE_COLUMNS = {
    "picket": [("date", 10), ("place", 34), ("attendance", 10), ("police_action", 24)],
    "detention": [("person_name", 26), ("detained_at", 16), ("held_at", 28), ("fine_amount", 11)],
    "relative": [("full_name", 28), ("status", 12), ("whereabouts", 13), ("detained_since", 14)],
}
OTHER_COLUMNS = [("type", 10), ("fields", 60)]


def _cell(value: Any, width: int) -> str:
    text = _short(value, width)
    return text + " " * (width - len(text))


def records_table(records: Iterable[Record], record_type: str | None = None) -> Iterator[str]:
    """A table, one line a record (a long listing streams): the id, marks for open
    conflicts (C), likely duplicates (D), values that fail their schema (!) and
    deletion (X), then the main columns of the type; records of another type than
    the table's show their type and fields in brief. Then the count."""
    columns = TABLE_COLUMNS.get(record_type or "", OTHER_COLUMNS)
    head = f"{'id':<22}  {'':4}  " + "  ".join(_cell(name, w) for name, w in columns)
    yield head.rstrip()
    yield "-" * len(head.rstrip())
    n = 0
    for rec in records:
        n += 1
        marks = (
            ("C" if rec.conflicts else " ")
            + ("D" if rec.duplicates else " ")
            + ("!" if rec.invalid else " ")
            + ("X" if rec.deleted else " ")
        )
        fields = rec.fields
        if record_type is not None and rec.type == record_type:
            cells = [_cell(fields.get(name), w) for name, w in columns]
        else:
            brief = ", ".join(f"{k}={_short(v, 20)}" for k, v in fields.items())
            cells = [_cell(rec.type, OTHER_COLUMNS[0][1]), _cell(brief, OTHER_COLUMNS[1][1])]
        yield f"{rec.id:<22}  {marks}  " + "  ".join(cells).rstrip()
    yield f"{n} record(s); C open conflict, D likely duplicate, ! invalid value, X deleted"


def records_text(records: Iterable[Record]) -> Iterator[str]:
    """Blocks of lines, one record at a time (a long listing streams), then the count."""
    n = 0
    for rec in records:
        n += 1
        yield "\n".join([*record_lines(rec), ""])
    yield f"{n} record(s)"


def _who(device_id: str, names: dict[str, str] | None) -> str:
    name = (names or {}).get(device_id)
    return f"{name} ({device_id})" if name else device_id


def conflicts_table(items: list[Conflict], names: dict[str, str] | None = None) -> str:
    if not items:
        return "no open conflicts"
    lines = []
    for item in items:
        lines.append(f"{item.type} {item.record_id} {item.field}:")
        for n, v in enumerate(item.values):
            mark = "winner" if n == 0 else "      "
            lines.append(
                f"  [{n}] {mark} {_short(v.value)!s:30}  from {_who(v.device_id, names)}"
                f" at {hlc_time(v.hlc)}"
            )
    lines.append(
        f"{len(items)} open conflict(s), oldest first; close one with"
        " `fieldsync resolve RECORD_ID FIELD --keep N`"
    )
    return "\n".join(lines)


def show_text(detail: Detail, names: dict[str, str] | None = None) -> str:
    lines = record_lines(detail.record)
    for link in detail.links_out:
        kind = link["type"] or "not in this replica"
        lines.append(f"  {link['field']} -> {kind} {link['id']}")
    for link in detail.links_in:
        lines.append(f"  <- {link['type']} {link['id']} (its {link['field']})")
    for a in detail.record.attachments:
        lines.append(
            f"  attachment {a['id']}  {a['name']}  ({a['media_type']}, {a['size']:,} bytes)"
            f"  sha256:{a['sha256']}" + ("  <- CONFLICT" if a["conflict"] else "")
        )
        if a["caption"]:
            lines.append(f"    caption: {_short(a['caption'])}")
    if detail.record.attachments:
        lines.append(f"  (`fieldsync open {detail.record.id}` fetches and verifies them)")
    lines.append("  history:")
    for h in detail.history:
        state = "current" if h["head"] else "superseded"
        lines.append(
            f"    {hlc_time(h['hlc'])}  {_history_value(h['field'], h['value'])}"
            f"  ({state}; device {_who(h['device_id'], names)})"
        )
    return "\n".join(lines)


def _history_value(field: str, value: Any) -> str:
    """One change of a field; an attachment's as its name (its descriptor is in JSON)."""
    if is_file(field):
        if isinstance(value, dict) and isinstance(value.get("name"), str):
            return f"attachment {_short(value['name'], 40)} ({value.get('id')})"
        if value is None:
            return "attachment removed"
    return f"{field} = {_short(value, 40)}"


def json_array(items: Iterable[dict[str, Any]]) -> Iterator[str]:
    """`json.dumps(list(items), indent=2)`, one element at a time."""
    first = True
    for item in items:
        body = json.dumps(item, ensure_ascii=False, indent=2).replace("\n", "\n  ")
        yield ("[\n  " if first else ",\n  ") + body
        first = False
    yield "[]" if first else "\n]"
