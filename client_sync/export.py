"""Exports of the merged records: their columns and how a value reads in a cell."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from schemas.records import RECORD_TYPES, field_names

if TYPE_CHECKING:
    from .view import Record


def export_columns() -> list[str]:
    cols = ["id", "type", "deleted"]
    for rtype in RECORD_TYPES:
        cols.extend(name for name in field_names(rtype) if name not in cols)
    return cols


def cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def csv_row(rec: Record, cols: list[str]) -> list[str]:
    row = {"id": rec.id, "type": rec.type, "deleted": rec.deleted, **rec.fields}
    return [cell_text(row.get(c)) for c in cols]
