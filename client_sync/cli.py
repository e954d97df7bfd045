"""`fieldsync`: the command line of a device. Thin: each command unlocks the profile,
calls one module, prints. Every expected failure is one `error:` line on stderr and
an exit code from `errors.py`; each command's help carries an example that runs.

Environment: FIELDSYNC_HOME (profile directory, default ~/.fieldsync),
FIELDSYNC_PASSPHRASE (otherwise asked for), FIELDSYNC_KDF_FAST=1 (test suite only).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from schemas.records import RECORD_TYPES

from . import enrol, keyring, outbox, view
from . import sync as syncing
from .errors import EXIT_CODES, CliError, NotAllowed, UsageError
from .profile import LOCK_FILE, REPLICA_FILE, VAULT_FILE, Profile, home_dir, new_profile
from .profile import open_profile as _open_profile
from .replica import Replica, open_replica
from .vault import write_atomic

F = TypeVar("F", bound=Callable[..., Any])

EPILOG = "Exit codes: " + "; ".join(f"{code} {text}" for code, text in EXIT_CODES.items())


def format_option(*choices: str) -> Callable[[F], F]:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(choices),
        default=choices[0],
        show_default=True,
        help="Output format.",
    )


def type_option(help_text: str) -> Callable[[F], F]:
    return click.option(
        "--type", "record_type", type=click.Choice(list(RECORD_TYPES)), help=help_text
    )


def set_option(f: F) -> F:
    return click.option(
        "--set",
        "pairs",
        multiple=True,
        metavar="FIELD=VALUE",
        help="A field value; repeat for more fields.",
    )(f)


def _values(pairs: tuple[str, ...], json_file: str | None = None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if json_file:
        try:
            with open(json_file, encoding="utf-8") as fh:
                loaded = json.load(fh)
        except OSError as exc:
            raise UsageError(f"cannot read {json_file}: {exc.strerror}") from None
        except ValueError as exc:
            raise UsageError(f"{json_file} is not JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise UsageError(f"{json_file} must hold one JSON object of field values")
        values.update(loaded)
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--set takes FIELD=VALUE, got {pair!r}")
        values[name.strip()] = value
    return values


def _emit(text: str) -> None:
    click.echo(text)


def _warn(text: str) -> None:
    click.echo(f"warning: {text}", err=True)


class _Session:
    """An unlocked profile for one command, with its replica for keyholders."""

    def __init__(self, prof: Profile) -> None:
        self.prof = prof
        self.replica: Replica | None = None

    def client(self) -> Any:
        return keyring.client_for(self.prof)

    def writable_replica(self) -> Replica | None:
        """The replica a coordinator's own captures are folded into at once."""
        self.replica = open_replica(self.prof)
        return self.replica

    def reading_replica(self, action: str) -> Replica:
        self.prof.require_keyholder(action)
        self.prof.require_active()
        replica = open_replica(self.prof)
        if replica is None:
            raise NotAllowed(
                "this coordinator is not approved yet: ask an admin to run"
                f" `fieldsync approve {self.prof.device_id}`, then `fieldsync sync`"
            )
        self.replica = replica
        return replica

    def save(self) -> None:
        if self.replica is not None:
            self.replica.save()
        self.prof.save()


def _session(f: Callable[..., Any]) -> Callable[..., Any]:
    """Run the command with the profile unlocked and locked against other commands."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _open_profile() as prof:
            return f(_Session(prof), *args, **kwargs)

    wrapper.__name__ = f.__name__
    wrapper.__doc__ = f.__doc__
    return wrapper


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """fieldsync: end-to-end encrypted, offline-first capture and sync.

    The profile lives in $FIELDSYNC_HOME (default ~/.fieldsync), sealed under a
    passphrase ($FIELDSYNC_PASSPHRASE, or asked for).
    """


# --- enrollment -----------------------------------------------------------------------


@cli.command()
@click.option("--server", required=True, help="The sync server's URL.")
@click.option("--workspace", "name", required=True, help="A name for the workspace (kept here).")
@click.option("--code", required=True, help="One-time code from `fieldsync-server workspace-code`.")
def init(server: str, name: str, code: str) -> None:
    """Found a workspace: this device becomes its first admin coordinator.

    Example: fieldsync init --server http://127.0.0.1:8000 --workspace "Picket log" --code CODE
    """
    with new_profile() as (home, passphrase):
        prof = enrol.init(home, passphrase, server, name, code)
    from protocol.keylog import safety_number

    _emit(f"created workspace {prof.workspace_name!r}; this device is its first admin")
    _emit(f"device id: {prof.device_id}")
    _emit(f"workspace id: {prof.workspace_id}")
    _emit(f"safety number: {safety_number(prof.seen[1])}")


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
    default=enrol.INVITE_HOURS,
    show_default=True,
    metavar="HOURS",
    help="Hours until the invite expires.",
)
@_session
def invite(s: _Session, role: str, qr_path: str | None, hours: float) -> None:
    """Admin: make a one-time invite; its string is the last line printed.

    The invite carries secrets: hand it over in person or as a QR code.

    Example: fieldsync invite --role volunteer --qr invite.png
    """
    text = enrol.make_invite(s.prof, s.client(), role, hours)
    s.save()
    if qr_path:
        enrol.write_qr(text, qr_path)
        _emit(f"QR code written to {qr_path}")
    _emit(f"one-time {role} invite, valid {hours:g} hours; on the new device run: fieldsync join")
    _emit(text)


@cli.command()
@click.argument("invite_text", metavar="INVITE")
@click.option("--name", help="Name this workspace on this device (default: the inviter's name).")
def join(invite_text: str, name: str | None) -> None:
    """Enroll this device with an invite; prints its device id last.

    Example: fieldsync join fieldsync-invite:eyJ...
    """
    enrol.read_invite(invite_text)  # a damaged invite fails before any passphrase prompt
    with new_profile() as (home, passphrase):
        prof = enrol.join(home, passphrase, invite_text, name)
    from protocol.keylog import safety_number

    _emit(f"joined workspace {prof.workspace_name!r} as {prof.role}")
    _emit(f"safety number: {safety_number(prof.seen[1])}")
    if prof.is_keyholder:
        _emit(f"an admin must now approve this device: fieldsync approve {prof.device_id}")
    _emit(prof.device_id)


@cli.command()
@click.argument("device_id")
@_session
def approve(s: _Session, device_id: str) -> None:
    """Admin: seal the epoch keys to a coordinator that joined, so it can read.

    Example: fieldsync approve 3q2-7wX1Hc0Kd8pZ4hF1Ag
    """
    keyring.approve(s.prof, s.client(), device_id)
    s.save()
    _emit(f"approved {device_id}: it can now pull and decrypt after `fieldsync sync`")


# --- captures -------------------------------------------------------------------------


@cli.command()
@click.argument("record_type", metavar="TYPE", type=click.Choice(list(RECORD_TYPES)))
@set_option
@click.option("--json", "json_file", metavar="FILE", help="Field values as one JSON object.")
@_session
def add(s: _Session, record_type: str, pairs: tuple[str, ...], json_file: str | None) -> None:
    """Record something new; it is sealed at once. Prints the record id last.

    Example: fieldsync add picket --set date=2026-12-04 --set attendance=40
    """
    replica = s.writable_replica()
    record_id = outbox.add(s.prof, record_type, _values(pairs, json_file), replica)
    s.save()
    _emit(f"sealed a new {record_type}; {len(s.prof.state['outbox'])} bundle(s) waiting to sync")
    _emit(record_id)


@cli.command()
@click.argument("record_id")
@type_option("The record's type, when this device did not create it.")
@set_option
@_session
def edit(s: _Session, record_id: str, record_type: str | None, pairs: tuple[str, ...]) -> None:
    """Change fields of a record; a volunteer's edit replaces only its own earlier value.

    Example: fieldsync edit 6JrG1k2m9bq8ZQ0bq1cV_w --set released_at=2026-12-04T21:10
    """
    replica = s.writable_replica()
    rtype = outbox.edit(s.prof, record_id, record_type, _values(pairs), replica)
    s.save()
    _emit(f"sealed an edit of {rtype} {record_id}")


@cli.command()
@click.argument("record_id")
@type_option("The record's type, when this device did not create it.")
@_session
def delete(s: _Session, record_id: str, record_type: str | None) -> None:
    """Mark a record deleted (a later or concurrent edit keeps it).

    Example: fieldsync delete 6JrG1k2m9bq8ZQ0bq1cV_w
    """
    replica = s.writable_replica()
    rtype = outbox.delete(s.prof, record_id, record_type, replica)
    s.save()
    _emit(f"sealed the deletion of {rtype} {record_id}")


# --- sync and status ------------------------------------------------------------------


@cli.command()
@click.option(
    "--batch-size",
    type=click.IntRange(1, 500),
    default=syncing.PUSH_BATCH,
    show_default=True,
    help="Bundles per push request.",
)
@_session
def sync(s: _Session, batch_size: int) -> None:
    """Push the outbox; a coordinator then pulls and merges. Safe to rerun.

    Example: fieldsync sync
    """
    pushed, pulled = syncing.sync(s.prof, s.client(), batch_size)
    _emit(
        f"pushed {pushed.accepted + pushed.stored} bundle(s): {pushed.accepted} accepted,"
        f" {pushed.stored} already stored, {len(pushed.rejected)} rejected"
    )
    for line in pushed.rejected:
        _warn(line)
    if pulled is not None:
        if pulled.skipped:
            _warn(pulled.skipped)
        else:
            _emit(f"pulled {pulled.bundles} new bundle(s), {pulled.cells} cell(s)")
            for line in pulled.problems:
                _warn(line)
            if pulled.failed:
                _warn(f"{pulled.failed} bundle(s) failed verification and were not merged")


@cli.command()
@format_option("text", "json")
@_session
def status(s: _Session, fmt: str) -> None:
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
    replica = open_replica(prof)
    if replica is not None:
        info["replica"] = replica.counts()
        info["problems"] = replica.problems()
        replica.close()
    if fmt == "json":
        _emit(json.dumps(info, indent=2, ensure_ascii=False))
        return
    for key, value in info.items():
        if key == "rejected":
            value = len(value)
        if key == "problems":
            value = len(value)
        _emit(f"{key}: {value if value is not None else 'never'}")
    for r in info["rejected"]:
        _warn(f"rejected bundle {r['seq']} ({r['bundle_id']}): {r['code']}: {r['message']}")
    for p in info.get("problems", []):
        _warn(p)


# --- the coordinator's view -----------------------------------------------------------


@cli.command()
@click.option(
    "--type", "record_type", type=click.Choice(list(RECORD_TYPES)), help="Only this type."
)
@format_option("table", "json", "csv")
@_session
def records(s: _Session, record_type: str | None, fmt: str) -> None:
    """Coordinator: the merged records, with open conflicts and likely duplicates.

    Example: fieldsync records --type detention --format json
    """
    replica = s.reading_replica("read records")
    recs = view.merged_records(replica, record_type)
    if fmt == "json":
        _emit(view.to_json(recs))
    elif fmt == "csv":
        click.echo(view.to_csv(recs), nl=False)
    else:
        _emit(view.records_table(recs))


@cli.command()
@click.argument("record_id")
@format_option("text", "json")
@_session
def show(s: _Session, record_id: str, fmt: str) -> None:
    """Coordinator: one record's fields, open conflicts, duplicates and history.

    Example: fieldsync show 6JrG1k2m9bq8ZQ0bq1cV_w
    """
    replica = s.reading_replica("read records")
    rec = view.show(replica, outbox.check_record_id(record_id))
    if rec is None:
        raise CliError(f"no record {record_id} in this replica: run `fieldsync sync` first")
    _emit(view.to_json(rec) if fmt == "json" else view.show_text(rec))


@cli.command()
@format_option("text", "json")
@_session
def conflicts(s: _Session, fmt: str) -> None:
    """Coordinator: every field with more than one open value, winner first.

    Example: fieldsync conflicts --format json
    """
    replica = s.reading_replica("read conflicts")
    items = view.conflicts(replica)
    _emit(view.to_json(items) if fmt == "json" else view.conflicts_table(items))


@cli.command()
@click.argument("record_id")
@click.argument("field")
@click.option("--value", help="A new value for the field.")
@click.option("--keep", type=int, metavar="N", help="Keep value N of `fieldsync conflicts`.")
@_session
def resolve(s: _Session, record_id: str, field: str, value: str | None, keep: int | None) -> None:
    """Coordinator: close a conflict by keeping one of its values or writing a new one.

    Example: fieldsync resolve 6JrG1k2m9bq8ZQ0bq1cV_w attendance --keep 1
    """
    if (value is None) == (keep is None):
        raise UsageError("give exactly one of --value VALUE or --keep N")
    replica = s.reading_replica("resolve conflicts")
    chosen = outbox.resolve(s.prof, replica, record_id, field, value, keep)
    s.save()
    _emit(
        f"resolved {field} of {record_id} to {json.dumps(chosen, ensure_ascii=False)};"
        " `fieldsync sync` sends it"
    )


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), required=True)
@click.option("--out", "out_path", required=True, metavar="PATH", help="File to write.")
@_session
def export(s: _Session, fmt: str, out_path: str) -> None:
    """Coordinator: write the merged records to a file (plaintext: handle with care).

    Example: fieldsync export --format csv --out records.csv
    """
    replica = s.reading_replica("export records")
    recs = view.merged_records(replica)
    text = view.to_json(recs) + "\n" if fmt == "json" else view.to_csv(recs)
    path = Path(out_path)
    try:
        write_atomic(path, text.encode("utf-8"))
    except OSError as exc:
        raise CliError(f"cannot write {out_path}: {exc.strerror}") from None
    _emit(f"exported {len(recs)} record(s) to {out_path}")


# --- the roster -----------------------------------------------------------------------


@cli.command()
@format_option("text", "json")
@_session
def devices(s: _Session, fmt: str) -> None:
    """The workspace's devices from the verified key log: role and status.

    Example: fieldsync devices --format json
    """
    try:
        log = keyring.refresh_log(s.prof, s.client())
        s.prof.save()
    except CliError as exc:
        if exc.exit_code != 4:
            raise
        _warn(f"offline ({exc.message}); showing the key log as of the last sync")
        log = s.prof.log()
    devs = sorted(log.devices.values(), key=lambda d: d.since)
    items = [{"device_id": d.device_id, "role": d.role, "status": d.status} for d in devs]
    if fmt == "json":
        _emit(view.to_json(items))
        return
    for d in items:
        me = "  (this device)" if d["device_id"] == s.prof.device_id else ""
        _emit(f"{d['device_id']}  {d['role']:<11}  {d['status']:<7}{me}")


@cli.command()
@click.argument("device_id")
@click.option("--rekey", is_flag=True, help="After a rotation, re-seal stored data too.")
@_session
def revoke(s: _Session, device_id: str, rekey: bool) -> None:
    """Admin: revoke a device (a lost phone); a coordinator's revocation also rotates.

    Example: fieldsync revoke 3q2-7wX1Hc0Kd8pZ4hF1Ag --rekey
    """
    client = s.client()
    rotated = keyring.revoke(s.prof, client, device_id)
    s.save()
    _emit(f"revoked {device_id}")
    if rotated:
        _emit(f"rotated the epoch key: now epoch {s.prof.log().current_epoch}")
        if rekey:
            n = keyring.rekey(s.prof, client)
            s.save()
            _emit(f"re-keyed {n} stored bundle(s)")


@cli.command()
@click.option("--rekey", is_flag=True, help="Then re-seal every stored bundle to the new key.")
@click.option("--resume", is_flag=True, help="With --rekey: finish an interrupted re-key only.")
@_session
def rotate(s: _Session, rekey: bool, resume: bool) -> None:
    """Admin: a new epoch key for new captures; --rekey re-seals stored data to it.

    Example: fieldsync rotate --rekey
    """
    if resume and not rekey:
        raise UsageError("--resume goes with --rekey")
    client = s.client()
    if not resume:
        epoch = keyring.rotate(s.prof, client)
        s.save()
        _emit(f"rotated the epoch key: now epoch {epoch}")
    else:
        keyring.refresh_log(s.prof, client)
    if rekey:
        n = keyring.rekey(s.prof, client)
        s.save()
        _emit(f"re-keyed {n} stored bundle(s)")


@cli.command("safety-number")
@_session
def safety_number(s: _Session) -> None:
    """Fetch and verify the key log; print its safety number to compare between devices.

    Example: fieldsync safety-number
    """
    from protocol.keylog import safety_number as number

    log = keyring.refresh_log(s.prof, s.client())
    s.prof.save()
    _emit(number(log.head))


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
    home = home_dir()
    removed = 0
    for name in (VAULT_FILE, REPLICA_FILE):
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
    _emit("wiped this device's fieldsync profile" if removed else f"no profile in {home}")


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


COMMANDS = sorted(cli.commands)


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="fieldsync", standalone_mode=False)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "fieldsync"
        _fail(f"{exc.format_message()} (see `{where} --help`)", 2)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code or 1)
    except (click.Abort, KeyboardInterrupt):
        _fail("interrupted; a rerun resumes where this stopped", 130)
    except CliError as exc:
        _fail(exc.message, exc.exit_code)
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(1)
    except OSError as exc:
        _fail(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), 1)
    sys.exit(0)


def _fail(message: str, code: int) -> None:
    click.echo("error: " + " ".join(message.split()), err=True)
    sys.exit(code)
