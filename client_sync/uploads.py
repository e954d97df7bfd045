"""Uploading attachment chunks: after the push of a sync, what the server lacks.

A record never waits for its files: `sync` pushes the bundles first, then asks the
server which chunks of the acknowledged attachments it lacks (`chunks/missing`) and
sends those, two at a time (a device may have two requests in progress), with
progress in bytes. A cut upload is resumed by the next sync at the first chunk the
server does not have; nothing about it needs saving, the server's answer is the state.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.wire import MAX_CHUNK_IDS

from . import attachments
from .errors import CliError, NetworkError, ServerError
from .profile import Profile
from .progress import Progress
from .transport import Client

UPLOADERS = 2  # requests in progress per device on the server (FIELDSYNC_DEVICE_REQUESTS)


@dataclass
class Uploaded:
    chunks: int = 0
    bytes: int = 0
    attachments: int = 0
    warnings: list[str] = field(default_factory=list)


def to_upload(prof: Profile) -> list[tuple[str, dict[str, Any]]]:
    """Attachments whose capture the server acknowledged and whose chunks are not all
    uploaded yet, oldest first; and those uploaded whose capture this device still keeps
    (no receipt yet): a server restored from an old backup may have lost their chunks,
    and `missing` says so."""
    waiting = attachments.waiting_bundles(prof)
    kept = attachments.kept_bundles(prof)
    return [
        (aid, e)
        for aid, e in attachments.entries(prof).items()
        if e["bundle_id"] not in waiting and (not e.get("uploaded") or e["bundle_id"] in kept)
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
    rejected = attachments.rejected_bundles(prof)
    for aid, e in list(attachments.entries(prof).items()):
        if e["bundle_id"] in rejected and not e.get("uploaded"):
            # The capture was refused: its chunks can never be used.
            attachments.drop_files(prof, e["chunks"])
            del attachments.entries(prof)[aid]
    pending = to_upload(prof)
    if not pending:
        attachments.cleanup(prof)
        return out
    ids = [c for _, e in pending for c in e["chunks"]]
    lacking = missing(client, ids)
    todo: list[tuple[str, Path]] = []
    gone: list[str] = []
    for cid in ids:
        if cid in lacking:
            path = attachments.chunk_file(prof, cid)
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
    attachments.cleanup(prof)
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
