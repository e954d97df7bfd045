"""Judging pushed bundles: the checks of docs/PROTOCOL.md "Push", in its order, and the merge.

The checks that need no database (workspace, signer, epoch, clock, signature) run
before the write lock is taken, since they are most of the CPU; the rest run
inside one write transaction, bundle by bundle against the stored state plus the
bundles accepted earlier in the same request, so the outcome does not depend on
how a device batches its outbox. A rejected bundle leaves no trace.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from protocol import hlc
from protocol.crypto import bundle_hash, verify_bundle
from protocol.errors import InvalidBundle, MergeConflictError
from protocol.keylog import Device, KeyLogState
from protocol.merge import CellMeta, Register, RegisterKey, merge
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
) -> Rejection | None:
    """The checks that need only the bundle, the key log and the clock."""
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
        verify_bundle(b, signer.sign_pub)
    except InvalidBundle as exc:
        return Rejection("invalid_bundle", f"{exc.code}: {exc.reason}")
    return None


def _metas(b: Bundle) -> list[CellMeta]:
    dev = b.device_id
    return [
        CellMeta(c.record_id, c.field_tag, c.cell_id, c.hlc, dev, c.supersedes) for c in b.cells
    ]


def push(
    conn: sqlite3.Connection,
    bundles: Sequence[Bundle],
    signer: Device,
    state: KeyLogState,
    now_ms: int,
    max_skew_ms: int,
    in_transaction: Callable[[sqlite3.Connection], None] | None = None,
) -> Outcome:
    """Judge every bundle, merge and write the accepted ones; returns after COMMIT.

    `in_transaction(conn)` runs first inside the write transaction (the route
    records its request nonce there); if it raises, nothing is written.
    """
    results: list[tuple[str, int] | Rejection | None] = []
    candidates: list[tuple[int, Bundle, str]] = []
    for i, b in enumerate(bundles):
        rej = check_alone(b, state.workspace, signer, state, now_ms, max_skew_ms)
        results.append(rej)
        if rej is None:
            candidates.append((i, b, bundle_hash(b)))
    volunteer = signer.role == "volunteer"
    if candidates:
        with write(conn):
            if in_transaction is not None:
                in_transaction(conn)
            _judge_and_write(conn, candidates, results, signer.device_id, volunteer)
    final: list[tuple[str, int] | Rejection] = []
    for r in results:
        assert r is not None
        final.append(r)
    return Outcome(final)


def _judge_and_write(
    conn: sqlite3.Connection,
    candidates: list[tuple[int, Bundle, str]],
    results: list[tuple[str, int] | Rejection | None],
    device_id: str,
    volunteer: bool,
) -> None:
    ids = [b.bundle_id for _, b, _ in candidates]
    seqs = sorted({s for _, b, _ in candidates for s in (b.seq - 1, b.seq, b.seq + 1)})
    by_id = stored.by_ids(conn, ids)
    by_seq = stored.by_device_seqs(conn, device_id, seqs)
    regs, flagged = stored.registers(
        conn, sorted({c.record_id for _, b, _ in candidates for c in b.cells})
    )
    change = stored.next_change(conn)
    accepted: list[tuple[int, Bundle, str]] = []
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
        if rej is None:
            rej, merged = _merge(b, regs, volunteer)
        if rej is not None:
            results[i] = rej
            continue
        regs.update(merged)
        touched.update(merged)
        row = stored.Stored(change, b.bundle_id, b.device_id, b.seq, b.prev, h, b.sig)
        by_id[b.bundle_id] = by_seq[(b.device_id, b.seq)] = row
        accepted.append((change, b, h))
        results[i] = ("accepted", change)
        change += 1
    if not accepted:
        return
    heads = {c.cell_id for key in touched for c in regs[key].heads}
    unheaded = [(key, cid) for key in touched for cid in flagged.get(key, ()) if cid not in heads]
    stored.insert(conn, accepted, heads, unheaded)


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


def _merge(
    b: Bundle, regs: dict[RegisterKey, Register], volunteer: bool
) -> tuple[Rejection | None, Mapping[RegisterKey, Register]]:
    metas = _metas(b)
    if volunteer:
        for m in metas:
            reg = regs.get(m.key)
            if reg is None:
                continue
            for s in m.supersedes:
                other = reg.cells.get(s)
                if other is not None and other.device_id != m.device_id:
                    return Rejection(
                        "foreign_supersede", "a volunteer may supersede only its own cells"
                    ), {}
    sub = {m.key: regs[m.key] for m in metas if m.key in regs}
    try:
        merged, new = merge(sub, metas)
    except MergeConflictError as exc:
        return Rejection("cell_id_reused", exc.reason), {}
    if len(new) != len(metas):
        # A new bundle's cell id names its bundle (the id is a hash over associated
        # data that includes the bundle id), so a cell already known here is reused.
        return Rejection("cell_id_reused", "a cell id of this bundle is already stored"), {}
    return None, merged
