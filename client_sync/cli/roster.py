"""`fieldsync` commands of the roster: devices, revoke, rotate, safety number, wipe."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import click

from ..errors import UsageError
from .ids import check_device_id
from .kit import cli, emit, format_option, unlocked, warn

REKEY_PAGE = 200  # client_sync.rekey.PAGE, named here so `--help` loads no core

# --- the roster -----------------------------------------------------------------------


@cli.command()
@format_option("text", "json")
def devices(fmt: str) -> None:
    """The workspace's devices from the verified key log: name, role and status.

    Names are sealed: a coordinator sees every device's name after a sync, a
    volunteer only its own.

    Example: fieldsync devices --format json
    """
    from .. import keyring, team  # noqa: F401 -- when the command runs

    with unlocked() as s:
        items, offline = team.devices(s)
        me = s.prof.device_id
    if offline:
        warn(offline)
    if fmt == "json":
        emit(json.dumps(items, ensure_ascii=False, indent=2))
        return
    width = max((len(d["name"] or "") for d in items), default=0)
    for d in items:
        mine = "  (this device)" if d["device_id"] == me else ""
        emit(
            f"{d['device_id']}  {(d['name'] or '-'):<{width}}  {d['role']:<11}  {d['status']:<7}"
            f"{mine}"
        )


@cli.command()
@click.argument("device_id")
def approve(device_id: str) -> None:
    """Admin: seal the epoch keys to a coordinator that joined, so it can read.

    Example: fieldsync approve 3q2-7wX1Hc0Kd8pZ4hF1Ag
    """
    from .. import keyring, team  # noqa: F401 -- when the command runs

    check_device_id(device_id)
    with unlocked() as s:
        team.approve(s, device_id)
    emit(f"approved {device_id}: it can now pull and decrypt after `fieldsync sync`")


@cli.command()
@click.argument("device_id")
@click.option("--rekey", is_flag=True, help="After a rotation, re-seal stored data too.")
def revoke(device_id: str, rekey: bool) -> None:
    """Admin: revoke a device (a lost phone); a coordinator's revocation also rotates.

    Example: fieldsync revoke 3q2-7wX1Hc0Kd8pZ4hF1Ag --rekey
    """
    from .. import keyring, team  # noqa: F401 -- when the command runs

    check_device_id(device_id)
    with unlocked() as s:
        rotated = team.revoke(s, device_id)
        emit(f"revoked {device_id}")
        if rotated:
            emit(f"rotated the epoch key: now epoch {s.prof.log().current_epoch}")
            if rekey:
                emit(f"re-keyed {team.rekey(s, REKEY_PAGE)} stored bundle(s)")


@cli.command()
@click.option("--rekey", is_flag=True, help="Then re-seal every stored bundle to the new key.")
@click.option("--resume", is_flag=True, help="With --rekey: finish an interrupted re-key only.")
@click.option(
    "--batch-size",
    type=click.IntRange(1, 1000),
    default=REKEY_PAGE,
    show_default=True,
    help="Bundles per re-key page (one server transaction each).",
)
def rotate(rekey: bool, resume: bool, batch_size: int) -> None:
    """Admin: a new epoch key for new captures; --rekey re-seals stored data to it.

    Example: fieldsync rotate --rekey
    """
    from .. import keyring, team

    if resume and not rekey:
        raise UsageError("--resume goes with --rekey")
    with unlocked() as s:
        if not resume:
            emit(f"rotated the epoch key: now epoch {team.rotate(s)}")
        else:
            keyring.refresh_log(s.prof, s.client())
        if rekey:
            emit(f"re-keyed {team.rekey(s, batch_size)} stored bundle(s)")


@cli.command()
@click.option("--code", required=True, help="A one-time code from the server operator.")
def recreate(code: str) -> None:
    """Admin: rebuild a workspace the server lost (no backup) from this device's key log.

    Every device then re-sends, at its next sync, what it still keeps.

    Example: fieldsync recreate --code 9Xq2-kTz0Pw7bLm4
    """
    from .. import team

    with unlocked() as s:
        length, ws = team.recreate(s, code)
    emit(
        f"recreated workspace {ws} from this device's key log ({length} events); devices"
        " re-send what they keep at their next sync: run `fieldsync sync`"
    )


@cli.command("safety-number")
def safety_number() -> None:
    """Fetch and verify the key log; print its safety number to compare between devices.

    Example: fieldsync safety-number
    """
    from .. import keyring, team  # noqa: F401 -- when the command runs

    with unlocked() as s:
        emit(team.safety_number(s))


@cli.command()
@click.option("--yes", is_flag=True, help="Really destroy this device's profile.")
def wipe(yes: bool) -> None:
    """Destroy this device's profile: keys, unsent captures, replica. No passphrase needed.

    Example: fieldsync wipe --yes
    """
    if not yes:
        raise UsageError(
            "wipe destroys this device's keys and any unsent captures: rerun with --yes"
        )
    from ..attachments import CHUNK_DIR
    from ..profile import LOCK_FILE, REPLICA_FILES, VAULT_FILE, home_dir

    home = home_dir()
    removed = 0
    for name in (VAULT_FILE, *REPLICA_FILES):
        path = home / name
        if path.exists():
            _shred(path)
            removed += 1
    for leftover in home.glob(".*.tmp"):
        _shred(leftover)
    # The sealed chunks of attachments not yet confirmed: unreadable without the vault,
    # but their count and sizes would still say how much was filmed.
    chunks = home / CHUNK_DIR
    if chunks.is_dir():
        for chunk in chunks.iterdir():
            if chunk.is_file():
                _shred(chunk)
                removed += 1
        with contextlib.suppress(OSError):
            chunks.rmdir()
    (home / LOCK_FILE).unlink(missing_ok=True)
    try:
        home.rmdir()
    except OSError:
        pass  # other files the user keeps there
    emit("wiped this device's fieldsync profile" if removed else f"no profile in {home}")


def _shred(path: Path) -> None:
    # Overwriting first helps on plain disks; on flash it may not reach the old
    # blocks, which is why the vault was encrypted in the first place.
    try:
        size = path.stat().st_size
        with open(path, "r+b") as fh:
            fh.write(os.urandom(size))
            fh.flush()
            os.fsync(fh.fileno())
    finally:
        path.unlink(missing_ok=True)
