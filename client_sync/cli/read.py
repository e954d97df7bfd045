"""`fieldsync` commands of coordinators: the merged records, conflicts, export."""

from __future__ import annotations

import json
from pathlib import Path

import click

from schemas.records import RECORD_TYPES

from .. import operations, outbox, view
from ..errors import CliError, UsageError
from ..vault import write_atomic
from .kit import Session, cli, emit, format_option, session, unlocked

# --- the coordinator's view -----------------------------------------------------------


@cli.command()
@click.option(
    "--type", "record_type", type=click.Choice(list(RECORD_TYPES)), help="Only this type."
)
@format_option("table", "json", "csv")
@session
def records(s: Session, record_type: str | None, fmt: str) -> None:
    """Coordinator: the merged records, with open conflicts and likely duplicates.

    Example: fieldsync records --type detention --format json
    """
    replica = s.reading_replica("read records")
    recs = view.merged_records(replica, record_type)
    if fmt == "json":
        emit(view.to_json(recs))
    elif fmt == "csv":  # the sheet `export --format csv` writes, on standard output
        click.echo(operations.export(s, "csv", record_type, bom=False)[0], nl=False)
    else:
        emit(view.records_table(recs))


@cli.command()
@click.argument("record_id")
@format_option("text", "json")
@session
def show(s: Session, record_id: str, fmt: str) -> None:
    """Coordinator: one record's fields, open conflicts, duplicates and history.

    Example: fieldsync show 6JrG1k2m9bq8ZQ0bq1cV_w
    """
    replica = s.reading_replica("read records")
    rec = view.show(replica, outbox.check_record_id(record_id))
    if rec is None:
        raise CliError(f"no record {record_id} in this replica: run `fieldsync sync` first")
    emit(view.to_json(rec) if fmt == "json" else view.show_text(rec))


@cli.command()
@format_option("text", "json")
@session
def conflicts(s: Session, fmt: str) -> None:
    """Coordinator: every field with more than one open value, winner first.

    Example: fieldsync conflicts --format json
    """
    replica = s.reading_replica("read conflicts")
    items = view.conflicts(replica, operations.device_names(s))
    emit(view.to_json(items) if fmt == "json" else view.conflicts_table(items))


@cli.command()
@click.argument("record_id")
@click.argument("field")
@click.option("--value", help="A new value for the field.")
@click.option("--keep", type=int, metavar="N", help="Keep value N of `fieldsync conflicts`.")
def resolve(record_id: str, field: str, value: str | None, keep: int | None) -> None:
    """Coordinator: close a conflict by keeping one of its values or writing a new one.

    Example: fieldsync resolve 6JrG1k2m9bq8ZQ0bq1cV_w attendance --keep 1
    """
    if (value is None) == (keep is None):
        raise UsageError("give exactly one of --value VALUE or --keep N")
    outbox.check_record_id(record_id)
    with unlocked() as s:
        chosen = operations.resolve(s, record_id, field, value, keep)
    emit(
        f"resolved {field} of {record_id} to {json.dumps(chosen, ensure_ascii=False)};"
        " `fieldsync sync` sends it"
    )


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), required=True)
@click.option("--out", "out_path", required=True, metavar="PATH", help="File to write.")
@click.option(
    "--type", "record_type", type=click.Choice(list(RECORD_TYPES)), help="Only this type."
)
@click.option("--deleted", is_flag=True, help="CSV: include deleted records (a column says).")
def export(fmt: str, out_path: str, record_type: str | None, deleted: bool) -> None:
    """Coordinator: write the merged records to a file (plaintext: handle with care).

    CSV is one sheet per --type (or all types in one), open conflicts marked.

    Example: fieldsync export --format csv --type detention --out detentions.csv
    """
    with unlocked() as s:
        text, count = operations.export(s, fmt, record_type, deleted=deleted)
    try:
        write_atomic(Path(out_path), text.encode("utf-8"))
    except OSError as exc:
        raise CliError(f"cannot write {out_path}: {exc.strerror}") from None
    emit(
        f"exported {count} record(s) to {out_path};"
        " it is plaintext: keep it where the records may be"
    )
