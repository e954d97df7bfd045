"""Text forms of the read layer's records and conflicts, for a terminal."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from ..view import Conflict, Detail, Record, cell_text, hlc_time


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


def records_table(records: Iterable[Record]) -> Iterator[str]:
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
    lines.append("  history:")
    for h in detail.history:
        state = "current" if h["head"] else "superseded"
        lines.append(
            f"    {hlc_time(h['hlc'])}  {h['field']} = {_short(h['value'], 40)}"
            f"  ({state}; device {_who(h['device_id'], names)})"
        )
    return "\n".join(lines)


def json_array(items: Iterable[dict[str, Any]]) -> Iterator[str]:
    """`json.dumps(list(items), indent=2)`, one element at a time."""
    first = True
    for item in items:
        body = json.dumps(item, ensure_ascii=False, indent=2).replace("\n", "\n  ")
        yield ("[\n  " if first else ",\n  ") + body
        first = False
    yield "[]" if first else "\n]"
