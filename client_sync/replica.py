"""A coordinator's decrypted replica: SQLite in memory, sealed as one file at rest.

The database never touches the disk in clear: it is loaded with `deserialize()`
from `replica.sealed` (ChaCha20-Poly1305 under a random key kept in the vault),
worked on in memory (`temp_store = MEMORY`, so large sorts cannot spill plaintext
to a temporary file) and written back with `serialize()` and an atomic replace.

Bundles are verified and opened before anything is merged, and the merge is the
pure core's (`protocol.merge.merge`), so heads, winners and conflicts are the
server's. This module holds all of the client's SQL.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol import crypto, keylog
from protocol.encoding import b64d
from protocol.errors import InvalidBundle, MergeConflictError
from protocol.merge import CellMeta, State, merge
from protocol.model import ZERO_HASH, Bundle, OpenedCell

from .profile import REPLICA_FILE, Profile
from .vault import open_blob, seal_blob, write_atomic

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE bundles (
    bundle_id TEXT PRIMARY KEY, device_id TEXT NOT NULL, seq INTEGER NOT NULL,
    prev TEXT NOT NULL, hash TEXT NOT NULL, change INTEGER, ok INTEGER NOT NULL
);
CREATE INDEX bundles_chain ON bundles (device_id, seq);
CREATE TABLE records (
    record_id TEXT PRIMARY KEY, record_type TEXT NOT NULL, first_hlc INTEGER NOT NULL
);
CREATE TABLE cells (
    cell_id TEXT PRIMARY KEY, record_id TEXT NOT NULL, field_tag TEXT NOT NULL,
    record_type TEXT NOT NULL, field TEXT NOT NULL, value TEXT NOT NULL,
    hlc INTEGER NOT NULL, device_id TEXT NOT NULL, bundle_id TEXT NOT NULL,
    supersedes TEXT NOT NULL, head INTEGER NOT NULL
);
CREATE INDEX cells_register ON cells (record_id, field_tag);
CREATE INDEX cells_heads ON cells (head, record_id);
CREATE TABLE problems (key TEXT PRIMARY KEY, device_id TEXT, message TEXT NOT NULL);
"""

_CELL_COLS = "cell_id, record_id, field_tag, hlc, device_id, supersedes, bundle_id"


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
    def __init__(self, path: Path, key: bytes, workspace: str) -> None:
        self.path = path
        self._key = key
        self._ad = workspace.encode("ascii")
        self.db = sqlite3.connect(":memory:", isolation_level=None)
        if path.exists():
            self.db.deserialize(open_blob(key, self._ad, path.read_bytes(), "replica"))
        else:
            self.db.executescript(SCHEMA)
        self.db.execute("PRAGMA temp_store = MEMORY")
        self._saved_at = time.monotonic()

    def save(self) -> None:
        write_atomic(self.path, seal_blob(self._key, self._ad, self.db.serialize()))
        self._saved_at = time.monotonic()

    def save_every(self, seconds: float) -> None:
        """A long pull saves now and then, so an interrupted one resumes near where it was."""
        if time.monotonic() - self._saved_at > seconds:
            self.save()

    def close(self) -> None:
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
        self._set_meta("cursor", str(value))

    @property
    def incarnation(self) -> str | None:
        """The server database's incarnation the cursor counts in (None before a pull)."""
        value = self._meta("incarnation", "")
        return value or None

    @incarnation.setter
    def incarnation(self, value: str) -> None:
        self._set_meta("incarnation", value)

    def chain_heads(self) -> dict[str, tuple[int, str]]:
        """device id -> (seq, hash) of the last bundle of its chain held here without a
        gap from 1 (each verified, each `prev` the hash of the one before)."""
        out: dict[str, tuple[int, str]] = {}
        rows = self.db.execute(
            "SELECT device_id, seq, prev, hash FROM bundles WHERE ok = 1 ORDER BY device_id, seq"
        )
        for dev, seq, prev, h in rows:
            n, last = out.get(dev, (0, ZERO_HASH))
            if seq == n + 1 and prev == last:
                out[dev] = (seq, h)
        return {dev: head for dev, head in out.items() if head[0] > 0}

    def held_seqs(self, device_id: str, low: int, high: int) -> set[int]:
        """The seqs from `low` to `high` of a device's verified bundles held here."""
        rows = self.db.execute(
            "SELECT seq FROM bundles WHERE device_id = ? AND seq BETWEEN ? AND ? AND ok = 1",
            (device_id, low, high),
        )
        return {int(r[0]) for r in rows}

    def max_seqs(self) -> dict[str, int]:
        """device id -> the highest seq of its verified bundles held here."""
        rows = self.db.execute("SELECT device_id, max(seq) FROM bundles WHERE ok = 1 GROUP BY 1")
        return {str(dev): int(seq) for dev, seq in rows}

    # --- ingesting bundles ------------------------------------------------------------

    def ingest(
        self,
        bundles: Iterable[tuple[Bundle, int | None]],
        log: keylog.KeyLogState,
        epoch_keys: dict[int, bytes],
        tag_key: bytes,
    ) -> Ingested:
        """Verify, open and merge bundles (with their change numbers, None for local ones).

        A bundle that fails verification is recorded as a problem and merged nowhere.
        """
        out = Ingested()
        opened: list[OpenedCell] = []
        rows = []
        db = self.db
        in_page: set[str] = set()
        db.execute("BEGIN")
        try:
            for bundle, change in bundles:
                if bundle.bundle_id in in_page:
                    continue
                in_page.add(bundle.bundle_id)
                known = db.execute(
                    "SELECT hash, change, ok FROM bundles WHERE bundle_id = ?",
                    (bundle.bundle_id,),
                ).fetchone()
                if known is not None and known[2]:
                    lie = self._served_again(bundle, change, known[0], known[1], log)
                    if lie:
                        out.failed.append(lie)
                    continue
                if known is not None:
                    # It failed verification when first served: this copy gets its chance.
                    db.execute("DELETE FROM bundles WHERE bundle_id = ?", (bundle.bundle_id,))
                    db.execute("DELETE FROM problems WHERE key = ?", (f"bad:{bundle.bundle_id}",))
                out.bundles += 1
                out.devices.add(bundle.device_id)
                ok = 1
                try:
                    cells = self._open(bundle, log, epoch_keys, tag_key)
                except InvalidBundle as exc:
                    ok = 0
                    message = (
                        f"device {bundle.device_id}: bundle {bundle.seq} ({bundle.bundle_id})"
                        f" failed verification and was not merged: {exc.code}: {exc.reason}"
                    )
                    out.failed.append(message)
                    self._problem(f"bad:{bundle.bundle_id}", bundle.device_id, message)
                else:
                    opened.extend(cells)
                rows.append(
                    (
                        bundle.bundle_id,
                        bundle.device_id,
                        bundle.seq,
                        bundle.prev,
                        _hash_or_blank(bundle),
                        change,
                        ok,
                    )
                )
            db.executemany("INSERT INTO bundles VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            # Devices whose chains need a check, kept with the data: a pull cut off
            # before its end still gets them checked by the next one.
            db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, '')",
                [(f"dirty:{d}",) for d in out.devices],
            )
            out.cells = self._fold(opened, log)
            out.max_hlc = max((c.hlc for c in opened), default=0)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return out

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
            if device is None or _hash_or_blank(bundle) != stored_hash:
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

    @staticmethod
    def _open(
        bundle: Bundle, log: keylog.KeyLogState, epoch_keys: dict[int, bytes], tag_key: bytes
    ) -> list[OpenedCell]:
        device = log.devices.get(bundle.device_id)
        if device is None:
            raise InvalidBundle("unknown_device", "its device is not in the key log")
        if bundle.workspace != log.workspace:
            raise InvalidBundle("wrong_workspace", "it names another workspace")
        if bundle.epoch not in log.epochs:
            raise InvalidBundle("unknown_epoch", f"epoch {bundle.epoch} is not in the key log")
        try:
            return crypto.open_bundle(bundle, device.sign_pub, epoch_keys, tag_key)
        except (TypeError, ValueError, AttributeError) as exc:
            # Wrong JSON types from the feed: not a bundle any device signed.
            raise InvalidBundle("malformed", f"a field has the wrong type ({exc})") from exc

    def _fold(self, opened: list[OpenedCell], log: keylog.KeyLogState) -> int:
        """Merge opened cells with the pure core; keep the `head` flags in step."""
        if not opened:
            return 0
        db = self.db

        def keyholder(device_id: str) -> bool:
            dev = log.devices.get(device_id)
            return dev is not None and dev.is_keyholder

        touched = {(c.record_id, c.field_tag) for c in opened}
        record_ids = sorted({c.record_id for c in opened})
        existing: list[CellMeta] = []
        for i in range(0, len(record_ids), 500):
            chunk = record_ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for row in db.execute(
                f"SELECT {_CELL_COLS} FROM cells WHERE record_id IN ({marks})",  # noqa: S608
                chunk,
            ):
                if (row[1], row[2]) in touched:
                    existing.append(_meta_of(row, keyholder))
        state: State
        state, _ = merge({}, existing)
        old_heads = {h.cell_id for reg in state.values() for h in reg.heads}
        by_id = {c.cell_id: c for c in opened}
        metas = [
            CellMeta(
                c.record_id,
                c.field_tag,
                c.cell_id,
                c.hlc,
                c.device_id,
                c.supersedes,
                c.bundle_id,
                keyholder(c.device_id),
            )
            for c in opened
        ]
        try:
            state, accepted = merge(state, metas)
        except MergeConflictError as exc:
            # Cell ids hash their bundle id and content: this is a broken or hostile device.
            raise InvalidBundle("cell_id_reused", exc.reason) from exc
        new_heads = {h.cell_id for key in touched for h in state[key].heads}
        gone = old_heads - new_heads
        if gone:
            db.executemany("UPDATE cells SET head = 0 WHERE cell_id = ?", [(c,) for c in gone])
        rows = []
        firsts: dict[str, tuple[str, int]] = {}
        for meta in accepted:
            c = by_id[meta.cell_id]
            rows.append(
                (
                    c.cell_id,
                    c.record_id,
                    c.field_tag,
                    c.record_type,
                    c.field,
                    json.dumps(c.value, ensure_ascii=False),
                    c.hlc,
                    c.device_id,
                    c.bundle_id,
                    json.dumps(list(c.supersedes)),
                    1 if c.cell_id in new_heads else 0,
                )
            )
            first = firsts.get(c.record_id)
            if first is None or c.hlc < first[1]:
                firsts[c.record_id] = (c.record_type, c.hlc)
        db.executemany("INSERT INTO cells VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        db.executemany(
            "INSERT INTO records VALUES (?, ?, ?) ON CONFLICT (record_id) DO UPDATE SET"
            " record_type = CASE WHEN excluded.first_hlc < first_hlc"
            " THEN excluded.record_type ELSE record_type END,"
            " first_hlc = min(first_hlc, excluded.first_hlc)",
            [(rid, rtype, hlc) for rid, (rtype, hlc) in firsts.items()],
        )
        return len(accepted)

    def _problem(self, key: str, device_id: str | None, message: str) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO problems (key, device_id, message) VALUES (?, ?, ?)",
            (key, device_id, message),
        )

    # --- chains -----------------------------------------------------------------------

    def check_chains(self) -> list[str]:
        """Re-check the chain of each device with new bundles: contiguous seq from 1,
        each `prev` the hash of the bundle before."""
        db = self.db
        found: list[str] = []
        dirty = [r[0][6:] for r in db.execute("SELECT key FROM meta WHERE key LIKE 'dirty:%'")]
        db.execute("DELETE FROM meta WHERE key LIKE 'dirty:%'")
        for dev in sorted(dirty):
            db.execute("DELETE FROM problems WHERE key LIKE ?", (f"chain:{dev}:%",))
            by_seq: dict[int, list[tuple[str, str]]] = defaultdict(list)
            for seq, prev, h in db.execute(
                "SELECT seq, prev, hash FROM bundles WHERE device_id = ? AND ok = 1 ORDER BY seq",
                (dev,),
            ):
                by_seq[seq].append((prev, h))
            expected = 1
            last_hash: str | None = None
            for seq in sorted(by_seq):
                if len(by_seq[seq]) > 1:
                    found.append(f"device {dev}: two different bundles numbered {seq} (a fork)")
                if seq > expected:
                    span = f"{expected}" if seq - expected == 1 else f"{expected}-{seq - 1}"
                    noun = "bundle" if seq - expected == 1 else "bundles"
                    where = f"between {expected - 1} and {seq}" if expected > 1 else f"before {seq}"
                    found.append(f"device {dev}: {noun} {span} missing {where}")
                elif last_hash is not None and by_seq[seq][0][0] != last_hash:
                    found.append(
                        f"device {dev}: bundle {seq} does not chain to bundle {seq - 1}"
                        " (its prev is not that bundle's hash)"
                    )
                expected = seq + 1
                last_hash = by_seq[seq][0][1]
            for i, message in enumerate(m for m in found if m.startswith(f"device {dev}:")):
                self._problem(f"chain:{dev}:{i}", dev, message)
        return found

    def problems(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT message FROM problems ORDER BY key")]

    # --- reading ----------------------------------------------------------------------

    def record_type(self, record_id: str) -> str | None:
        row = self.db.execute(
            "SELECT record_type FROM records WHERE record_id = ?", (record_id,)
        ).fetchone()
        return str(row[0]) if row else None

    def heads(self, record_id: str, field_tag: str) -> list[HeadCell]:
        """The register's heads, winner first (the merge's order)."""
        rows = self.db.execute(
            "SELECT record_id, record_type, field, value, hlc, device_id, cell_id FROM cells"
            " WHERE record_id = ? AND field_tag = ? AND head = 1",
            (record_id, field_tag),
        )
        return _ordered([_head(r) for r in rows])

    def records(self) -> list[tuple[str, str]]:
        return [
            (str(r[0]), str(r[1]))
            for r in self.db.execute(
                "SELECT record_id, record_type FROM records ORDER BY first_hlc, record_id"
            )
        ]

    def all_heads(self) -> dict[str, dict[str, list[HeadCell]]]:
        """record id -> field -> heads, winner first."""
        out: dict[str, dict[str, list[HeadCell]]] = defaultdict(lambda: defaultdict(list))
        for r in self.db.execute(
            "SELECT record_id, record_type, field, value, hlc, device_id, cell_id FROM cells"
            " WHERE head = 1"
        ):
            h = _head(r)
            out[h.record_id][h.field].append(h)
        for fields in out.values():
            for name in fields:
                fields[name] = _ordered(fields[name])
        return out

    def history(self, record_id: str) -> list[dict[str, Any]]:
        return [
            {
                "field": r[0],
                "value": json.loads(r[1]),
                "device_id": r[2],
                "hlc": r[3],
                "cell_id": r[4],
                "head": bool(r[5]),
                "supersedes": json.loads(r[6]),
            }
            for r in self.db.execute(
                "SELECT field, value, device_id, hlc, cell_id, head, supersedes FROM cells"
                " WHERE record_id = ? ORDER BY hlc, device_id, cell_id",
                (record_id,),
            )
        ]

    def last_seen(self) -> dict[str, int]:
        """device id -> the newest HLC among its cells held here."""
        rows = self.db.execute("SELECT device_id, max(hlc) FROM cells GROUP BY device_id")
        return {str(dev): int(stamp) for dev, stamp in rows}

    def counts(self) -> dict[str, int]:
        one = self.db.execute
        return {
            "records": int(one("SELECT count(*) FROM records").fetchone()[0]),
            "bundles": int(one("SELECT count(*) FROM bundles").fetchone()[0]),
            "cells": int(one("SELECT count(*) FROM cells").fetchone()[0]),
        }


def _hash_or_blank(bundle: Bundle) -> str:
    try:
        return crypto.bundle_hash(bundle)
    except (TypeError, ValueError):
        return ""


def open_replica(prof: Profile) -> Replica | None:
    """The replica of an approved keyholder; None for volunteers and pending coordinators."""
    me = prof.me()
    if not me.is_keyholder or me.status != "active" or not prof.state.get("replica_key"):
        return None
    key = b64d(prof.state["replica_key"], length=32)
    return Replica(prof.home / REPLICA_FILE, key, prof.workspace_id)


def _meta_of(row: Any, keyholder: Callable[[str], bool]) -> CellMeta:
    return CellMeta(
        row[1], row[2], row[0], row[3], row[4], tuple(json.loads(row[5])), row[6], keyholder(row[4])
    )


def _head(r: Any) -> HeadCell:
    return HeadCell(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5], r[6])


def _ordered(heads: list[HeadCell]) -> list[HeadCell]:
    return sorted(heads, key=lambda h: (h.hlc, h.device_id, h.cell_id), reverse=True)
