"""`fieldsync` commands of coordinators: the merged records, conflicts, export.

Thin over the read layer (`client_sync/view.py`), which the workbench uses too:
`records` streams (or pages, with a filter or a sort), `show` reads one record
through indexes, `conflicts` reads the index of open conflicts.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..errors import CliError, UsageError
from .kit import RECORD_TYPE_NAMES, cli, emit, format_option, session, unlocked, warn

if TYPE_CHECKING:
    from .. import view
    from ..device import Session


def _csv_lines(records: Iterable[view.Record]) -> Iterator[str]:
    from .. import view

    cols = view.export_columns()
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    for n, rec in enumerate(records):
        writer.writerow(view.csv_row(rec, cols))
        if n % 200 == 199:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


def _json_lines(records: Iterable[view.Record]) -> Iterator[str]:
    from . import render

    return render.json_array(rec.as_json() for rec in records)


@cli.command()
@click.option("--type", "record_type", type=click.Choice(RECORD_TYPE_NAMES), help="Only this type.")
@click.option("--search", default="", metavar="TEXT", help="Only records with these words.")
@click.option("--sort", "sort_field", metavar="FIELD", help="Order by this field.")
@click.option("--desc", is_flag=True, help="Descending order.")
@click.option(
    "--only",
    type=click.Choice(["conflicts", "duplicates", "invalid"]),  # view.MARKERS
    help="Only records with this marker.",
)
@click.option("--hide-deleted", is_flag=True, help="Leave deleted records out.")
@click.option("--limit", type=click.IntRange(1), metavar="N", help="At most N records.")
@click.option("--offset", type=click.IntRange(0), default=0, metavar="N", help="Skip N first.")
@format_option("table", "text", "json", "csv")
@session
def records(
    s: Session,
    record_type: str | None,
    search: str,
    sort_field: str | None,
    desc: bool,
    only: str | None,
    hide_deleted: bool,
    limit: int | None,
    offset: int,
    fmt: str,
) -> None:
    """Coordinator: the merged records, with open conflicts, likely duplicates and values
    that fail their schema marked. Streams every record in capture order, or a page.

    Example: fieldsync records --type detention --search "Айгүл" --sort detained_at --format json
    """
    from .. import view
    from . import render

    if (sort_field or desc) and record_type is None:
        raise UsageError("--sort and --desc need --type (each type has its own fields)")
    replica = s.reading_replica("read records")
    if search or sort_field or desc or only or limit is not None or offset:
        query = view.Query(
            record_type, search, sort_field, desc, not hide_deleted, only, offset,
            limit if limit is not None else 2**62,
        )  # fmt: skip
        recs: Iterable[view.Record] = view.records_page(replica, query).records
    else:
        recs = view.iter_records(replica, record_type, include_deleted=not hide_deleted)
    chunks: Iterable[str]
    if fmt == "json":
        chunks = itertools.chain(_json_lines(recs), ["\n"])
    elif fmt == "csv":  # the sheet `export --format csv` writes, on standard output
        from .. import operations

        chunks = operations.export(
            s, "csv", record_type, deleted=not hide_deleted, bom=False, records=recs
        )
    else:
        lines = (
            render.records_table(recs, record_type) if fmt == "table" else render.records_text(recs)
        )
        chunks = (line + "\n" for line in lines)
    for chunk in chunks:
        click.echo(chunk, nl=False)


@cli.command()
@click.argument("record_id")
@format_option("text", "json")
def show(record_id: str, fmt: str) -> None:
    """Coordinator: one record's fields, open values, links both ways, duplicates, history.

    Example: fieldsync show 6JrG1k2m9bq8ZQ0bq1cV_w
    """
    from .. import outbox, review, team
    from . import render

    outbox.check_record_id(record_id)  # before the passphrase is asked for
    with unlocked() as s:
        replica = s.reading_replica("read records")
        detail = review.record_detail(replica, record_id)
        if detail is None:
            raise CliError(f"no record {record_id} in this replica: run `fieldsync sync` first")
        names = team.device_names(s)
    if fmt == "json":
        emit(json.dumps(detail.as_json(names), ensure_ascii=False, indent=2))
    else:
        emit(render.show_text(detail, names))


@cli.command()
@format_option("text", "json")
@session
def conflicts(s: Session, fmt: str) -> None:
    """Coordinator: every field with more than one open value, oldest first, winner first.

    Example: fieldsync conflicts --format json
    """
    from .. import review
    from . import render

    replica = s.reading_replica("read conflicts")
    items = review.conflict_queue(replica)
    from .. import team

    names = team.device_names(s)
    if fmt == "json":
        emit(json.dumps([c.as_json(names) for c in items], ensure_ascii=False, indent=2))
    else:
        emit(render.conflicts_table(items, names))


@cli.command()
@click.argument("record_id")
@click.argument("field")
@click.option("--value", help="A new value for the field.")
@click.option(
    "--keep", type=click.IntRange(min=0), metavar="N", help="Keep value N of `fieldsync conflicts`."
)
def resolve(record_id: str, field: str, value: str | None, keep: int | None) -> None:
    """Coordinator: close a conflict by keeping one of its values or writing a new one.

    Example: fieldsync resolve 6JrG1k2m9bq8ZQ0bq1cV_w attendance --keep 1
    """
    from .. import operations, outbox

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
@click.option("--type", "record_type", type=click.Choice(RECORD_TYPE_NAMES), help="Only this type.")
@click.option("--deleted", is_flag=True, help="Include deleted records (a CSV column says).")
@click.option(
    "--attachments",
    "files_dir",
    metavar="DIR",
    help="Also fetch, verify and write the records' attachments into DIR.",
)
@click.option(
    "--strip-metadata",
    is_flag=True,
    help="With --attachments: also a copy of each photo without EXIF, GPS or comments.",
)
def export(
    fmt: str,
    out_path: str,
    record_type: str | None,
    deleted: bool,
    files_dir: str | None,
    strip_metadata: bool,
) -> None:
    """Coordinator: write the merged records to a file (plaintext: handle with care).

    CSV is one sheet of a --type (or of all types), open conflicts marked. With
    --attachments, each file is written as DIR/RECORD_ID/ATTACHMENT_ID/NAME after its
    chunks and its SHA-256 verified, and listed beside its record with that SHA-256.

    Example: fieldsync export --format csv --type detention --out detentions.csv
    """
    from .. import operations

    if strip_metadata and files_dir is None:
        raise UsageError("--strip-metadata needs --attachments DIR (it strips copies of them)")
    files = Path(files_dir) if files_dir is not None else None
    check_out_file(Path(out_path))
    if files is not None:
        check_out_dir("--attachments", files)
    with unlocked() as s:
        out = operations.export(
            s,
            fmt,
            record_type,
            deleted=deleted,
            files=files,
            files_shown=files_dir,
            strip=strip_metadata,
        )
        try:
            _write_atomic(Path(out_path), out)
        except BaseException as exc:
            if out.files is not None:
                out.files.undo()  # no file left without the sheet that lists it
            if isinstance(exc, OSError):
                raise CliError(f"cannot write {out_path}: {exc.strerror}") from None
            raise
    emit(
        f"exported {out.count} record(s) to {out_path};"
        " it is plaintext: keep it where the records may be"
    )
    if out.files is not None:
        emit(
            f"wrote {out.files.files} verified attachment file(s) into {files_dir};"
            " they are plaintext too"
            + (" (stripped copies beside photos)" if strip_metadata else "")
        )
        for line in out.files.warnings:
            warn(line)


def check_out_file(path: Path) -> None:
    """A file to write, checked before the passphrase is asked for and anything is
    written: not a folder, in a folder that exists (the failures, exit 1, that writing
    it would meet only at the end)."""
    if path.is_dir():
        raise CliError(f"cannot write {path}: Is a directory")
    if not path.absolute().parent.is_dir():
        raise CliError(f"cannot write {path}: No such file or directory")


def check_out_dir(option: str, path: Path) -> None:
    """A folder to write into (created if missing), checked first: not a file."""
    if path.exists() and not path.is_dir():
        raise CliError(f"cannot write into {option} {path}: it is a file, not a folder")


def _write_atomic(path: Path, chunks: Iterable[str]) -> None:
    """Stream `chunks` into a new file beside `path`, then put it in place."""
    from ..vault import write_atomic

    write_atomic(path, (chunk.encode("utf-8") for chunk in chunks))
