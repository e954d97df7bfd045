"""`fieldsync` commands of every device: enrollment, captures, sync and status."""

from __future__ import annotations

import json
from typing import Any

import click

from .kit import (
    RECORD_TYPE_NAMES,
    Session,
    cli,
    emit,
    format_option,
    session,
    set_option,
    type_option,
    values_of,
    warn,
)

# --- enrollment -----------------------------------------------------------------------


@cli.command()
@click.option("--server", required=True, help="The sync server's URL.")
@click.option("--workspace", "name", required=True, help="A name for the workspace (kept here).")
@click.option("--code", required=True, help="One-time code from `fieldsync-server workspace-code`.")
def init(server: str, name: str, code: str) -> None:
    """Found a workspace: this device becomes its first admin coordinator.

    Example: fieldsync init --server http://127.0.0.1:8000 --workspace "Picket log" --code CODE
    """
    from .. import enrol
    from ..profile import new_profile

    with new_profile() as (home, passphrase):
        prof = enrol.init(home, passphrase, server, name, code)
    from protocol.keylog import safety_number

    emit(f"created workspace {prof.workspace_name!r}; this device is its first admin")
    emit(f"device id: {prof.device_id}")
    emit(f"workspace id: {prof.workspace_id}")
    emit(f"safety number: {safety_number(prof.seen[1])}")


@cli.command()
@click.option(
    "--role",
    type=click.Choice(["volunteer", "coordinator"]),
    default="volunteer",
    show_default=True,
)
@click.option("--qr", "qr_path", metavar="FILE", help="Also write the invite as a PNG QR code.")
@click.option(
    "--expires-in",
    "hours",
    type=float,
    default=lambda: _enrol().INVITE_HOURS,
    show_default="168 (7 days)",
    metavar="HOURS",
    help="Hours until the invite expires.",
)
@session
def invite(s: Session, role: str, qr_path: str | None, hours: float) -> None:
    """Admin: make a one-time invite; its string is the last line printed.

    The invite carries secrets: hand it over in person or as a QR code.

    Example: fieldsync invite --role volunteer --qr invite.png
    """
    from .. import enrol

    text = enrol.make_invite(s.prof, s.client(), role, hours)
    s.save()
    if qr_path:
        enrol.write_qr(text, qr_path)
        emit(f"QR code written to {qr_path}")
    emit(f"one-time {role} invite, valid {hours:g} hours; on the new device run: fieldsync join")
    emit(text)


@cli.command()
@click.argument("invite_text", metavar="INVITE")
@click.option("--name", help="Name this workspace on this device (default: the inviter's name).")
def join(invite_text: str, name: str | None) -> None:
    """Enroll this device with an invite; prints its device id last.

    Example: fieldsync join fieldsync-invite:eyJ...
    """
    from .. import enrol
    from ..profile import new_profile

    enrol.read_invite(invite_text)  # a damaged invite fails before any passphrase prompt
    with new_profile() as (home, passphrase):
        prof = enrol.join(home, passphrase, invite_text, name)
    from protocol.keylog import safety_number

    emit(f"joined workspace {prof.workspace_name!r} as {prof.role}")
    emit(f"safety number: {safety_number(prof.seen[1])}")
    if prof.is_keyholder:
        emit(f"an admin must now approve this device: fieldsync approve {prof.device_id}")
    emit(prof.device_id)


@cli.command()
@click.argument("device_id")
@session
def approve(s: Session, device_id: str) -> None:
    """Admin: seal the epoch keys to a coordinator that joined, so it can read.

    Example: fieldsync approve 3q2-7wX1Hc0Kd8pZ4hF1Ag
    """
    from .. import keyring

    keyring.approve(s.prof, s.client(), device_id)
    s.save()
    emit(f"approved {device_id}: it can now pull and decrypt after `fieldsync sync`")


# --- captures -------------------------------------------------------------------------


@cli.command()
@click.argument("record_type", metavar="TYPE", type=click.Choice(RECORD_TYPE_NAMES))
@set_option
@click.option("--json", "json_file", metavar="FILE", help="Field values as one JSON object.")
@session
def add(s: Session, record_type: str, pairs: tuple[str, ...], json_file: str | None) -> None:
    """Record something new; it is sealed at once. Prints the record id last.

    Example: fieldsync add picket --set date=2026-12-04 --set attendance=40
    """
    from .. import outbox

    replica = s.writable_replica()
    record_id = outbox.add(s.prof, record_type, values_of(pairs, json_file), replica)
    s.save()
    emit(f"sealed a new {record_type}; {len(s.prof.state['outbox'])} bundle(s) waiting to sync")
    emit(record_id)


@cli.command()
@click.argument("record_id")
@type_option("The record's type, when this device did not create it.")
@set_option
@session
def edit(s: Session, record_id: str, record_type: str | None, pairs: tuple[str, ...]) -> None:
    """Change fields of a record; a volunteer's edit replaces only its own earlier value.

    Example: fieldsync edit 6JrG1k2m9bq8ZQ0bq1cV_w --set released_at=2026-12-04T21:10
    """
    from .. import outbox

    replica = s.writable_replica()
    rtype = outbox.edit(s.prof, record_id, record_type, values_of(pairs), replica)
    s.save()
    emit(f"sealed an edit of {rtype} {record_id}")


@cli.command()
@click.argument("record_id")
@type_option("The record's type, when this device did not create it.")
@session
def delete(s: Session, record_id: str, record_type: str | None) -> None:
    """Mark a record deleted (a later or concurrent edit keeps it).

    Example: fieldsync delete 6JrG1k2m9bq8ZQ0bq1cV_w
    """
    from .. import outbox

    replica = s.writable_replica()
    rtype = outbox.delete(s.prof, record_id, record_type, replica)
    s.save()
    emit(f"sealed the deletion of {rtype} {record_id}")


# --- sync and status ------------------------------------------------------------------


@cli.command()
@click.option(
    "--batch-size",
    type=click.IntRange(1, 500),
    default=lambda: _sync().PUSH_BATCH,
    show_default="100",
    help="Bundles per push request.",
)
@session
def sync(s: Session, batch_size: int) -> None:
    """Push the outbox; a coordinator then pulls and merges. Safe to rerun.

    Example: fieldsync sync
    """
    from .. import sync as syncing

    pushed, pulled = syncing.sync(s.prof, s.client(), batch_size)
    emit(
        f"pushed {pushed.accepted + pushed.stored} bundle(s): {pushed.accepted} accepted,"
        f" {pushed.stored} already stored, {len(pushed.rejected)} rejected"
    )
    for line in pushed.rejected:
        warn(line)
    if pulled is not None:
        if pulled.skipped:
            warn(pulled.skipped)
        else:
            emit(f"pulled {pulled.bundles} new bundle(s), {pulled.cells} cell(s)")
            for line in pulled.problems:
                warn(line)
            if pulled.failed:
                warn(f"{pulled.failed} bundle(s) failed verification and were not merged")
            if pulled.exposed:
                warn(
                    f"{pulled.exposed} stored bundle(s) are still sealed to an older epoch key"
                    " that a revoked coordinator held: run `fieldsync rotate --rekey --resume`"
                )


@cli.command()
@format_option("text", "json")
@session
def status(s: Session, fmt: str) -> None:
    """Role, workspace, epoch, outbox size and last sync (offline).

    Example: fieldsync status --format json
    """
    prof = s.prof
    me = prof.me()
    info: dict[str, Any] = {
        "role": me.role,
        "status": me.status,
        "workspace": prof.workspace_name,
        "workspace_id": prof.workspace_id,
        "device_id": prof.device_id,
        "server": prof.server,
        "epoch": prof.log().current_epoch,
        "outbox": len(prof.state["outbox"]),
        "rejected": [
            {
                "bundle_id": r["bundle"]["bundle_id"],
                "seq": r["bundle"]["seq"],
                "code": r["error"]["code"],
                "message": r["error"]["message"],
            }
            for r in prof.state["rejected"]
        ],
        "last_sync": prof.state["last_sync"],
        "kdf": "argon2id m={}KiB t={} p={}".format(*prof.vault.cost)
        + (" (FIELDSYNC_KDF_FAST: for tests only)" if prof.vault.fast_kdf else ""),
    }
    replica = None
    if me.is_keyholder:  # a volunteer's status does not load the replica's code
        from ..replica import open_replica

        replica = open_replica(prof)
    if replica is not None:
        info["replica"] = replica.counts()
        info["problems"] = replica.problems()
        replica.close()
    if fmt == "json":
        emit(json.dumps(info, indent=2, ensure_ascii=False))
        return
    for key, value in info.items():
        if key == "rejected":
            value = len(value)
        if key == "problems":
            value = len(value)
        emit(f"{key}: {value if value is not None else 'never'}")
    for r in info["rejected"]:
        warn(f"rejected bundle {r['seq']} ({r['bundle_id']}): {r['code']}: {r['message']}")
    for p in info.get("problems", []):
        warn(p)


# Imported when a command runs, not when the command line starts (`fieldsync --help`).


def _enrol() -> Any:
    from .. import enrol

    return enrol


def _sync() -> Any:
    from .. import sync

    return sync
