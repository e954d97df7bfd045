"""`fieldsync` commands for attachments: attach files to a record, remove one, and (for
coordinators) open them, verified."""

from __future__ import annotations

from pathlib import Path

import click

from .kit import cli, emit, type_option, unlocked


@cli.command()
@click.argument("record_id")
@click.argument(
    "files", metavar="FILE...", nargs=-1, required=True, type=click.Path(dir_okay=False)
)
@type_option("The record's type, when this device did not create it.")
@click.option("--caption", metavar="TEXT", help="A caption, sealed with each file.")
def attach(
    record_id: str, files: tuple[str, ...], record_type: str | None, caption: str | None
) -> None:
    """Attach photos, video or documents to a record; each file is sealed at once.

    The file is sealed whole, its metadata (EXIF, GPS) untouched, with the SHA-256 of
    its bytes taken now; this device keeps no readable copy of what it sealed (the
    original stays where it was). `fieldsync sync` sends it, resuming after a cut.
    Prints, per file, its name, size and SHA-256; then the attachment ids, one a line,
    in the order of the files.

    Example: fieldsync attach 6JrG1k2m9bq8ZQ0bq1cV_w van.jpg notice.pdf --caption "Gate 2"
    """
    from .. import attachments, operations, outbox

    outbox.check_record_id(record_id)
    paths = [Path(f) for f in files]
    attachments.check_paths(paths)  # before the passphrase is asked for
    attachments.check_caption(caption)
    with unlocked() as s:
        made = operations.attach(s, record_id, paths, record_type, caption)
        waiting = len(s.prof.state["outbox"])
    for a in made:
        emit(f"sealed {a.name} ({a.size:,} bytes, {a.chunks} chunk(s)) sha256:{a.sha256}")
    emit(f"{len(made)} file(s) attached; {waiting} bundle(s) waiting to sync")
    for a in made:
        emit(a.attachment_id)


@cli.command()
@click.argument("record_id")
@click.argument("attachment_id")
@type_option("The record's type, when this device did not create it.")
@click.option(
    "--purge",
    is_flag=True,
    help="Admins: let the server drop the chunks at once, not after every coordinator synced.",
)
def detach(record_id: str, attachment_id: str, record_type: str | None, purge: bool) -> None:
    """Remove an attachment from a record; its chunks are released at the next sync.

    The server drops them once every coordinator has synced past the removal (or at
    once with --purge). Coordinators who opened the file keep their copy.

    Example: fieldsync detach 6JrG1k2m9bq8ZQ0bq1cV_w q2Jc5bq8ZQ0bq1cV_w6JrG
    """
    from .. import operations, outbox, releases

    outbox.check_record_id(record_id)
    releases.attachment_field(attachment_id)  # before the passphrase is asked for
    with unlocked() as s:
        rtype = operations.detach(s, record_id, attachment_id, record_type, purge)
    emit(f"sealed the removal of attachment {attachment_id} from {rtype} {record_id}")


@cli.command("open")
@click.argument("record_id")
@click.option(
    "--out",
    "out_dir",
    metavar="DIR",
    default=".",
    show_default=True,
    help="Where to write the files (created if missing).",
)
def open_command(record_id: str, out_dir: str) -> None:
    """Coordinator: fetch a record's attachments, verify them, write them into DIR.

    Every chunk is checked as it arrives, the whole file against the SHA-256 sealed at
    capture; verified files are kept in the encrypted replica, so a second open needs
    no network. A file the server altered, cut, reordered or took from another
    attachment is refused (exit 5) with a code that says which. Prints each file's
    path and verified SHA-256.

    Example: fieldsync open 6JrG1k2m9bq8ZQ0bq1cV_w --out ./evidence
    """
    from .. import operations, outbox
    from .read import check_out_dir

    outbox.check_record_id(record_id)
    check_out_dir("--out", Path(out_dir))
    with unlocked() as s:
        opened = operations.open_attachments(s, record_id, Path(out_dir))
    if not opened:
        emit(f"record {record_id} has no attachments")
        return
    for o in opened:
        emit(f"{o.path}  sha256:{o.sha256}  verified ({o.descriptor.size:,} bytes)")
