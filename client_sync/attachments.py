"""Attachments on a device: seal files at capture, and keep their sealed chunks.

`attach` seals each file at once, like a record: its chunks are written as sealed
files in the profile directory (`chunks/<chunk id>`), its descriptor becomes a cell
of the record in one bundle of the outbox, and the attachment key goes out of
memory with the descriptor: a volunteer's device keeps no plaintext copy and cannot
read the file back (it never reads the original again either; that stays wherever
the person keeps it). Uploading is `uploads.py`, removing `releases.py`.

A chunk file is deleted once its attachment is uploaded and its bundle has left the
device (acknowledged, and with the delivery rules, covered by a keyholder's
receipt), so a server restored from an old backup is sent again what it lost.

Vault state (the rest is in uploads.py and releases.py's docstrings):

    attachments {attachment id: {record_id, bundle_id, field, chunks: [ids], bytes,
                 uploaded}}      ids only: never a name, a caption or a key
    releases [{bundle_id, chunks: [ids], purge}]   waiting for their removal's change
    changes {bundle_id: change}  the change numbers of bundles that carry a removal
"""

from __future__ import annotations

import contextlib
import mimetypes
import os
import stat
import time
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from protocol import attachment
from protocol.errors import InvalidAttachment

from . import outbox
from .errors import CliError, UsageError
from .profile import Profile
from .replica import Replica
from .vault import fsync_dir, write_atomic

CHUNK_DIR = "chunks"


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
    write_atomic(path, data, sync_dir=False)
    return path


# A file to attach: a path on this machine, or a name and an open binary stream (the
# workbench's uploads, held in memory: never a temporary file).
Source = Path | tuple[str, BinaryIO]


def check_caption(caption: str | None) -> None:
    if caption is not None:
        try:
            attachment.check_caption(caption)
        except InvalidAttachment:
            raise UsageError(
                f"--caption must be 1 to {attachment.MAX_CAPTION} characters of text"
            ) from None


def _too_large(name: str, size: int) -> CliError:
    return CliError(
        f"{name} is {size:,} bytes: an attachment is at most"
        f" {attachment.MAX_SIZE:,} (1 GiB); split it first"
    )


def check_paths(paths: list[Path]) -> None:
    """Refuse, before anything is unlocked or sealed, a path that cannot be attached: one
    that is missing or unreadable, a directory or a device (not a file), or a file past
    the largest attachment. Sealing checks again (a file can change in between)."""
    for path in paths:
        try:
            st = path.stat()
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb"):
                    pass
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from None
        if stat.S_ISDIR(st.st_mode):
            raise UsageError(f"{path} is a directory: attach the files in it")
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"{path} is not a regular file")
        if st.st_size > attachment.MAX_SIZE:
            raise _too_large(file_name(path), st.st_size)


def _opened(source: Source) -> tuple[str, BinaryIO, int]:
    if isinstance(source, Path):
        try:
            fh: BinaryIO = open(source, "rb")
        except OSError as exc:
            raise UsageError(f"cannot read {source}: {exc.strerror}") from None
        return source.name, fh, os.fstat(fh.fileno()).st_size
    name, stream = source
    stream.seek(0, os.SEEK_END)
    size = stream.tell()
    stream.seek(0)
    return name, stream, size


def seal_file(
    folder: Path, source: Source, caption: str | None, written: list[Path]
) -> tuple[attachment.Descriptor, int]:
    """Seal one file into chunk files under `folder`, reading it once, a chunk at a
    time; returns its descriptor and the bytes its chunks take."""
    raw_name, fh, size = _opened(source)
    name = file_name(Path(raw_name))
    with fh:
        if size > attachment.MAX_SIZE:
            raise _too_large(name, size)
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
        name=name, media_type=media_type(Path(name)), captured_at=captured_now(), caption=caption
    )
    return desc, stored


def attach(
    prof: Profile,
    record_id: str,
    sources: list[Source],
    given_type: str | None,
    caption: str | None,
    replica: Replica | None,
) -> list[Attached]:
    """Seal files as attachments of a record: one capture (one bundle), every file or
    none (a failure leaves no chunk file and no capture)."""
    if not sources:
        raise UsageError("give at least one FILE to attach")
    record_id = outbox.check_record_id(record_id)
    record_type = outbox.record_type_of(prof, record_id, given_type, replica)
    prof.require_active()
    check_caption(caption)
    folder = chunk_dir(prof)
    folder.mkdir(mode=0o700, exist_ok=True)
    written: list[Path] = []
    try:
        sealed = [seal_file(folder, src, caption, written) for src in sources]
        fsync_dir(folder)
        writes = [outbox.Write(attachment.file_field(d.id), d.to_value(), ()) for d, _ in sealed]
        bundle = outbox.seal(prof, record_id, record_type, writes, replica, action="attach")
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise
    kept = entries(prof)
    out = []
    for desc, nbytes in sealed:
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


# --- what this device keeps --------------------------------------------------------------


def waiting_bundles(prof: Profile) -> set[str]:
    return {b["bundle_id"] for b in prof.state["outbox"]}


def rejected_bundles(prof: Profile) -> set[str]:
    return {r["bundle"]["bundle_id"] for r in prof.state.get("rejected", [])}


def kept_bundles(prof: Profile) -> set[str]:
    """Bundles this device still keeps after the server acknowledged them (waiting for
    a keyholder's receipt, client_sync/delivery.py): their chunks are kept as long."""
    return {e["bundle"]["bundle_id"] for e in prof.state.get("sent", [])}


def drop_files(prof: Profile, chunk_ids: list[str]) -> None:
    for cid in chunk_ids:
        with contextlib.suppress(ValueError):
            chunk_file(prof, cid).unlink(missing_ok=True)


def cleanup(prof: Profile) -> int:
    """Delete the chunk files nothing needs any more: of attachments uploaded whose
    bundle has left this device, and files no attachment names (an interrupted
    capture). Returns how many files went."""
    keep_bundles = waiting_bundles(prof) | kept_bundles(prof)
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


def destroy(prof: Profile) -> int:
    """A revoked device: every sealed chunk it keeps goes (it can never upload them), with
    what it knew of its attachments. Returns how many chunk files went."""
    folder = chunk_dir(prof)
    gone = 0
    if folder.is_dir():
        for p in folder.iterdir():
            p.unlink(missing_ok=True)
            gone += 1
    prof.state["attachments"] = {}
    prof.state["releases"] = []
    prof.state["changes"] = {}
    return gone
