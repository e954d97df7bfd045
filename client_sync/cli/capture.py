"""`fieldsync` commands that record: add, edit, delete, and the outbox of captures to send."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from ..errors import UsageError
from .ids import IdCommand
from .kit import (
    RECORD_TYPE_NAMES,
    cli,
    emit,
    format_option,
    set_option,
    type_option,
    unlocked,
    values_of,
)


def _fields_help() -> str:
    """The fields of every type, for `add --help` (the schema is the one source)."""
    from schemas.records import RECORD_TYPES, specs

    lines = ["\b", "Fields (* required on add):"]
    for rtype in RECORD_TYPES:
        names = []
        for spec in specs(rtype):
            mark = "*" if spec.required else ""
            choices = "=" + "|".join(v for v, _ in spec.choices) if spec.choices else ""
            names.append(f"{spec.name}{mark}{choices}")
        lines.append(f"  {rtype}: " + ", ".join(names))
    return "\n".join(lines)


class AddCommand(IdCommand):
    """`add`, whose help lists every field of every type, read from the schema only when
    the help is shown (so that the command line starts without loading the schemas)."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_paragraph()
        with formatter.indentation():
            formatter.write_text(_fields_help())


def _prompt_values(record_type: str) -> dict[str, Any]:
    """Ask for each field on the terminal: required ones first, choices listed, a blank
    answer skips an optional field, a wrong value is asked again at once."""
    from schemas.records import RecordError, load_fields, specs

    values: dict[str, Any] = {}
    ordered = sorted((f for f in specs(record_type) if f.capture), key=lambda f: not f.required)
    click.echo(f"A new {record_type}. Required fields are marked *; Enter skips the others.")
    for spec in ordered:
        if spec.choices:
            click.echo(f"  {spec.name}: one of " + ", ".join(v for v, _ in spec.choices))
        while True:
            label = f"{spec.name}{' *' if spec.required else ''}"
            hint = f" ({spec.help})" if spec.help else ""
            answer = click.prompt(f"{label}{hint}", default="", show_default=False).strip()
            if not answer:
                if spec.required:
                    click.echo("    required: fill this in")
                    continue
                break
            try:
                load_fields(record_type, {spec.name: answer})
            except RecordError as exc:
                click.echo(f"    {exc}")
                continue
            values[spec.name] = answer
            break
    return values


@cli.command(cls=AddCommand)
@click.argument("record_type", metavar="TYPE", type=click.Choice(RECORD_TYPE_NAMES))
@set_option
@click.option("--json", "json_file", metavar="FILE", help="Field values as one JSON object.")
def add(record_type: str, pairs: tuple[str, ...], json_file: str | None) -> None:
    """Record something new; it is sealed at once. Prints the record id last.

    With no --set and no --json on a terminal, asks for each field in turn.

    Example: fieldsync add picket --set date=2026-12-04 --set place="Consulate gate"
    """
    from .. import operations, outbox

    values = values_of(pairs, json_file)
    if not values:
        if not sys.stdin.isatty():
            raise UsageError(
                "nothing to record: give --set FIELD=VALUE (see `fieldsync add --help`)"
            )
        with unlocked() as s:
            s.prof.require_active()
            values = _prompt_values(record_type)
            record_id = operations.add(s, record_type, values)
            waiting = len(s.prof.state["outbox"])
    else:
        outbox.validate(record_type, values, whole=True)  # wrong values: before the passphrase
        with unlocked() as s:
            record_id = operations.add(s, record_type, values)
            waiting = len(s.prof.state["outbox"])
    emit(f"sealed a new {record_type}; {waiting} bundle(s) waiting to sync")
    emit(record_id)


@cli.command()
@click.argument("record_id")
@type_option("The record's type, when this device did not create it.")
@set_option
def edit(record_id: str, record_type: str | None, pairs: tuple[str, ...]) -> None:
    """Change fields of a record; a volunteer's edit replaces only its own earlier value.

    Example: fieldsync edit 6JrG1k2m9bq8ZQ0bq1cV_w --set released_at=2026-12-04T21:10
    """
    from .. import operations, outbox

    outbox.check_record_id(record_id)
    values = values_of(pairs)
    if not values:
        raise UsageError("nothing to change: give at least one --set FIELD=VALUE")
    if record_type is not None:
        outbox.validate(record_type, values)
    else:
        outbox.check_field_names(values)  # the type is known only once unlocked
    with unlocked() as s:
        rtype = operations.edit(s, record_id, record_type, values)
    emit(f"sealed an edit of {rtype} {record_id}")


@cli.command()
@click.argument("record_id")
@type_option("The record's type, when this device did not create it.")
@click.option(
    "--purge",
    is_flag=True,
    help="Admins: let the server drop its attachments' chunks at once.",
)
def delete(record_id: str, record_type: str | None, purge: bool) -> None:
    """Mark a record deleted (a later or concurrent edit keeps it); its attachments'
    chunks are released once every coordinator has synced past the deletion.

    Example: fieldsync delete 6JrG1k2m9bq8ZQ0bq1cV_w
    """
    from .. import operations, outbox

    outbox.check_record_id(record_id)
    with unlocked() as s:
        rtype = operations.delete(s, record_id, record_type, purge)
    emit(f"sealed the deletion of {rtype} {record_id}")


@cli.command("outbox")
@click.option(
    "--discard",
    "discard_id",
    metavar="BUNDLE_ID",
    help="Take back a capture that was not sent yet (its bundle id, from this list).",
)
@format_option("text", "json")
def outbox_command(discard_id: str | None, fmt: str) -> None:
    """What this device still has to send, and what it sent that no coordinator has
    confirmed yet: type and time of each capture, never its content.

    Example: fieldsync outbox --format json
    """
    from .. import operations

    with unlocked() as s:
        if discard_id is not None:
            gone = operations.discard(s, discard_id)
            emit(f"discarded the {gone.action} of {gone.record_type} {gone.record_id}")
        items = operations.waiting(s)
    if fmt == "json":
        emit(json.dumps([vars(i) for i in items], indent=2))
        return
    if not items:
        emit("nothing waits to be sent")
        return
    for i in items:
        if i.state == "sent":
            mark = "  (sent, waiting for a coordinator's receipt)"
        else:
            mark = "" if i.discardable else "  (a later capture builds on it)"
        emit(f"{i.seq:>5}  {i.at or '?':20}  {i.action:8} {i.record_type:10} {i.bundle_id}{mark}")
    unsent = sum(i.state == "waiting" for i in items)
    if unsent:
        emit(f"{unsent} capture(s) wait to be sent: run `fieldsync sync`")
    if len(items) > unsent:
        emit(
            f"{len(items) - unsent} sent capture(s) are kept, sealed, until a coordinator"
            " confirms it holds them"
        )


@cli.command("name")
@click.argument("device_name", metavar="NAME")
def name_command(device_name: str) -> None:
    """Name this device for the workspace's coordinators (sealed: the server never sees it).

    Example: fieldsync name "Asel's phone"
    """
    from schemas.records import RecordError, load_device_name

    from .. import operations, outbox

    try:
        load_device_name(device_name)  # before the passphrase is asked for
    except RecordError as exc:
        raise outbox.InvalidValues(exc) from None
    with unlocked() as s:
        clean = operations.name_device(s, device_name)
    emit(f"this device is now named {clean!r}; `fieldsync sync` sends it")
