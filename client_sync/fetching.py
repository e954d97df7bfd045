"""A coordinator's attachments: fetched when asked for, checked, kept in the replica.

A coordinator fetches a file's chunks only when it opens or exports the file
(`fieldsync open`, the workbench's record page, `export --attachments`). Each chunk
is checked as it arrives (`protocol.attachment.open_chunk`: its id, its length, its
place in its own file, naming a chunk the server served in its place: another chunk
of this file, or of another attachment the replica knows), kept opened in the
encrypted replica, and the whole file is checked against the SHA-256 its device took
at capture before it is shown or written anywhere. A cut fetch resumes: the chunks
already kept are not fetched again. The device's own chunks still waiting to be
uploaded are read from its profile directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
from collections.abc import Container, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from protocol import attachment
from protocol.attachment import Descriptor
from protocol.errors import InvalidAttachment

from . import attachments
from .errors import IntegrityError, ServerError
from .profile import Profile
from .progress import Progress
from .transport import Client


class Cache(Protocol):
    """Where opened chunks are kept (the replica: encrypted at rest)."""

    def piece(self, attachment_id: str, index: int) -> bytes | None: ...

    def keep(self, attachment_id: str, index: int, plain: bytes) -> None: ...

    def verified(self, attachment_id: str) -> str | None: ...

    def mark_verified(self, attachment_id: str, sha256: str) -> None: ...

    def forget(self, attachment_id: str) -> None: ...

    def known_chunks(self, but: str) -> Container[str]: ...


class FetchError(IntegrityError):
    """A file that failed its checks: `code` says what the server served (or did not)."""

    def __init__(self, desc: Descriptor, exc: InvalidAttachment) -> None:
        super().__init__(
            f"attachment {desc.id} ({desc.name}) was refused: {exc.code}: {exc.reason}"
        )
        self.code = exc.code


def _served(prof: Profile, client: Client | None, chunk_id: str) -> bytes | None:
    """The bytes for one chunk: this device's own copy (not uploaded yet, or kept until
    a receipt), else the server's; None when neither has it."""
    local = attachments.chunk_file(prof, chunk_id)
    if local.exists():
        return local.read_bytes()
    if client is None:
        return None
    try:
        return client.get_bytes(f"/v1/w/{client.workspace}/chunks/{chunk_id}")
    except ServerError as exc:
        if exc.code in ("unknown_chunk", "chunk_released"):
            return None
        raise


def fetch(prof: Profile, client: Client | None, cache: Cache, desc: Descriptor) -> str:
    """Make sure every chunk of `desc` is kept, checked, and the whole verified; returns the
    verified SHA-256. Raises FetchError (exit 5) when a chunk or the whole fails."""
    done = cache.verified(desc.id)
    if done is not None:
        return done
    others = cache.known_chunks(but=desc.id)
    with Progress("fetching", desc.size, unit="B") as bar:
        for index, cid in enumerate(desc.chunks):
            if cache.piece(desc.id, index) is not None:
                bar.advance(attachment.chunk_length(desc.size, desc.chunk_size, index))
                continue
            data = _served(prof, client, cid)
            try:
                plain = attachment.open_chunk(desc, index, data, others)
            except InvalidAttachment as exc:
                raise FetchError(desc, exc) from None
            cache.keep(desc.id, index, plain)
            bar.advance(len(plain))
    try:
        sha = _check_whole(cache, desc)
    except InvalidAttachment as exc:
        # Every chunk opened but the whole is not what was sealed: the device's own
        # doing, kept nowhere.
        cache.forget(desc.id)
        raise FetchError(desc, exc) from None
    cache.mark_verified(desc.id, sha)
    return sha


def _check_whole(cache: Cache, desc: Descriptor) -> str:
    reader = attachment.Reader(desc)
    for _ in _pieces(cache, desc, reader):
        pass
    return reader.finish()


def _pieces(cache: Cache, desc: Descriptor, reader: attachment.Reader) -> Iterator[bytes]:
    for index in range(desc.count):
        plain = cache.piece(desc.id, index)
        if plain is None:
            raise InvalidAttachment("chunk_missing", f"chunk {index} is not kept")
        yield reader.piece(index, plain)


def file_bytes(cache: Cache, desc: Descriptor) -> Iterator[bytes]:
    """The verified file's bytes, piece by piece (after `fetch`), checked again as read."""
    reader = attachment.Reader(desc)
    yield from _pieces(cache, desc, reader)
    reader.finish()


def safe_name(name: str) -> str:
    """A sealed name as a file name here: parse_descriptor already refused separators and
    control characters; a leading dot would hide the file."""
    base = Path(name).name or "attachment"
    return "_" + base[1:] if base.startswith(".") else base


@dataclass(frozen=True)
class Written:
    path: Path
    sha256: str


def _private_folder(folder: Path) -> None:
    """A folder for plaintext files, created for this user only (as the sheet of an
    export is written for this user only): another local user reads none of it."""
    for made in reversed([folder, *folder.parents]):
        if not made.exists():
            with contextlib.suppress(FileExistsError):  # made meanwhile
                made.mkdir(mode=0o700)


def _private_file(path: Path) -> BinaryIO:
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")


def write(cache: Cache, desc: Descriptor, folder: Path, name: str | None = None) -> Written:
    """Write the verified file into `folder` (created), under its sealed name unless
    `name` is given, never over another file: a name already taken by other bytes gets
    the attachment id added. Written whole or not at all."""
    _private_folder(folder)
    target = folder / safe_name(name or desc.name)
    if target.exists() and _sha_of(target) != desc.sha256:
        stem, dot, ext = target.name.partition(".")
        target = folder / f"{stem} ({desc.id}){dot}{ext}"
    tmp = folder / f".{target.name}.{secrets.token_hex(4)}.part"
    digest = hashlib.sha256()
    try:
        with _private_file(tmp) as fh:
            for piece in file_bytes(cache, desc):
                digest.update(piece)
                fh.write(piece)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except InvalidAttachment as exc:
        tmp.unlink(missing_ok=True)
        raise FetchError(desc, exc) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return Written(target, digest.hexdigest())


def _sha_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --- a record's files ---------------------------------------------------------------------


@dataclass(frozen=True)
class Opened:
    """One attachment of a record, fetched, verified and written (or why not)."""

    descriptor: Descriptor
    path: Path | None
    sha256: str | None
    stripped: Path | None = None
    note: str = ""  # why there is no file, or no stripped copy


def descriptors(values: Mapping[str, Sequence[Any]]) -> list[Descriptor]:
    """The live, well-formed descriptors among a record's attachment fields' winners."""
    out = []
    for name in sorted(values):
        heads = values[name]
        value = getattr(heads[0], "value", None) if heads else None
        if not name.startswith(attachment.FILE_FIELD_PREFIX) or not isinstance(value, dict):
            continue
        try:
            desc = attachment.parse_descriptor(value)
        except InvalidAttachment:
            continue  # shown among the record's invalid values, never written
        if attachment.file_field(desc.id) == name:
            out.append(desc)
    return sorted(out, key=lambda d: (d.captured_at, d.id))


def strip_copy(cache: Cache, desc: Descriptor, folder: Path) -> tuple[Path | None, str]:
    """A copy of the image without its metadata beside the original (`stripped-NAME`), or
    why there is none. The original, kept and written, is never altered."""
    from .stripping import NotStrippable, strip

    if not desc.media_type.startswith("image/"):
        return None, "not an image: its metadata is not stripped"
    try:
        data, _ext = strip(b"".join(file_bytes(cache, desc)))
    except NotStrippable as exc:
        return None, f"not stripped ({exc})"
    target = folder / ("stripped-" + safe_name(desc.name))
    tmp = folder / f".{target.name}.{secrets.token_hex(4)}.part"
    with _private_file(tmp) as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    return target, ""


class Exported:
    """The files of exported records: fetched, verified, written under `folder` as
    `RECORD_ID/ATTACHMENT_ID/NAME` (and `stripped-NAME` with `strip`), and what the
    export says of each: its path as the person gave the folder, its verified SHA-256,
    or why it is not there. A file that fails its checks is not written; the export
    says so beside its record, and `warnings` names it."""

    def __init__(
        self, prof: Profile, client: Client, cache: Cache, folder: Path, shown: str, strip: bool
    ) -> None:
        self.prof, self.client, self.cache = prof, client, cache
        self.folder, self.shown, self.strip = folder, shown, strip
        self.warnings: list[str] = []
        self.files = 0
        self.made: list[Path] = []  # the folders this export created, outermost first

    def __call__(self, record_id: str, values: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
        out = []
        for desc in descriptors(values):
            entry: dict[str, Any] = {
                "id": desc.id,
                "name": desc.name,
                "media_type": desc.media_type,
                "size": desc.size,
                "captured_at": desc.captured_at,
                "caption": desc.caption,
                "sha256_sealed": desc.sha256,
            }
            folder = self.folder / record_id / desc.id
            self.made += [p for p in (self.folder, folder.parent, folder) if not p.exists()]
            try:
                fetch(self.prof, self.client, self.cache, desc)
                written = write(self.cache, desc, folder)
            except FetchError as exc:
                entry.update(path=None, sha256=None, error=f"{exc.code}: not exported")
                self.warnings.append(exc.message)
                out.append(entry)
                continue
            self.files += 1
            entry.update(path=self._shown(written.path), sha256=written.sha256)
            if self.strip:
                stripped, note = strip_copy(self.cache, desc, folder)
                entry["stripped"] = self._shown(stripped) if stripped else None
                if note:
                    entry["stripped_note"] = note
            out.append(entry)
        return out

    def undo(self) -> None:
        """Take back the files of an export that failed (its sheet was not written):
        no plaintext is left behind without the sheet that lists it. Only what this
        export created goes (a folder a former export wrote stays as it was)."""
        for made in reversed(self.made):
            shutil.rmtree(made, ignore_errors=True)
        self.made.clear()

    def _shown(self, path: Path) -> str:
        return os.path.join(self.shown, os.path.relpath(path, self.folder))


def cell(entries: list[dict[str, Any]]) -> str:
    """An export's CSV cell of a record's files: one line per file."""
    lines = []
    for e in entries:
        if e.get("path") is None:
            lines.append(f"{e['name']}: {e.get('error', 'not exported')}")
            continue
        line = f"{e['path']} sha256:{e['sha256']}"
        if e.get("stripped"):
            line += f" (stripped copy: {e['stripped']})"
        lines.append(line)
    return "\n".join(lines)
