"""A coordinator's decrypted replica: an encrypted SQLite database that grows for years.

Bundles are verified and opened (`opening.py`, on every core for a large page)
before anything is merged; the merge is the pure core's `fold` over a view read
through indexes (`merging.py`), so heads, winners and conflicts are the server's;
what the read layer filters on is kept as cells arrive (`derived.py`), and each
device's chain as runs (`chains.py`). Every page of a pull is one transaction with
the cursor that stands for it, so an interrupted pull resumes where it stopped.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol import crypto, keylog
from protocol.errors import InvalidBundle, MergeConflictError
from protocol.merge import MAX_HEADS
from protocol.model import Bundle

from . import chains, store
from .merging import PageMerge
from .opening import Keys, Opened, Opener, Pending, Result, hash_or_blank, open_one


@dataclass
class Ingested:
    """What one page of bundles did to the replica."""

    bundles: int = 0
    cells: int = 0
    failed: list[str] = field(default_factory=list)  # one message per bundle
    devices: set[str] = field(default_factory=set)
    max_hlc: int = 0


@dataclass(frozen=True)
class HeadCell:
    record_id: str
    record_type: str
    field: str
    value: Any
    hlc: int
    device_id: str
    cell_id: str


class Replica:
    def __init__(self, path: Path, key: bytes) -> None:
        self.path = path
        self.db = store.connect(path, key)
        self._open_txn = False

    def begin(self) -> None:
        if not self._open_txn:
            self.db.execute("BEGIN IMMEDIATE")
            self._open_txn = True

    def save(self) -> None:
        """Commit what local captures folded in (a pull commits page by page itself)."""
        if self._open_txn:
            self.db.execute("COMMIT")
            self._open_txn = False

    def _rollback(self) -> None:
        self._open_txn = False
        if self.db.in_transaction:  # not when BEGIN itself failed
            self.db.execute("ROLLBACK")

    def close(self) -> None:
        """Close; anything not saved is rolled back (the vault was not saved either)."""
        self._rollback()
        self.db.close()

    # --- meta -------------------------------------------------------------------------

    def _meta(self, key: str, default: str) -> str:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else default

    def _set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    @property
    def cursor(self) -> int:
        return int(self._meta("cursor", "0"))

    @cursor.setter
    def cursor(self, value: int) -> None:
        """Set in the open transaction: committed with the next page (or `save()`)."""
        self.begin()
        self._set_meta("cursor", str(value))

    @property
    def incarnation(self) -> str | None:
        """The server database's incarnation the cursor counts in (None before a pull)."""
        return self._meta("incarnation", "") or None

    @incarnation.setter
    def incarnation(self, value: str) -> None:
        self.begin()
        self._set_meta("incarnation", value)

    # --- ingesting bundles ------------------------------------------------------------

    def ingest(
        self,
        bundles: Iterable[tuple[Bundle, int | None]],
        log: keylog.KeyLogState,
        epoch_keys: dict[int, bytes],
        tag_key: bytes,
        *,
        opened: Pending | None = None,
        cursor: int | None = None,
        commit: bool = True,
    ) -> Ingested:
        """Verify, open and merge bundles (with their change numbers, None for local ones),
        in one transaction with the new `cursor`; `commit=False` leaves it for `save()`.

        `opened`: the same bundles already being opened (`Opener.start`). A bundle that
        fails verification, or that the merge refuses, is recorded as a problem and
        merged nowhere.
        """
        pairs = list(bundles)
        # A page allocates some 10^5 small objects (cells, metas, rows) and frees them at
        # its end, without cycles; the collector's passes over the whole heap they set off
        # were ~7 % of a first pull's merging process. It runs again after the page.
        collecting = gc.isenabled()
        gc.disable()
        self.begin()
        try:
            out = self._ingest(pairs, log, Keys.of(log, epoch_keys, tag_key), opened)
            if cursor is not None:
                self._set_meta("cursor", str(cursor))
            if commit:
                self.save()
        except BaseException:
            self._rollback()
            raise
        finally:
            if collecting:
                gc.enable()
        return out

    def _ingest(
        self,
        pairs: list[tuple[Bundle, int | None]],
        log: keylog.KeyLogState,
        keys: Keys,
        pending: Pending | None,
    ) -> Ingested:
        out = Ingested()
        db = self.db
        results: dict[str, Result] = {}
        hashes: dict[str, str] = {}
        if pending is not None:
            # By id, the first copy's: the one merged when a page holds an id twice.
            for b, result, h in zip(
                pending.bundles, pending.results(), pending.hashes(), strict=True
            ):
                if b.bundle_id not in results:
                    results[b.bundle_id], hashes[b.bundle_id] = result, h
        fresh: list[tuple[Bundle, int | None]] = []
        in_page: set[str] = set()
        held = self._known([b.bundle_id for b, _ in pairs])
        for bundle, change in pairs:
            if bundle.bundle_id in in_page:
                continue
            in_page.add(bundle.bundle_id)
            known = held.get(bundle.bundle_id)
            if known is not None and known[2]:
                lie = self._served_again(bundle, change, known[0], known[1], log)
                if lie:
                    out.failed.append(lie)
                continue
            if known is not None:
                # It failed verification when first served: this copy gets its chance.
                db.execute("DELETE FROM bundles WHERE bundle_id = ?", (bundle.bundle_id,))
                db.execute("DELETE FROM problems WHERE key = ?", (f"bad:{bundle.bundle_id}",))
                self._count("bundles", -1)
            fresh.append((bundle, change))
        opened = [
            results[b.bundle_id] if b.bundle_id in results else open_one(b, keys) for b, _ in fresh
        ]

        def keyholder(device_id: str) -> bool:
            dev = log.devices.get(device_id)
            return dev is not None and dev.is_keyholder

        merge = PageMerge(db, keyholder)
        merge.load(c for cells in opened if isinstance(cells, list) for c in cells)
        page_chains = chains.PageChains(db)
        page_chains.known([b for b, _ in fresh])
        rows = []
        for (bundle, change), cells in zip(fresh, opened, strict=True):
            out.bundles += 1
            out.devices.add(bundle.device_id)
            refusal = cells if isinstance(cells, tuple) else None
            verb = "failed verification"
            if isinstance(cells, list):
                try:
                    out.cells += merge.fold(cells)
                    out.max_hlc = max([out.max_hlc, *(c.hlc for c in cells)])
                except MergeConflictError as exc:
                    refusal, verb = (exc.code, exc.reason), "was refused by the merge"
            bundle_hash = hashes.get(bundle.bundle_id)
            if bundle_hash is None:
                bundle_hash = hash_or_blank(bundle)
            rows.append((bundle.bundle_id, bundle.device_id, bundle.seq, bundle.prev,
                         bundle_hash, change, 0 if refusal else 1))  # fmt: skip
            if refusal is not None:
                message = (
                    f"device {bundle.device_id}: bundle {bundle.seq} ({bundle.bundle_id})"
                    f" {verb} and was not merged: {refusal[0]}: {refusal[1]}"
                )
                out.failed.append(message)
                self._problem(f"bad:{bundle.bundle_id}", bundle.device_id, message)
                continue
            fork = page_chains.add(bundle, bundle_hash)
            if fork is not None:
                self._problem(f"fork:{bundle.device_id}:{bundle.seq}", bundle.device_id, fork)
        db.executemany("INSERT INTO bundles VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        page_chains.flush()
        # Devices whose chains need a check, kept with the data: a pull cut off
        # before its end still gets them checked by the next one.
        db.executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, '')",
            [(f"dirty:{d}",) for d in out.devices],
        )
        self._apply(merge)
        self._count("bundles", out.bundles)
        self._count("cells", out.cells)
        return out

    def merge_opened(
        self,
        cells: Sequence[Opened],
        keyholder: Callable[[str], bool],
        max_heads: int | None = MAX_HEADS,
    ) -> int:
        """Merge cells opened elsewhere as one batch, in the open transaction (a migrated
        replica, tests); returns how many were new. `keyholder(device_id)`: its role."""
        self.begin()
        merge = PageMerge(self.db, keyholder)
        merge.load(cells)
        n = merge.fold(cells, max_heads)
        self._apply(merge)
        self._count("cells", n)
        return n

    def _known(self, bundle_ids: list[str]) -> dict[str, tuple[str, int | None, int]]:
        """bundle id -> (hash, change, ok) of the bundles among these already held."""
        out = {}
        for i in range(0, len(bundle_ids), 500):
            part = bundle_ids[i : i + 500]
            marks = ",".join("?" * len(part))
            for bid, h, change, ok in self.db.execute(
                f"SELECT bundle_id, hash, change, ok FROM bundles WHERE bundle_id IN ({marks})",  # noqa: S608
                part,
            ):
                out[bid] = (h, change, ok)
        return out

    def _apply(self, merge: PageMerge) -> None:
        from . import derived  # the record schemas: not for a command that only reads counts

        merge.write()
        # Only a register with two heads now or at load has a conflict row to set or clear
        # (most of a first pull's registers have one head, before and after).
        heads = merge.view.heads
        changed = {
            k: heads.get(k, [])
            for k in merge.changed
            if len(heads.get(k, ())) > 1 or len(merge.stored.get(k, ())) > 1
        }
        derived.update_conflicts(self.db, changed, merge.stored)
        # A register changes only by a cell accepted into it: its record is numbered.
        derived.refresh(
            self.db, {merge.rids[c.record_id] for c in merge.accepted}, merge.fresh_heads()
        )

    def _served_again(
        self,
        bundle: Bundle,
        change: int | None,
        stored_hash: str,
        stored_change: int | None,
        log: keylog.KeyLogState,
    ) -> str | None:
        """A bundle already merged, served again: this device's own bundle coming back
        numbered, a re-keyed copy, or a replay. The same signed content changes
        nothing; other content is the server's lie, reported and not merged."""
        if change is not None and stored_change is None:
            self.db.execute(
                "UPDATE bundles SET change = ? WHERE bundle_id = ?", (change, bundle.bundle_id)
            )
        device = log.devices.get(bundle.device_id)
        try:
            if device is None or hash_or_blank(bundle) != stored_hash:
                raise InvalidBundle("header", "not the header signed before")
            crypto.verify_bundle(bundle, device.sign_pub)  # the cells the header names
        except (InvalidBundle, TypeError, ValueError, AttributeError):
            message = (
                f"device {bundle.device_id}: bundle {bundle.seq} ({bundle.bundle_id}) was"
                " served again with other content; the copy verified before is kept"
            )
            self._problem(f"again:{bundle.bundle_id}", bundle.device_id, message)
            return message
        return None

    def _problem(self, key: str, device_id: str | None, message: str) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO problems (key, device_id, message) VALUES (?, ?, ?)",
            (key, device_id, message),
        )

    def opener(
        self, log: keylog.KeyLogState, epoch_keys: dict[int, bytes], tag_key: bytes
    ) -> Opener:
        return Opener(Keys.of(log, epoch_keys, tag_key))

    # --- chains -----------------------------------------------------------------------

    def check_chains(self) -> list[str]:
        """What is wrong in the chain of each device with new bundles: gaps, broken links,
        forks. Costs each such device's runs (one per gap), not its chain."""
        db = self.db
        found: list[str] = []
        dirty = [r[0][6:] for r in db.execute("SELECT key FROM meta WHERE key LIKE 'dirty:%'")]
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM meta WHERE key LIKE 'dirty:%'")
            for dev in sorted(dirty):
                db.execute("DELETE FROM problems WHERE key LIKE ?", (f"chain:{dev}:%",))
                forks = [
                    str(r[0])
                    for r in db.execute(
                        "SELECT message FROM problems WHERE key LIKE ? ORDER BY key",
                        (f"fork:{dev}:%",),
                    )
                ]
                missing = chains.gaps(db, dev)
                for i, message in enumerate(missing):
                    self._problem(f"chain:{dev}:{i:06d}", dev, message)
                found += forks + missing
            db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        return found

    def chain_heads(self) -> dict[str, tuple[int, str]]:
        """device id -> (the highest bundle number up to which this replica holds the
        device's chain without a gap, that bundle's hash): what a receipt states."""
        return chains.heads(self.db)

    def held_seqs(self, device_id: str, low: int, high: int) -> set[int]:
        """The numbers from `low` to `high` of a device's verified bundles held here."""
        rows = self.db.execute(
            "SELECT seq FROM bundles WHERE device_id = ? AND seq BETWEEN ? AND ? AND ok = 1",
            (device_id, low, high),
        )
        return {int(r[0]) for r in rows}

    def max_seqs(self) -> dict[str, int]:
        """device id -> the highest number of its verified bundles held here (one row per
        stretch of its chain, not per bundle)."""
        rows = self.db.execute("SELECT device_id, max(last_seq) FROM runs GROUP BY device_id")
        return {str(dev): int(seq) for dev, seq in rows}

    def problems(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT message FROM problems ORDER BY key")]

    # --- reading (the read layer is client_sync/view.py) -------------------------------

    def record_type(self, record_id: str) -> str | None:
        row = self.db.execute(
            "SELECT record_type FROM records WHERE record_id = ?", (record_id,)
        ).fetchone()
        return str(row[0]) if row else None

    def heads(self, record_id: str, field_tag: str) -> list[HeadCell]:
        """The register's heads, winner first (the merge's order)."""
        rows = self.db.execute(
            "SELECT r.record_id, c.record_type, c.field, c.value, c.hlc, c.device_id, c.cell_id"
            " FROM records r JOIN cells c ON c.rid = r.rid AND c.field_tag = ? AND c.head = 1"
            " WHERE r.record_id = ?",
            (field_tag, record_id),
        )
        return ordered([head_of(r) for r in rows])

    def counts(self) -> dict[str, int]:
        """Records, bundles and cells held: from counters kept as they arrive, so a
        coordinator's `status` does not read the replica through."""
        return {
            "records": int(self.db.execute("SELECT max(rid) FROM records").fetchone()[0] or 0),
            "bundles": int(self._meta("count:bundles", "0")),
            "cells": int(self._meta("count:cells", "0")),
        }

    def _count(self, name: str, delta: int) -> None:
        if delta:
            self.db.execute(
                "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE"
                " SET value = CAST(value AS INTEGER) + excluded.value",
                (f"count:{name}", delta),
            )


def head_of(r: Sequence[Any]) -> HeadCell:
    return HeadCell(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5], r[6])


def ordered(heads: list[HeadCell]) -> list[HeadCell]:
    return sorted(heads, key=lambda h: (h.hlc, h.device_id, h.cell_id), reverse=True)
