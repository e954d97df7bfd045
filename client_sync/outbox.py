"""Captures: validate the values, choose what each write supersedes, seal at once.

A capture is sealed the moment it is made (one bundle per capture) to the current
epoch key of the *verified* key log, and only the sealed bundle is kept: the
device cannot open it again. What stays readable to this device is an index of
ids (record id -> type and field -> the last cell id it wrote), so that its next
edit of a field supersedes its own last write.

Who supersedes what: a volunteer only ever supersedes its own last cell of the
field (the server refuses anything else), so two witnesses who disagree become a
conflict. A coordinator's edit, delete or resolve supersedes every current head
of the register in its replica, which closes the conflict.
"""

from __future__ import annotations

import difflib
import os
import time
from dataclasses import dataclass
from typing import Any

from protocol import crypto, hlc, tags
from protocol.encoding import b64d, b64e
from protocol.errors import InvalidEncoding
from protocol.model import Bundle, CellInput
from schemas.records import (
    DELETED_FIELD,
    DEVICE_NAME_FIELD,
    DEVICE_TYPE,
    RECORD_TYPES,
    RecordError,
    load_device_name,
    load_fields,
)
from schemas.wire import MAX_SUPERSEDES

from . import delivery
from .errors import CliError, UsageError
from .profile import Profile, now_iso
from .replica import Replica


@dataclass(frozen=True)
class Write:
    field: str
    value: Any
    supersedes: tuple[str, ...]


def check_id(
    text: str, what: str = "record id", shown_by: str = "printed by `fieldsync add`"
) -> str:
    """A 16-byte id's shape (22 characters of base64url), checked before anything is
    unlocked; `UsageError` naming what it should have been and where one is shown."""
    try:
        b64d(text, length=16, what=what)
    except InvalidEncoding:
        raise UsageError(f"not a {what}: {text!r} (22 characters, as {shown_by})") from None
    return text


def check_record_id(text: str) -> str:
    return check_id(text)


class InvalidValues(CliError):
    """Values that do not validate; `errors` maps each field to its message ids (the
    workbench shows them beside the fields; the command line prints the message)."""

    def __init__(self, exc: RecordError) -> None:
        super().__init__(str(exc))
        self.errors = exc.errors


def validate(record_type: str, values: dict[str, Any], *, whole: bool = False) -> dict[str, Any]:
    """Typed values, or `InvalidValues`. `whole`: a new record, whose required fields
    must all be there."""
    if not values and not whole:
        raise UsageError("nothing to record: give at least one --set FIELD=VALUE")
    try:
        return load_fields(record_type, values, whole=whole)
    except RecordError as exc:
        raise InvalidValues(exc) from None


def check_field_names(values: dict[str, Any]) -> None:
    """`InvalidValues` for a field no record type has (a record's type is known only
    from the profile or the replica: this much can be said before either is opened)."""
    from schemas.records import RECORD_TYPES, UNKNOWN_FIELD, field_names

    known = {name for rtype in RECORD_TYPES for name in field_names(rtype)}
    unknown = sorted(set(values) - known)
    if unknown:
        guesses = [g for n in unknown for g in difflib.get_close_matches(n, sorted(known), n=1)]
        hint = f" (did you mean {', '.join(guesses)}?)" if guesses else ""
        raise InvalidValues(
            RecordError(
                f"no record type has the field {', '.join(map(repr, unknown))}{hint}",
                {name: [UNKNOWN_FIELD] for name in unknown},
            )
        )


def record_type_of(
    prof: Profile, record_id: str, given: str | None, replica: Replica | None
) -> str:
    """The record's type: known from this device's own writes or its replica, else --type."""
    own = prof.state["own"].get(record_id)
    known = own["type"] if own else (replica.record_type(record_id) if replica else None)
    if given is not None and given not in RECORD_TYPES:
        raise UsageError(f"unknown record type {given!r}: use one of {', '.join(RECORD_TYPES)}")
    if known is not None:
        if given is not None and given != known:
            raise CliError(f"record {record_id} is a {known}, not a {given}")
        return str(known)
    if given is None:
        where = "in this replica (sync first)" if replica else "created on this device"
        raise UsageError(f"record {record_id} was not {where}: give its type with --type TYPE")
    return given


def supersedes(
    prof: Profile, record_id: str, record_type: str, field: str, replica: Replica | None
) -> tuple[str, ...]:
    if replica is not None:
        tag = tags.field_tag(prof.tag_key, record_id, record_type, field)
        heads = tuple(h.cell_id for h in replica.heads(record_id, tag))
        if len(heads) > MAX_SUPERSEDES:
            raise CliError(f"{record_type}.{field} has more than {MAX_SUPERSEDES} open values")
        if heads:
            return heads
    own = prof.state["own"].get(record_id, {}).get("cells", {}).get(field)
    return (own,) if own else ()


def plan(
    prof: Profile,
    record_id: str,
    record_type: str,
    values: dict[str, Any],
    replica: Replica | None,
) -> list[Write]:
    return [
        Write(name, value, supersedes(prof, record_id, record_type, name, replica))
        for name, value in values.items()
    ]


def seal(
    prof: Profile,
    record_id: str,
    record_type: str,
    writes: list[Write],
    replica: Replica | None = None,
    action: str = "edit",
) -> Bundle:
    """Seal one capture into the outbox; a coordinator also folds it into its replica.

    Beside the sealed bundle the vault keeps a note of what it was (type, action,
    time: never a value), so the outbox can be listed, and what it replaced in this
    device's index of its own cells, so an unsent capture can be discarded.
    """
    log = prof.log()
    delivery.check_can_capture(prof)
    prof.require_active()
    stamp = hlc.tick(int(prof.state["hlc"]), int(time.time() * 1000))
    inputs = [
        CellInput(record_id, record_type, w.field, w.value, stamp, w.supersedes) for w in writes
    ]
    seq = int(prof.state["seq"]) + 1
    bundle = crypto.seal_bundle(
        workspace=prof.workspace_id,
        device_key=prof.device_key,
        seq=seq,
        prev=prof.state["prev"],
        epoch=log.current_epoch,
        epoch_public=log.current_epoch_public,  # from the verified log, never the server
        tag_key=prof.tag_key,
        cells=inputs,
        random=os.urandom,
    )
    prof.state["hlc"] = stamp
    prof.state["seq"] = seq
    prof.state["prev"] = crypto.bundle_hash(bundle)
    prof.state["outbox"].append(bundle.to_wire())
    own = prof.state["own"].setdefault(record_id, {"type": record_type, "cells": {}})
    replaced = {inp.field: own["cells"].get(inp.field) for inp in inputs}
    for cell, inp in zip(bundle.cells, inputs, strict=True):
        own["cells"][inp.field] = cell.cell_id
    prof.state.setdefault("notes", {})[bundle.bundle_id] = {
        "record_id": record_id,
        "type": record_type,
        "action": action,
        "at": now_iso(),
        "replaced": replaced,
    }
    if replica is not None:
        # Committed by the session's save, after the vault (cli/kit.py).
        replica.ingest([(bundle, None)], log, prof.epoch_keys(), prof.tag_key, commit=False)
    return bundle


def new_record_id() -> str:
    """A random 16-byte id that does not start with "-".

    People type these ids on a command line, where a leading "-" reads as an option
    (`fieldsync edit -x…`); redrawing costs one try in 64 and loses 1/64 of a bit.
    """
    while True:
        record_id = b64e(os.urandom(16))
        if not record_id.startswith("-"):
            return record_id


def add(prof: Profile, record_type: str, values: dict[str, Any], replica: Replica | None) -> str:
    typed = validate(record_type, values, whole=True)
    record_id = new_record_id()
    writes = [Write(k, v, ()) for k, v in typed.items()]
    seal(prof, record_id, record_type, writes, replica, action="add")
    return record_id


def edit(
    prof: Profile,
    record_id: str,
    given_type: str | None,
    values: dict[str, Any],
    replica: Replica | None,
) -> str:
    record_id = check_record_id(record_id)
    record_type = record_type_of(prof, record_id, given_type, replica)
    typed = validate(record_type, values)
    seal(prof, record_id, record_type, plan(prof, record_id, record_type, typed, replica), replica)
    return record_type


def delete(prof: Profile, record_id: str, given_type: str | None, replica: Replica | None) -> str:
    record_id = check_record_id(record_id)
    record_type = record_type_of(prof, record_id, given_type, replica)
    writes = plan(prof, record_id, record_type, {DELETED_FIELD: True}, replica)
    seal(prof, record_id, record_type, writes, replica, action="delete")
    return record_type


def resolve(
    prof: Profile,
    replica: Replica,
    record_id: str,
    field: str,
    value: str | None,
    keep: int | None,
) -> Any:
    """Close a conflict with one of its values (`keep`) or a new one; returns the value."""
    record_id = check_record_id(record_id)
    record_type = replica.record_type(record_id)
    if record_type is None:
        raise CliError(f"no record {record_id} in this replica: run `fieldsync sync` first")
    tag = tags.field_tag(prof.tag_key, record_id, record_type, field)
    heads = replica.heads(record_id, tag)
    if len(heads) < 2:
        raise CliError(f"{record_type}.{field} of {record_id} has no open conflict")
    if keep is not None:
        if not 0 <= keep < len(heads):
            raise UsageError(f"--keep must be 0 to {len(heads) - 1}: see `fieldsync conflicts`")
        chosen = heads[keep].value
    elif field == DELETED_FIELD:
        if value not in ("true", "false"):
            raise UsageError("the value of _deleted is true or false")
        chosen = value == "true"
    else:
        chosen = validate(record_type, {field: value})[field]
    write = Write(field, chosen, tuple(h.cell_id for h in heads))
    seal(prof, record_id, record_type, [write], replica, action="resolve")
    return chosen


def name_device(prof: Profile, name: str, replica: Replica | None) -> str:
    """Seal this device's name (sent with the next sync; only members can read it)."""
    try:
        clean = load_device_name(name)
    except RecordError as exc:
        raise InvalidValues(exc) from None
    record_id = tags.device_name_record(prof.tag_key, prof.device_id)
    writes = plan(prof, record_id, DEVICE_TYPE, {DEVICE_NAME_FIELD: clean}, replica)
    seal(prof, record_id, DEVICE_TYPE, writes, replica, action="name")
    prof.state["device_name"] = clean
    return clean


# --- what waits to be sent ----------------------------------------------------------------


@dataclass(frozen=True)
class Waiting:
    """One capture in the outbox, as a person may see it: never its content.

    `state` is "waiting" (not sent yet) or "sent" (the server acknowledged it; it is
    kept, sealed, until a coordinator's receipt confirms that a keyholder holds it).
    """

    bundle_id: str
    seq: int
    record_id: str
    record_type: str
    action: str  # add, edit, delete, resolve, name
    at: str | None  # when it was sealed (ISO, UTC)
    discardable: bool
    state: str = "waiting"


def waiting(prof: Profile) -> list[Waiting]:
    """The captures sent and not yet confirmed, then those still to send, oldest first,
    each with whether it can be discarded (only an unsent one can)."""
    notes = prof.state.get("notes", {})
    items = prof.state["outbox"]
    # (bundle, its index in the outbox, or None once sent)
    listed: list[tuple[dict[str, Any], int | None]]
    listed = [(e["bundle"], None) for e in delivery.sent(prof)]
    listed += [(b, n) for n, b in enumerate(items)]
    out = []
    for b, n in listed:
        state = "sent" if n is None else "waiting"
        note = notes.get(b["bundle_id"], {})
        rid = note.get("record_id") or b["cells"][0]["record_id"]
        later = set() if n is None else {c["record_id"] for x in items[n + 1 :] for c in x["cells"]}
        out.append(
            Waiting(
                bundle_id=b["bundle_id"],
                seq=b["seq"],
                record_id=rid,
                record_type=note.get("type") or prof.state["own"].get(rid, {}).get("type", "?"),
                action=note.get("action", "edit"),
                at=note.get("at"),
                discardable=state == "waiting" and _own_writes_only(prof) and rid not in later,
                state=state,
            )
        )
    return out


def _own_writes_only(prof: Profile) -> bool:
    # A coordinator's captures are folded into its replica at once; taking one back
    # would need the replica to forget cells. It edits or deletes instead.
    return not prof.is_keyholder


def discard(prof: Profile, bundle_id: str) -> Waiting:
    """Take back a capture that was not sent yet, as if it had never been made.

    The captures after it are renumbered and signed again (`crypto.rechain`; their
    cells stay sealed and untouched), so the device's chain has no gap; this
    device's index of its own cells goes back to what it was before the capture.
    Refused when a later unsent capture changes the same record (discard that
    first), and for a coordinator (see `_own_writes_only`).
    """
    items: list[dict[str, Any]] = prof.state["outbox"]
    found = {w.bundle_id: w for w in waiting(prof)}
    item = found.get(bundle_id)
    if item is None:
        raise CliError(
            f"no capture {bundle_id} waits to be sent: it was sent already, or never made"
        )
    if item.state == "sent":
        raise CliError(
            f"capture {bundle_id} was sent already: it is kept, sealed, until a coordinator"
            " confirms it holds it, and cannot be taken back"
        )
    if not item.discardable:
        if prof.is_keyholder:
            raise CliError("a coordinator's capture is merged at once: edit or delete the record")
        raise CliError("a later capture changes the same record: discard that one first")
    at = next(n for n, b in enumerate(items) if b["bundle_id"] == bundle_id)
    gone = Bundle.from_wire(items[at])
    note = prof.state.get("notes", {}).pop(bundle_id, {})
    own = prof.state["own"].get(item.record_id)
    if own is not None:
        for field, before in (note.get("replaced") or {}).items():
            if before is None:
                own["cells"].pop(field, None)
            else:
                own["cells"][field] = before
        if not own["cells"]:
            del prof.state["own"][item.record_id]
    seq, prev = gone.seq, gone.prev
    rest = []
    for raw in items[at + 1 :]:
        moved = crypto.rechain(Bundle.from_wire(raw), prof.device_key, seq, prev)
        rest.append(moved.to_wire())
        seq, prev = seq + 1, crypto.bundle_hash(moved)
    prof.state["outbox"] = items[:at] + rest
    prof.state["seq"] = seq - 1
    prof.state["prev"] = prev
    return item
