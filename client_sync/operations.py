"""What a person can do with a device, written once for both faces.

Each operation takes a `device.Session` (the unlocked profile for one operation),
does its work through the core modules (outbox, sync, keyring, enrol, rekey,
replica, view) and saves. The command line (`client_sync/cli/`) and the workbench
(`client_sync/web/`) only gather input and show the result: neither holds a flow
of its own. What an admin does with the team (devices, invites, keys): `team.py`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol import tags
from schemas.records import DISTINCT_FIELD, DISTINCT_TYPE

from . import delivery, outbox
from .device import Session
from .errors import CliError
from .team import device_names

# --- captures -----------------------------------------------------------------------------


def add(s: Session, record_type: str, values: dict[str, Any]) -> str:
    """Seal a new record; returns its id."""
    record_id = outbox.add(s.prof, record_type, values, s.writable_replica())
    s.save()
    return record_id


def edit(s: Session, record_id: str, record_type: str | None, values: dict[str, Any]) -> str:
    """Seal changes to fields of a record; returns the record's type."""
    rtype = outbox.edit(s.prof, record_id, record_type, values, s.writable_replica())
    s.save()
    return rtype


def delete(s: Session, record_id: str, record_type: str | None, purge: bool = False) -> str:
    """Mark a record deleted, and release the chunks of its attachments this device
    knows (an admin's `purge`: at once, not after every keyholder saw the deletion)."""
    from . import releases

    if purge:
        s.prof.require_admin("purge attachments at once")
    replica = s.writable_replica()
    rtype = outbox.delete(s.prof, record_id, record_type, replica)
    chunks = releases.record_chunks(s.prof, record_id, replica)
    releases.queue_release(s.prof, s.prof.state["outbox"][-1]["bundle_id"], chunks, purge)
    s.save()
    return rtype


def attach(
    s: Session, record_id: str, files: list[Any], record_type: str | None, caption: str | None
) -> list[Any]:
    """Seal files (paths, or a name and a binary stream: `attachments.Source`) as
    attachments of a record, at once; returns what was attached (`attachments.Attached`:
    id, name, size, SHA-256, chunks)."""
    from . import attachments

    made = attachments.attach(s.prof, record_id, files, record_type, caption, s.writable_replica())
    s.save()
    return made


def fetch_attachments(s: Session, record_id: str) -> list[Any]:
    """Fetch a record's attachments (only what is not kept yet), check every chunk and the
    whole file against the SHA-256 sealed at capture, and keep them in the replica;
    returns `(descriptor, verified SHA-256)` per attachment. A file that fails its checks
    raises `fetching.FetchError` (exit 5), naming what the server did."""
    from . import fetching, outbox, view
    from .replica.files import FileCache

    record_id = outbox.check_record_id(record_id)
    replica = s.reading_replica("open attachments")
    found = view.load(replica, [record_id], duplicates=False)
    if not found:
        raise CliError(f"no record {record_id} in this replica: run `fieldsync sync` first")
    cache = FileCache(replica)
    client = s.client()
    got = []
    for desc in fetching.descriptors(found[0].values):
        try:
            got.append((desc, fetching.fetch(s.prof, client, cache, desc)))
        except fetching.FetchError as exc:
            if not (found[0].deleted and exc.code == "chunk_missing"):
                raise
            # Deleting a record lets its chunks go (at once with --purge): gone is what
            # was asked for, not a server's doing.
            raise CliError(
                f"record {record_id} is deleted, and its attachment {desc.id} ({desc.name})"
                " was not opened here before: its chunks went with it"
            ) from None
    return got


def open_attachments(s: Session, record_id: str, out: Path) -> list[Any]:
    """`fetch_attachments`, then write each verified file into `out`; returns
    `fetching.Opened` per attachment."""
    from . import fetching
    from .replica.files import FileCache

    fetched = fetch_attachments(s, record_id)
    cache = FileCache(s.reading_replica("open attachments"))
    opened = []
    for desc, sha in fetched:
        written = fetching.write(cache, desc, out)
        assert written.sha256 == sha
        opened.append(fetching.Opened(desc, written.path, sha))
    return opened


def detach(
    s: Session, record_id: str, attachment_id: str, record_type: str | None, purge: bool = False
) -> str:
    """Remove an attachment from its record; its chunks are released on the next sync."""
    from . import releases

    rtype = releases.remove(
        s.prof, record_id, attachment_id, record_type, purge, s.writable_replica()
    )
    s.save()
    return rtype


def resolve(
    s: Session, record_id: str, field_name: str, value: str | None, keep: int | None
) -> Any:
    """Close an open conflict with value `keep` of `conflicts` or a new value."""
    replica = s.reading_replica("resolve conflicts")
    chosen = outbox.resolve(s.prof, replica, record_id, field_name, value, keep)
    s.save()
    return chosen


def name_device(s: Session, name: str) -> str:
    """Give this device a name that members see and the server never does."""
    clean = outbox.name_device(s.prof, name, s.writable_replica())
    s.save()
    return clean


def same_as(s: Session, record_id: str, kept_id: str) -> None:
    """Judge `record_id` a duplicate of `kept_id`: it stands behind the kept record
    (its testimony stays, in its history and in exports)."""
    if record_id == kept_id:
        raise CliError("a record cannot be a duplicate of itself")
    edit(s, record_id, None, {"same_as": kept_id})


def not_duplicates(s: Session, a: str, b: str) -> None:
    """Judge two records not duplicates, for every keyholder: a sealed `_distinct`
    record whose id is derived from the pair, so the hint is not shown again."""
    outbox.check_record_id(a)
    outbox.check_record_id(b)
    record_id = tags.distinct_pair_record(s.prof.tag_key, a, b)
    pair = " ".join(sorted((a, b)))
    replica = s.reading_replica("judge duplicates")
    writes = outbox.plan(s.prof, record_id, DISTINCT_TYPE, {DISTINCT_FIELD: pair}, replica)
    outbox.seal(s.prof, record_id, DISTINCT_TYPE, writes, replica, action="judge")
    s.save()


class Export:
    """An export's text in pieces (streamed: memory stays flat), and how many records
    it held once the pieces are consumed."""

    def __init__(self, chunks: Iterator[str]) -> None:
        self._chunks = chunks
        self.count = 0
        self.files: Any = None  # fetching.Exported, when attachments are exported too

    def __iter__(self) -> Iterator[str]:
        return self._chunks


def export(
    s: Session,
    fmt: str,
    record_type: str | None = None,
    *,
    deleted: bool = False,
    bom: bool = True,
    records: Iterable[Any] | None = None,
    files: Path | None = None,
    files_shown: str | None = None,
    strip: bool = False,
) -> Export:
    """An export of the merged records (or of `records`, already chosen by a page).

    CSV: one sheet (of one type, or of all), with who recorded each record and when,
    open conflicts marked (every open value, the winner first), a byte-order mark for
    spreadsheet programs, deleted records only with `deleted`. JSON: the records as
    `records --format json` lists them, deleted ones flagged (left out without
    `deleted` when a type's sheet is asked for). With `files`, every attachment of
    the exported records is fetched, verified and written there (`fetching.Exported`),
    and listed with its path and verified SHA-256 (`strip`: a copy without metadata).
    """
    from . import export as exports
    from . import view

    replica = s.reading_replica("export records")
    chosen: Iterable[view.Record] = (
        records
        if records is not None
        else view.iter_records(replica, record_type, include_deleted=deleted or fmt == "json")
    )
    out = Export(iter(()))
    exported = None
    if files is not None:
        from .fetching import Exported
        from .replica.files import FileCache

        cache = FileCache(replica)
        exported = Exported(s.prof, s.client(), cache, files, files_shown or str(files), strip)
        out.files = exported

    def counted() -> Iterator[view.Record]:
        for rec in chosen:
            out.count += 1
            yield rec

    if fmt == "json":
        from .cli.render import json_array

        def as_json(rec: view.Record) -> dict[str, Any]:
            doc = rec.as_json()
            if exported is not None:
                doc["attachments"] = exported(rec.id, rec.values)
            return doc

        out._chunks = itertools.chain(json_array(as_json(r) for r in counted()), ["\n"])
    else:
        columns, rows = exports.sheet(
            replica,
            record_type,
            deleted=deleted,
            names=device_names(s),
            records=counted(),
            files=exported,
        )
        out._chunks = exports.csv_text(columns, rows, bom=bom)
    return out


# --- the outbox ---------------------------------------------------------------------------


def waiting(s: Session) -> list[outbox.Waiting]:
    return outbox.waiting(s.prof)


def discard(s: Session, bundle_id: str) -> outbox.Waiting:
    item = outbox.discard(s.prof, bundle_id)
    s.save()
    return item


# --- sync and status ----------------------------------------------------------------------


@dataclass
class SyncReport:
    """What one sync did, in words a person can act on."""

    accepted: int = 0
    stored: int = 0
    rejected: list[str] = field(default_factory=list)
    pulled: int | None = None  # bundles; None: this device does not pull
    cells: int = 0
    warnings: list[str] = field(default_factory=list)
    resent: int = 0  # kept captures the server had lost, sent again
    confirmed: int = 0  # sent captures a keyholder's receipt confirmed (no longer kept)
    fetched: int = 0  # bundles missing from the changes feed, fetched one by one
    uploaded_chunks: int = 0  # attachment chunks sent this time
    uploaded_bytes: int = 0

    @property
    def pushed(self) -> int:
        return self.accepted + self.stored


def sync(s: Session, batch_size: int | None = None) -> SyncReport:
    """Verify the key log, push the outbox, and (keyholders) pull and merge."""
    from . import sync as syncing

    pushed, pulled, settled = syncing.sync(s.prof, s.client(), batch_size or syncing.PUSH_BATCH)
    report = SyncReport(pushed.accepted, pushed.stored, list(pushed.rejected))
    report.resent, report.confirmed = pushed.resent, settled.confirmed
    report.warnings += pushed.warnings
    if pushed.resent:
        report.warnings.append(
            f"the server had lost {pushed.resent} capture(s) this device sent (restored or"
            " recreated): they were sent again"
        )
    report.uploaded_chunks = pushed.uploaded.chunks
    report.uploaded_bytes = pushed.uploaded.bytes
    if pulled is not None:
        if pulled.skipped:
            report.warnings.append(pulled.skipped)
        else:
            report.pulled, report.cells = pulled.bundles, pulled.cells
            report.fetched = pulled.fetched
            report.warnings += pulled.problems
            if pulled.failed:
                report.warnings.append(
                    f"{pulled.failed} bundle(s) failed verification and were not merged"
                )
            if pulled.exposed:
                report.warnings.append(
                    f"{pulled.exposed} stored bundle(s) are still sealed to an older epoch key"
                    " that a revoked coordinator held: run `fieldsync rotate --rekey --resume`"
                )
            report.warnings += _withheld(s)
    report.warnings += settled.refused + settled.dropped
    report.warnings += delivery.warnings(s.prof, dropped=not settled.dropped)
    return report


def _chunks_kept(prof: Any) -> int:
    """Sealed attachment chunks this device keeps (not uploaded yet, or uploaded and
    awaiting a coordinator's receipt): ciphertext it cannot read, counted, never opened."""
    from .attachments import chunk_dir

    folder = chunk_dir(prof)
    return sum(1 for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else 0


def _withheld(s: Session) -> list[str]:
    """A keyholder's devices whose signed head is ahead of the chains its replica holds."""
    from . import watch
    from .replica import open_replica

    replica = open_replica(s.prof)
    if replica is None:
        return []
    try:
        return watch.withheld(s.prof, replica, device_names(s))
    finally:
        replica.close()


def status(s: Session) -> dict[str, Any]:
    """Role, workspace, epoch, outbox, rejected bundles, last sync; a keyholder's replica
    counts and problems. Offline."""
    prof = s.prof
    me = prof.me()
    info: dict[str, Any] = {
        "role": me.role,
        "status": me.status,
        "workspace": prof.workspace_name,
        "workspace_id": prof.workspace_id,
        "device_id": prof.device_id,
        "device_name": prof.state.get("device_name"),
        "server": prof.server,
        "epoch": prof.log().current_epoch,
        "outbox": len(prof.state["outbox"]),
        "awaiting_receipt": len(delivery.sent(prof)),
        "attachment_chunks_kept": _chunks_kept(prof),
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
    info["warnings"] = delivery.warnings(prof)
    if me.is_keyholder:  # a volunteer's status does not load the replica's code
        from .replica import open_replica

        replica = open_replica(prof)
        if replica is not None:
            try:
                info["replica"] = replica.counts()
                info["problems"] = replica.problems()
            finally:
                replica.close()
            info["warnings"] += _withheld(s)
    return info
