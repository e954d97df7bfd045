"""Removing attachments and releasing their chunks.

Removing an attachment (or deleting its record) writes `null` to its field and
queues a signed release of its chunks (`protocol.release`), sent by the next sync
once the removal is acknowledged with its change number: the server drops the
chunks when every keyholder has pulled past that change (docs/PROTOCOL.md).
A volunteer knows the chunk ids of what it attached itself (its vault keeps ids,
never names or keys); a keyholder reads them from the descriptors in its replica.
"""

from __future__ import annotations

import time
from typing import Any

from protocol import attachment
from schemas.wire import MAX_CHUNK_IDS

from . import attachments, outbox
from .errors import CliError, ServerError, UsageError
from .profile import Profile
from .replica import Replica
from .transport import Client


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
    from protocol import tags

    rtype = replica.record_type(record_id)
    if rtype is None:
        return []
    tag = tags.field_tag(prof.tag_key, record_id, rtype, field_name)
    return [h.value for h in replica.heads(record_id, tag)]


def chunks_of(
    prof: Profile, record_id: str, attachment_id: str, replica: Replica | None
) -> list[str]:
    """Every chunk id this device knows for an attachment: its own, or (a keyholder)
    those of every open descriptor of its field."""
    ids: list[str] = []
    own = attachments.entries(prof).get(attachment_id)
    if own is not None and own["record_id"] == record_id:
        ids += own["chunks"]
    if replica is not None:
        field_name = attachment.file_field(attachment_id)
        for value in descriptors_in(prof, replica, record_id, field_name):
            if isinstance(value, dict) and isinstance(value.get("chunks"), list):
                ids += [c for c in value["chunks"] if isinstance(c, str)]
    return list(dict.fromkeys(c for c in ids if attachment.valid_chunk_id(c)))


def attachment_field(attachment_id: str) -> str:
    """The field of an attachment id as a person typed it, or a usage error."""
    try:
        return attachment.file_field(attachment_id)
    except Exception:
        raise UsageError(f"not an attachment id: {attachment_id!r}") from None


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
    field_name = attachment_field(attachment_id)
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
    ids = [
        c
        for e in attachments.entries(prof).values()
        if e["record_id"] == record_id
        for c in e["chunks"]
    ]
    if replica is not None:
        from .replica.files import record_files

        for heads in record_files(replica, record_id).values():
            for h in heads:
                chunks = h.value.get("chunks") if isinstance(h.value, dict) else None
                if isinstance(chunks, list):
                    ids += [c for c in chunks if isinstance(c, str)]
    return list(dict.fromkeys(c for c in ids if attachment.valid_chunk_id(c)))
