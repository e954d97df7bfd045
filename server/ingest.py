"""Judging pushed bundles: the checks of docs/PROTOCOL.md "Push", in its order, and the merge.

The checks that need no database (workspace, signer, epoch, clock, signature) run
before the write lock is taken, since they are most of the CPU; the rest run
inside one write transaction, bundle by bundle against the stored state plus the
bundles accepted earlier in the same request, so the outcome does not depend on
how a device batches its outbox. A rejected bundle leaves no trace.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from protocol import hlc
from protocol.crypto import verify_bundle
from protocol.errors import InvalidBundle, MergeConflictError
from protocol.keylog import Device, KeyLogState
from protocol.merge import CellMeta, RegisterKey, fold
from protocol.model import ZERO_HASH, Bundle

from .store import bundles as stored
from .store import write


@dataclass(frozen=True, slots=True)
class Rejection:
    code: str
    message: str


@dataclass
class Outcome:
    """results[i] answers bundles[i]: ("accepted"|"stored", change) or a Rejection."""

    results: list[tuple[str, int] | Rejection] = field(default_factory=list)

    def to_wire(self, bundles: Sequence[Bundle]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for b, r in zip(bundles, self.results, strict=True):
            if isinstance(r, Rejection):
                out.append(
                    {
                        "bundle_id": b.bundle_id,
                        "status": "rejected",
                        "error": {"code": r.code, "message": r.message},
                    }
                )
            else:
                out.append({"bundle_id": b.bundle_id, "status": r[0], "seq": r[1]})
        return out


def check_alone(
    b: Bundle, workspace: str, signer: Device, state: KeyLogState, now_ms: int, max_skew_ms: int
) -> Rejection | str:
    """The checks that need only the bundle, the key log and the clock: a refusal, or
    the bundle's hash (which its successor names as `prev`)."""
    if b.workspace != workspace:
        return Rejection("wrong_workspace", "the bundle belongs to another workspace")
    if b.device_id != signer.device_id:
        return Rejection("not_your_bundle", "a device pushes only its own bundles")
    if b.epoch not in state.epochs or b.key_epoch != b.epoch:
        return Rejection("unknown_epoch", f"epoch {b.epoch} is not in the key log")
    if hlc.too_far_ahead(max(c.hlc for c in b.cells), now_ms, max_skew_ms):
        i = next(i for i, c in enumerate(b.cells) if hlc.too_far_ahead(c.hlc, now_ms, max_skew_ms))
        return Rejection("hlc_ahead", f"cell {i}: its clock is ahead of the server's")
    try:
        return verify_bundle(b, signer.sign_pub)
    except InvalidBundle as exc:
        return Rejection("invalid_bundle", f"{exc.code}: {exc.reason}")


def _metas(b: Bundle, keyholder: bool) -> list[CellMeta]:
    dev = b.device_id
    return [
        CellMeta(c.record_id, c.field_tag, c.cell_id, c.hlc, dev, c.supersedes, "", keyholder)
        for c in b.cells
    ]


def push(
    conn: sqlite3.Connection,
    bundles: Sequence[Bundle],
    signer: Device,
    state: KeyLogState,
    now_ms: int,
    max_skew_ms: int,
    in_transaction: Callable[[sqlite3.Connection], None] | None = None,
    quota: int | None = None,
) -> Outcome:
    """Judge every bundle, merge and write the accepted ones; returns after COMMIT.

    `in_transaction(conn)` runs first inside the write transaction (the route
    checks there that its device was not revoked meanwhile); if it raises, nothing
    is written. `quota` bounds the bytes the signer may have stored (None: no bound).
    """
    results: list[tuple[str, int] | Rejection | None] = []
    candidates: list[tuple[int, Bundle, str]] = []
    for i, b in enumerate(bundles):
        judged = check_alone(b, state.workspace, signer, state, now_ms, max_skew_ms)
        if isinstance(judged, Rejection):
            results.append(judged)
        else:
            results.append(None)
            candidates.append((i, b, judged))
    if candidates:
        with write(conn):
            if in_transaction is not None:
                in_transaction(conn)
            _judge_and_write(conn, candidates, results, signer, state, quota)
    final: list[tuple[str, int] | Rejection] = []
    for r in results:
        assert r is not None
        final.append(r)
    return Outcome(final)


def _judge_and_write(
    conn: sqlite3.Connection,
    candidates: list[tuple[int, Bundle, str]],
    results: list[tuple[str, int] | Rejection | None],
    signer: Device,
    state: KeyLogState,
    quota: int | None,
) -> None:
    devices = state.devices

    def keyholder(device_id: str) -> bool:
        dev = devices.get(device_id)
        return dev is not None and dev.is_keyholder

    ids = [b.bundle_id for _, b, _ in candidates]
    seqs = sorted({s for _, b, _ in candidates for s in (b.seq - 1, b.seq, b.seq + 1)})
    by_id = stored.by_ids(conn, ids)
    by_seq = stored.by_device_seqs(conn, signer.device_id, seqs)
    metas = {b.bundle_id: _metas(b, signer.is_keyholder) for _, b, _ in candidates}
    view = stored.view(conn, [m for ms in metas.values() for m in ms], keyholder)
    # Only an approved keyholder may replace another device's write; anyone else
    # naming a stored cell of another device is refused by name (the merge would
    # give such a naming no effect anyway).
    foreign: dict[tuple[str, str, str], str] = {}
    if not (signer.is_keyholder and signer.status == "active"):
        named = sorted(
            {
                (m.record_id, m.field_tag, s)
                for ms in metas.values()
                for m in ms
                for s in m.supersedes
            }
        )
        foreign = {k: d for k, d in stored.devices_of(conn, named).items() if d != signer.device_id}
    stored_heads = {key: {h.cell_id for h in hs} for key, hs in view.heads.items()}
    change = stored.next_change(conn)
    used = stored.used_bytes(conn, signer.device_id) if quota is not None else 0
    added = 0
    accepted: list[tuple[int, Bundle, str, int]] = []
    namings: list[tuple[tuple[str, str, str], str]] = []
    touched: set[RegisterKey] = set()
    for i, b, h in candidates:
        known = by_id.get(b.bundle_id)
        if known is not None:
            if known.hash == h and known.sig == b.sig:
                results[i] = ("stored", known.change)
            else:
                results[i] = Rejection("bundle_id_reused", "another bundle has this id")
            continue
        rej = _chain(b, h, by_seq)
        if rej is None and foreign:
            rej = _foreign(metas[b.bundle_id], foreign)
        size = stored.served_size(change, b)
        if rej is None and quota is not None and used + added + size > quota:
            rej = Rejection(
                "quota_exceeded",
                f"this device has {used + added} bytes stored of its {quota}; this bundle"
                f" needs {size} more",
            )
        if rej is None:
            try:
                delta = fold(view, metas[b.bundle_id])
            except MergeConflictError as exc:
                rej = Rejection(exc.code, exc.reason)
            else:
                if len(delta.accepted) != len(b.cells):
                    # Unreachable for a verified bundle: a cell id hashes its bundle id.
                    rej = Rejection("cell_id_reused", "a cell id of this bundle is already stored")
        if rej is not None:
            results[i] = rej
            continue
        touched.update([(m.record_id, m.field_tag) for m in delta.accepted])
        namings.extend((target, n.device_id) for target, n in delta.namings)
        row = stored.Stored(change, b.bundle_id, b.device_id, b.seq, b.prev, h, b.sig)
        by_id[b.bundle_id] = by_seq[(b.device_id, b.seq)] = row
        accepted.append((change, b, h, size))
        added += size
        results[i] = ("accepted", change)
        change += 1
    if not accepted:
        return
    # One set of the final heads' ids serves every register: a cell id belongs to one
    # register only (its record id and field tag are hashed into it).
    final = view.heads
    heads = {c.cell_id for key in touched for c in final.get(key, ())}
    unheaded = [
        (key, cid)
        for key, cids in stored_heads.items()
        if key in touched
        for cid in cids
        if cid not in heads
    ]
    stored.insert(conn, accepted, heads, unheaded, namings)
    stored.add_usage(conn, signer.device_id, added)


def _foreign(metas: list[CellMeta], foreign: dict[tuple[str, str, str], str]) -> Rejection | None:
    for m in metas:
        for s in m.supersedes:
            if (m.record_id, m.field_tag, s) in foreign:
                return Rejection(
                    "foreign_supersede",
                    "only an approved coordinator may replace another device's value",
                )
    return None


def _chain(b: Bundle, h: str, by_seq: dict[tuple[str, int], stored.Stored]) -> Rejection | None:
    same = by_seq.get((b.device_id, b.seq))
    if same is not None:
        return Rejection("fork", f"another bundle is stored as this device's number {b.seq}")
    before = by_seq.get((b.device_id, b.seq - 1))
    if (b.seq == 1 and b.prev != ZERO_HASH) or (before is not None and before.hash != b.prev):
        return Rejection("broken_chain", f"prev does not name this device's bundle {b.seq - 1}")
    after = by_seq.get((b.device_id, b.seq + 1))
    if after is not None and after.prev != h:
        return Rejection("broken_chain", f"this device's stored bundle {b.seq + 1} does not chain")
    return None
