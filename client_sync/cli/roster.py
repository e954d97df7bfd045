"""`fieldsync` commands of the roster: devices, revoke, rotate, safety number, wipe."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from ..errors import CliError, UsageError
from .kit import Session, cli, emit, format_option, session, warn

# --- the roster -----------------------------------------------------------------------


@cli.command()
@format_option("text", "json")
@session
def devices(s: Session, fmt: str) -> None:
    """The workspace's devices from the verified key log: role and status.

    Example: fieldsync devices --format json
    """
    from .. import keyring

    try:
        log = keyring.refresh_log(s.prof, s.client())
        s.prof.save()
    except CliError as exc:
        if exc.exit_code != 4:
            raise
        warn(f"offline ({exc.message}); showing the key log as of the last sync")
        log = s.prof.log()
    devs = sorted(log.devices.values(), key=lambda d: d.since)
    items = [{"device_id": d.device_id, "role": d.role, "status": d.status} for d in devs]
    if fmt == "json":
        emit(json.dumps(items, ensure_ascii=False, indent=2))
        return
    for d in items:
        me = "  (this device)" if d["device_id"] == s.prof.device_id else ""
        emit(f"{d['device_id']}  {d['role']:<11}  {d['status']:<7}{me}")


@cli.command()
@click.argument("device_id")
@click.option("--rekey", is_flag=True, help="After a rotation, re-seal stored data too.")
@session
def revoke(s: Session, device_id: str, rekey: bool) -> None:
    """Admin: revoke a device (a lost phone); a coordinator's revocation also rotates.

    Example: fieldsync revoke 3q2-7wX1Hc0Kd8pZ4hF1Ag --rekey
    """
    from .. import keyring
    from .. import rekey as rekeying

    client = s.client()
    rotated = keyring.revoke(s.prof, client, device_id)
    s.save()
    emit(f"revoked {device_id}")
    if rotated:
        emit(f"rotated the epoch key: now epoch {s.prof.log().current_epoch}")
        if rekey:
            _rekey(s, client, rekeying.PAGE)


@cli.command()
@click.option("--rekey", is_flag=True, help="Then re-seal every stored bundle to the new key.")
@click.option("--resume", is_flag=True, help="With --rekey: finish an interrupted re-key only.")
@click.option(
    "--batch-size",
    type=click.IntRange(1, 1000),
    default=lambda: _rekey_page(),
    show_default="200",
    help="Bundles per re-key page (one server transaction each).",
)
@session
def rotate(s: Session, rekey: bool, resume: bool, batch_size: int) -> None:
    """Admin: a new epoch key for new captures; --rekey re-seals stored data to it.

    Example: fieldsync rotate --rekey
    """
    from .. import keyring

    if resume and not rekey:
        raise UsageError("--resume goes with --rekey")
    client = s.client()
    if not resume:
        epoch = keyring.rotate(s.prof, client)
        s.save()
        emit(f"rotated the epoch key: now epoch {epoch}")
    else:
        keyring.refresh_log(s.prof, client)
    if rekey:
        _rekey(s, client, batch_size)


def _rekey(s: Session, client: Any, batch_size: int) -> None:
    from .. import rekey as rekeying

    try:
        n = rekeying.rekey(s.prof, client, batch_size)
    except CliError as exc:
        s.save()
        # Rerunning the same command would rotate again: say how to finish instead.
        raise CliError(
            f"the re-key stopped ({exc.message}): finish it with"
            " `fieldsync rotate --rekey --resume`",
            exc.exit_code,
        ) from None
    s.save()
    emit(f"re-keyed {n} stored bundle(s)")


@cli.command("safety-number")
@session
def safety_number(s: Session) -> None:
    """Fetch and verify the key log; print its safety number to compare between devices.

    Example: fieldsync safety-number
    """
    from protocol.keylog import safety_number as number

    from .. import keyring

    log = keyring.refresh_log(s.prof, s.client())
    s.prof.save()
    emit(number(log.head))


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


def _rekey_page() -> int:
    from .. import rekey

    return rekey.PAGE
