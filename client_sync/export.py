"""Exports of the merged records: their columns and how a value reads in a cell."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from schemas.records import RECORD_TYPES, field_names

if TYPE_CHECKING:
    from .replica import Replica
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


CONFLICT_SEP = " ‖ "  # between the open values of a field in a CSV cell, winner first


def sheet(
    replica: Replica,
    record_type: str | None,
    *,
    deleted: bool = False,
    names: dict[str, str] | None = None,
    records: Iterable[Record] | None = None,
    files: Callable[[str, Any], list[dict[str, Any]]] | None = None,
) -> tuple[list[str], Iterator[list[str]]]:
    """A sheet of one type (or of every type, when None): its header and its rows,
    streamed in capture order (memory stays flat whatever the replica's size).

    Columns: id, (type,) who recorded it and when, then the type's fields (a
    detention's picket also by its date and place, beside its id), and the fields
    with open conflicts. A field with an open conflict holds every open value, the
    winner first, joined by `CONFLICT_SEP`: never hidden. Deleted records are left out
    unless `deleted`, which adds a `deleted` column. With `files` (`fetching.Exported`),
    an `attachments` column: each exported file's path and verified SHA-256, a line each.
    """
    from schemas.records import specs

    from . import view

    named = names or {}
    fields = [f.name for f in specs(record_type)] if record_type else export_columns()[3:]
    columns = ["id"] + ([] if record_type else ["type"]) + ["recorded_by", "recorded_at"]
    for name in fields:
        columns.append(name)
        if name == "picket_id":
            columns += ["picket_date", "picket_place"]
    if deleted:
        columns.append("deleted")
    if files is not None:
        columns.append("attachments")
    columns.append("conflicts")

    def rows() -> Iterator[list[str]]:
        batch: list[view.Record] = []
        chosen = records
        if chosen is None:
            chosen = view.iter_records(replica, record_type, include_deleted=deleted)
        for rec in chosen:
            batch.append(rec)
            if len(batch) == view.STREAM_BATCH:
                yield from _rows(batch)
                batch = []
        yield from _rows(batch)

    def _rows(batch: list[view.Record]) -> Iterator[list[str]]:
        linked = {r.fields.get("picket_id") for r in batch} - {None}
        pickets = {p.id: p for p in view.load(replica, sorted(str(x) for x in linked), False)}
        firsts = _first_writers(replica, [r.id for r in batch])
        for rec in batch:
            conflicts = rec.conflicts
            device = firsts.get(rec.id)
            row = {
                "id": rec.id,
                "type": rec.type,
                "recorded_by": named.get(device or "", device or ""),
                "recorded_at": view.hlc_time(rec.recorded),
                "deleted": cell_text(rec.deleted),
                "conflicts": " ".join(sorted(conflicts)),
            }
            values = rec.fields
            for name in fields:
                if name in conflicts:
                    row[name] = CONFLICT_SEP.join(cell_text(v) for v in conflicts[name])
                else:
                    row[name] = cell_text(values.get(name))
            picket = pickets.get(str(values.get("picket_id")))
            row["picket_date"] = cell_text(picket.fields.get("date")) if picket else ""
            row["picket_place"] = cell_text(picket.fields.get("place")) if picket else ""
            if files is not None:
                from .fetching import cell

                row["attachments"] = cell(files(rec.id, rec.values))
            yield [row.get(c, "") for c in columns]

    return columns, rows()


def _first_writers(replica: Replica, ids: list[str]) -> dict[str, str]:
    """record id -> the device that wrote its first cell (who recorded it)."""
    out: dict[str, str] = {}
    for rid in ids:
        row = replica.db.execute(
            "SELECT c.device_id FROM records r JOIN cells c ON c.rid = r.rid"
            " WHERE r.record_id = ? ORDER BY c.hlc, c.cell_id LIMIT 1",
            (rid,),
        ).fetchone()
        if row is not None:
            out[rid] = str(row[0])
    return out


def csv_text(columns: list[str], rows: Iterable[list[str]], *, bom: bool = True) -> Iterator[str]:
    """CSV text in pieces; a byte-order mark first so spreadsheet programs read it as
    UTF-8 (Cyrillic, Chinese and Arabic-script names intact)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if bom:
        buf.write("\ufeff")
    writer.writerow(columns)
    for n, row in enumerate(rows):
        writer.writerow(row)
        if n % 200 == 199:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()
