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

import os
import time
from dataclasses import dataclass
from typing import Any

from protocol import crypto, hlc
from protocol.encoding import b64d, b64e
from protocol.errors import InvalidEncoding
from protocol.model import Bundle, CellInput
from schemas.records import DELETED_FIELD, RECORD_TYPES, RecordError, load_fields
from schemas.wire import MAX_SUPERSEDES

from .errors import CliError, UsageError
from .profile import Profile
from .replica import Replica


@dataclass(frozen=True)
class Write:
    field: str
    value: Any
    supersedes: tuple[str, ...]


def check_record_id(text: str) -> str:
    try:
        b64d(text, length=16, what="record id")
    except InvalidEncoding:
        raise UsageError(
            f"not a record id: {text!r} (22 characters, as printed by `fieldsync add`)"
        ) from None
    return text


def validate(record_type: str, values: dict[str, Any]) -> dict[str, Any]:
    if not values:
        raise UsageError("nothing to record: give at least one --set FIELD=VALUE")
    try:
        return load_fields(record_type, values)
    except RecordError as exc:
        raise CliError(str(exc)) from None


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
        tag = crypto.field_tag(prof.tag_key, record_id, record_type, field)
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
) -> Bundle:
    """Seal one capture into the outbox; a coordinator also folds it into its replica."""
    log = prof.log()
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
    for cell, inp in zip(bundle.cells, inputs, strict=True):
        own["cells"][inp.field] = cell.cell_id
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
    typed = validate(record_type, values)
    record_id = new_record_id()
    seal(prof, record_id, record_type, [Write(k, v, ()) for k, v in typed.items()], replica)
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
    seal(prof, record_id, record_type, writes, replica)
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
    tag = crypto.field_tag(prof.tag_key, record_id, record_type, field)
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
    seal(prof, record_id, record_type, [write], replica)
    return chosen
