"""`fieldsync` commands that make a device a member: init, join, invite."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ..errors import UsageError
from .kit import cli, emit, unlocked

if TYPE_CHECKING:
    from ..profile import Profile

INVITE_HOURS = 24 * 7  # client_sync.enrol.INVITE_HOURS, named here so `--help` loads no core

DEVICE_NAME_HELP = (
    "A name for this device that the workspace's coordinators see (the server never"
    ' does), e.g. "Asel\'s phone".'
)


def _check_name(device_name: str | None) -> None:
    from schemas.records import RecordError, load_device_name

    if device_name is not None:
        try:
            load_device_name(device_name)
        except RecordError as exc:
            raise UsageError(f"--device-name: {exc}") from None


def _name(prof: Profile, device_name: str | None) -> None:
    """Seal the new device's name into its outbox (sent with its first sync)."""
    from .. import operations
    from ..device import Session

    if device_name:
        s = Session(prof)
        try:
            operations.name_device(s, device_name)
        finally:
            s.close()


@cli.command()
@click.option("--server", required=True, help="The sync server's URL.")
@click.option("--workspace", "name", required=True, help="A name for the workspace (kept here).")
@click.option("--code", required=True, help="One-time code from `fieldsync-server workspace-code`.")
@click.option("--device-name", help=DEVICE_NAME_HELP)
def init(server: str, name: str, code: str, device_name: str | None) -> None:
    """Found a workspace: this device becomes its first admin coordinator.

    Example: fieldsync init --server http://127.0.0.1:8000 --workspace "Picket log" --code CODE
    """
    from protocol.keylog import safety_number

    from .. import enrol
    from ..profile import new_profile

    enrol.normalize_server(server)  # a malformed URL fails before any passphrase prompt
    _check_name(device_name)
    with new_profile() as (home, passphrase):
        prof = enrol.init(home, passphrase, server, name, code)
        _name(prof, device_name)
    emit(f"created workspace {prof.workspace_name!r}; this device is its first admin")
    emit(f"device id: {prof.device_id}")
    emit(f"workspace id: {prof.workspace_id}")
    emit(f"safety number: {safety_number(prof.seen[1])}")


@cli.command()
@click.argument("invite_text", metavar="INVITE")
@click.option("--name", help="Name this workspace on this device (default: the inviter's name).")
@click.option("--device-name", help=DEVICE_NAME_HELP)
def join(invite_text: str, name: str | None, device_name: str | None) -> None:
    """Enroll this device with an invite; prints its device id last.

    Example: fieldsync join fieldsync-invite:eyJ... --device-name "Asel's phone"
    """
    from protocol.keylog import safety_number

    from .. import enrol
    from ..profile import new_profile

    enrol.read_invite(invite_text)  # a damaged invite fails before any passphrase prompt
    _check_name(device_name)
    with new_profile() as (home, passphrase):
        prof = enrol.join(home, passphrase, invite_text, name)
        _name(prof, device_name)
    emit(f"joined workspace {prof.workspace_name!r} as {prof.role}")
    emit(f"safety number: {safety_number(prof.seen[1])}")
    if prof.is_keyholder:
        emit(f"an admin must now approve this device: fieldsync approve {prof.device_id}")
    emit(prof.device_id)


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
    default=INVITE_HOURS,
    show_default=True,
    metavar="HOURS",
    help="Hours until the invite expires.",
)
def invite(role: str, qr_path: str | None, hours: float) -> None:
    """Admin: make a one-time invite; its string is the last line printed.

    The invite carries secrets: hand it over in person or as a QR code.

    Example: fieldsync invite --role volunteer --qr invite.png
    """
    from .. import enrol, team

    enrol.check_invite_hours(hours)
    with unlocked() as s:
        text = team.invite(s, role, hours)
    if qr_path:
        enrol.write_qr(text, qr_path)
        emit(f"QR code written to {qr_path}")
    emit(f"one-time {role} invite, valid {hours:g} hours; on the new device run: fieldsync join")
    emit(text)
