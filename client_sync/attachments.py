"""Attachments on a device: seal files at capture, upload their chunks, release them.

`attach` seals each file at once, like a record: its chunks are written as sealed
files in the profile directory (`chunks/<chunk id>`), its descriptor becomes a cell
of the record in one bundle of the outbox, and the attachment key goes out of
memory with the descriptor: a volunteer's device keeps no plaintext copy and cannot
read the file back (it never reads the original again either; that stays wherever
the person keeps it).

`upload` runs after the push of a sync (a record never waits for its files): it
asks the server which chunks it lacks (`chunks/missing`) and sends those, two at a
time (a device may have two requests in progress), with progress in bytes. A cut
upload is resumed by the next sync at the first chunk the server does not have.
A chunk file is deleted once its attachment is uploaded and its bundle has left the
device (acknowledged, and with the delivery rules, covered by a keyholder's
receipt), so a server restored from an old backup is sent again what it lost.

Removing an attachment (or deleting its record) writes `null` to its field and
queues a signed release of its chunks, sent once the removal is acknowledged with
its change number (`post_releases`).

Vault state kept here:

    attachments {attachment id: {record_id, bundle_id, field, chunks: [ids], bytes,
                 uploaded}}      ids only: never a name, a caption or a key
    releases [{bundle_id, chunks: [ids], purge}]   waiting for their removal's change
    changes {bundle_id: change}  the change numbers of bundles that carry a removal
"""

from __future__ import annotations

import contextlib
import mimetypes
import os
import queue
import secrets
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from protocol import attachment
from protocol.errors import InvalidAttachment
from schemas.wire import MAX_CHUNK_IDS

from . import outbox
from .errors import CliError, NetworkError, ServerError, UsageError
from .profile import Profile
from .progress import Progress
from .replica import Replica
from .transport import Client

CHUNK_DIR = "chunks"
UPLOADERS = 2  # requests in progress per device on the server (FIELDSYNC_DEVICE_REQUESTS)


@dataclass(frozen=True)
class Attached:
    """What `attach` tells the person who attached: enough to check the file later."""

    attachment_id: str
    name: str
    size: int
    sha256: str
    chunks: int


def chunk_dir(prof: Profile) -> Path:
    return prof.home / CHUNK_DIR


def chunk_file(prof: Profile, chunk_id: str) -> Path:
    """Where a sealed chunk waits on this device. The id becomes a file name: checked."""
    if not attachment.valid_chunk_id(chunk_id):
        raise ValueError("not a chunk id")
    return chunk_dir(prof) / chunk_id


def entries(prof: Profile) -> dict[str, dict[str, Any]]:
    kept: dict[str, dict[str, Any]] = prof.state.setdefault("attachments", {})
    return kept


# --- capture ------------------------------------------------------------------------------


def file_name(path: Path) -> str:
    """The name sealed with a file: its base name, without control characters or
    separators, at most 255 characters (a name is evidence, but also text other
    devices will write to disk)."""
    name = unicodedata.normalize("NFC", path.name)
    name = "".join("_" if (ord(c) < 0x20 or c in "/\\\x7f") else c for c in name)
    name = name.strip()[: attachment.MAX_NAME]
    return name if name not in ("", ".", "..") else "attachment"


def media_type(path: Path) -> str:
    guessed, _ = mimetypes.guess_type(path.name, strict=False)
    kind = (guessed or "application/octet-stream").lower()
    try:
        return attachment.check_media_type(kind)
    except InvalidAttachment:
        return "application/octet-stream"


def captured_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_chunk(folder: Path, chunk_id: str, data: bytes) -> Path:
    """A sealed chunk, written whole or not at all (the directory is fsynced once, by
    the caller, before the capture that names it is saved)."""
    path = folder / chunk_id
    tmp = folder / f".{chunk_id}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def seal_file(
    folder: Path, path: Path, caption: str | None, written: list[Path]
) -> tuple[attachment.Descriptor, int]:
    """Seal one file into chunk files under `folder`, reading it once, a chunk at a
    time; returns its descriptor and the bytes its chunks take."""
    name = file_name(path)
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    with fh:
        size = os.fstat(fh.fileno()).st_size
        if size > attachment.MAX_SIZE:
            raise CliError(
                f"{name} is {size:,} bytes: an attachment is at most"
                f" {attachment.MAX_SIZE:,} (1 GiB); split it first"
            )
        sealer = attachment.new_sealer(size, os.urandom)
        stored = 0
        try:
            while True:
                piece = fh.read(attachment.CHUNK_SIZE)
                done = not piece
                made = sealer.finish() if done else sealer.feed(piece)
                for cid, ct in made:
                    written.append(_write_chunk(folder, cid, ct))
                    stored += len(ct)
                if done:
                    break
        except InvalidAttachment as exc:
            raise CliError(f"{name} changed while it was being sealed: attach it again") from exc
    desc = sealer.descriptor(
        name=name, media_type=media_type(path), captured_at=captured_now(), caption=caption
    )
    return desc, stored


def attach(
    prof: Profile,
    record_id: str,
    paths: list[Path],
    given_type: str | None,
    caption: str | None,
    replica: Replica | None,
) -> list[Attached]:
    """Seal files as attachments of a record: one capture (one bundle), every file or
    none (a failure leaves no chunk file and no capture)."""
    if not paths:
        raise UsageError("give at least one FILE to attach")
    record_id = outbox.check_record_id(record_id)
    record_type = outbox.record_type_of(prof, record_id, given_type, replica)
    prof.require_active()
    if caption is not None:
        try:
            attachment.check_caption(caption)
        except InvalidAttachment:
            raise UsageError(
                f"--caption must be 1 to {attachment.MAX_CAPTION} characters of text"
            ) from None
    folder = chunk_dir(prof)
    folder.mkdir(mode=0o700, exist_ok=True)
    written: list[Path] = []
    try:
        sealed = [(seal_file(folder, p, caption, written), p) for p in paths]
        _fsync_dir(folder)
        writes = [
            outbox.Write(attachment.file_field(d.id), d.to_value(), ()) for (d, _), _ in sealed
        ]
        bundle = outbox.seal(prof, record_id, record_type, writes, replica, action="attach")
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise
    kept = entries(prof)
    out = []
    for (desc, nbytes), _ in sealed:
        kept[desc.id] = {
            "record_id": record_id,
            "bundle_id": bundle.bundle_id,
            "field": attachment.file_field(desc.id),
            "chunks": list(desc.chunks),
            "bytes": nbytes,
            "uploaded": False,
        }
        out.append(Attached(desc.id, desc.name, desc.size, desc.sha256, desc.count))
    return out


# --- upload -------------------------------------------------------------------------------


@dataclass
class Uploaded:
    chunks: int = 0
    bytes: int = 0
    attachments: int = 0
    warnings: list[str] = field(default_factory=list)


def _waiting_bundles(prof: Profile) -> set[str]:
    return {b["bundle_id"] for b in prof.state["outbox"]}


def _rejected_bundles(prof: Profile) -> set[str]:
    return {r["bundle"]["bundle_id"] for r in prof.state.get("rejected", [])}


def _kept_bundles(prof: Profile) -> set[str]:
    """Bundles this device still keeps after the server acknowledged them (waiting for
    a keyholder's receipt, client_sync/delivery.py): their chunks are kept as long."""
    return {e["bundle"]["bundle_id"] for e in prof.state.get("sent", [])}


def to_upload(prof: Profile) -> list[tuple[str, dict[str, Any]]]:
    """Attachments whose capture the server acknowledged and whose chunks are not all
    uploaded yet, oldest first."""
    waiting = _waiting_bundles(prof)
    return [
        (aid, e)
        for aid, e in entries(prof).items()
        if not e.get("uploaded") and e["bundle_id"] not in waiting
    ]


def missing(client: Client, chunk_ids: list[str]) -> set[str]:
    """The chunks the server lacks, asked 1,024 at a time."""
    lacking: set[str] = set()
    for i in range(0, len(chunk_ids), MAX_CHUNK_IDS):
        part = chunk_ids[i : i + MAX_CHUNK_IDS]
        answer = client.post(
            f"/v1/w/{client.workspace}/chunks/missing", {"chunks": part}, retry=True
        )
        got = answer.get("missing") if isinstance(answer, dict) else None
        if not isinstance(got, list) or not all(isinstance(c, str) for c in got):
            raise CliError("the server's answer about missing chunks is malformed")
        lacking.update(c for c in got if c in set(part))
    return lacking


def upload(prof: Profile, client: Client) -> Uploaded:
    """Send the chunks the server lacks, resuming wherever the last upload stopped."""
    out = Uploaded()
    rejected = _rejected_bundles(prof)
    for aid, e in list(entries(prof).items()):
        if e["bundle_id"] in rejected and not e.get("uploaded"):
            # The capture was refused: its chunks can never be used.
            _drop_files(prof, e["chunks"])
            del entries(prof)[aid]
    pending = to_upload(prof)
    if not pending:
        cleanup(prof)
        return out
    ids = [c for _, e in pending for c in e["chunks"]]
    lacking = missing(client, ids)
    todo: list[tuple[str, Path]] = []
    gone: list[str] = []
    for cid in ids:
        if cid in lacking:
            path = chunk_file(prof, cid)
            if path.exists():
                todo.append((cid, path))
            else:
                gone.append(cid)
    if gone:
        out.warnings.append(
            f"{len(gone)} chunk(s) the server lacks are no longer on this device: the"
            " attachments they belong to cannot be completed from here"
        )
    total = sum(p.stat().st_size for _, p in todo)
    with Progress("uploading", total, unit="B") as bar:
        sent = _send_all(client, todo, bar)
    out.chunks = len(sent)
    out.bytes = sum(n for n in sent.values())
    for _, e in pending:
        if all(c not in lacking or c in sent or c in gone for c in e["chunks"]):
            e["uploaded"] = True
            out.attachments += 1
    cleanup(prof)
    return out


def _send_all(client: Client, todo: list[tuple[str, Path]], bar: Progress) -> dict[str, int]:
    """PUT every chunk, UPLOADERS at a time; stop at the first failure (the next sync
    resumes). Returns chunk id -> bytes of each chunk the server now holds."""
    work: queue.Queue[tuple[str, Path]] = queue.Queue()
    for item in todo:
        work.put(item)
    done: dict[str, int] = {}
    failed: list[BaseException] = []
    lock = threading.Lock()

    def run() -> None:
        while not failed:
            try:
                cid, path = work.get_nowait()
            except queue.Empty:
                return
            try:
                data = path.read_bytes()
                try:
                    client.put_bytes(f"/v1/w/{client.workspace}/chunks/{cid}", data)
                except ServerError as exc:
                    if exc.code != "chunk_released":  # released meanwhile: nothing to send
                        raise
            except BaseException as exc:
                with lock:
                    failed.append(exc)
                return
            with lock:
                done[cid] = len(data)
                bar.advance(len(data))

    threads = [threading.Thread(target=run, daemon=True) for _ in range(UPLOADERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failed:
        exc = failed[0]
        if isinstance(exc, NetworkError):
            raise NetworkError(
                f"{exc.message} ({len(done)} of {len(todo)} chunks sent;"
                " `fieldsync sync` resumes at the next one)"
            ) from None
        raise exc
    return done


def _drop_files(prof: Profile, chunk_ids: list[str]) -> None:
    for cid in chunk_ids:
        with contextlib.suppress(ValueError):
            chunk_file(prof, cid).unlink(missing_ok=True)


def cleanup(prof: Profile) -> int:
    """Delete the chunk files nothing needs any more: of attachments uploaded whose
    bundle has left this device, and files no attachment names (an interrupted
    capture). Returns how many files went."""
    keep_bundles = _waiting_bundles(prof) | _kept_bundles(prof)
    needed: set[str] = set()
    for e in entries(prof).values():
        if not e.get("uploaded") or e["bundle_id"] in keep_bundles:
            needed.update(e["chunks"])
    folder = chunk_dir(prof)
    if not folder.is_dir():
        return 0
    gone = 0
    stale = time.time() - 3600
    for p in folder.iterdir():
        if p.name in needed:
            continue
        if p.name.startswith(".") and p.stat().st_mtime > stale:
            continue  # a capture may be writing it right now (another process)
        p.unlink(missing_ok=True)
        gone += 1
    return gone


def local_bytes(prof: Profile) -> int:
    folder = chunk_dir(prof)
    return sum(p.stat().st_size for p in folder.iterdir()) if folder.is_dir() else 0


# --- removal and release ------------------------------------------------------------------


def queue_release(prof: Profile, bundle_id: str, chunk_ids: list[str], purge: bool) -> None:
    """Send a release of these chunks once bundle `bundle_id` (the removal) is
    acknowledged and its change number known."""
    if chunk_ids:
        prof.state.setdefault("releases", []).append(
            {"bundle_id": bundle_id, "chunks": list(dict.fromkeys(chunk_ids)), "purge": purge}
        )


def note_changes(prof: Profile, results: list[tuple[str, int]]) -> None:
    """Push results (bundle id, change number) of bundles a queued release waits for."""
    wanted = {r["bundle_id"] for r in prof.state.get("releases", [])}
    if wanted:
        changes = prof.state.setdefault("changes", {})
        for bid, change in results:
            if bid in wanted:
                changes[bid] = change


def post_releases(prof: Profile, client: Client, now: int | None = None) -> list[str]:
    """Send every queued release whose removal has a change number; returns warnings."""
    from protocol.attachment import sign_release

    warnings: list[str] = []
    left = []
    changes: dict[str, int] = prof.state.get("changes", {})
    for rel in prof.state.get("releases", []):
        change = changes.get(rel["bundle_id"])
        if change is None:
            left.append(rel)
            continue
        for i in range(0, len(rel["chunks"]), MAX_CHUNK_IDS):
            signed = sign_release(
                workspace=prof.workspace_id,
                device_key=prof.device_key,
                change=change,
                chunks=rel["chunks"][i : i + MAX_CHUNK_IDS],
                purge=bool(rel["purge"]),
                at=int(now if now is not None else time.time()),
            )
            try:
                client.post(
                    f"/v1/w/{client.workspace}/chunks/release", {"release": signed}, retry=True
                )
            except ServerError as exc:
                if exc.status >= 500:
                    raise
                warnings.append(f"the server refused to release removed chunks: {exc.message}")
        changes.pop(rel["bundle_id"], None)
    prof.state["releases"] = left
    return warnings


def descriptors_in(prof: Profile, replica: Replica, record_id: str, field_name: str) -> list[Any]:
    """The open values of one attachment field in a keyholder's replica (a descriptor
    object, or None where it was removed), winner first."""
    from protocol import crypto

    rtype = replica.record_type(record_id)
    if rtype is None:
        return []
    tag = crypto.field_tag(prof.tag_key, record_id, rtype, field_name)
    return [h.value for h in replica.heads(record_id, tag)]


def chunks_of(
    prof: Profile, record_id: str, attachment_id: str, replica: Replica | None
) -> list[str]:
    """Every chunk id this device knows for an attachment: its own, or (a keyholder)
    those of every open descriptor of its field."""
    ids: list[str] = []
    own = entries(prof).get(attachment_id)
    if own is not None and own["record_id"] == record_id:
        ids += own["chunks"]
    if replica is not None:
        field_name = attachment.file_field(attachment_id)
        for value in descriptors_in(prof, replica, record_id, field_name):
            if isinstance(value, dict) and isinstance(value.get("chunks"), list):
                ids += [c for c in value["chunks"] if isinstance(c, str)]
    return list(dict.fromkeys(c for c in ids if attachment.valid_chunk_id(c)))


def remove(
    prof: Profile,
    record_id: str,
    attachment_id: str,
    given_type: str | None,
    purge: bool,
    replica: Replica | None,
) -> str:
    """Remove an attachment from its record (`null` in its field) and queue the release of
    its chunks; returns the record's type."""
    record_id = outbox.check_record_id(record_id)
    try:
        field_name = attachment.file_field(attachment_id)
    except Exception:
        raise UsageError(f"not an attachment id: {attachment_id!r}") from None
    if purge:
        prof.require_admin("purge attachments at once")
    record_type = outbox.record_type_of(prof, record_id, given_type, replica)
    chunks = chunks_of(prof, record_id, attachment_id, replica)
    if not chunks:
        raise CliError(
            f"no attachment {attachment_id} of record {record_id} is known here"
            + ("" if replica is not None else " (attached on another device?)")
        )
    writes = outbox.plan(prof, record_id, record_type, {field_name: None}, replica)
    bundle = outbox.seal(prof, record_id, record_type, writes, replica, action="detach")
    queue_release(prof, bundle.bundle_id, chunks, purge)
    return record_type


def record_chunks(prof: Profile, record_id: str, replica: Replica | None) -> list[str]:
    """The chunk ids of every attachment of a record this device knows (for a deletion)."""
    ids = [c for e in entries(prof).values() if e["record_id"] == record_id for c in e["chunks"]]
    if replica is not None:
        for h in replica.history(record_id):
            if h["head"] and attachment.is_file_field(h["field"]) and isinstance(h["value"], dict):
                chunks = h["value"].get("chunks")
                if isinstance(chunks, list):
                    ids += [c for c in chunks if isinstance(c, str)]
    return list(dict.fromkeys(c for c in ids if attachment.valid_chunk_id(c)))
