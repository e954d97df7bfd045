"""The merge of one page of opened bundles into the replica, through indexes only.

The pure core's `fold` judges cells against a `View`: the current heads of the
registers they touch, the stored cells carrying their ids, and the stored namings
of those ids. `PageMerge.load` reads exactly that (the partial index on heads, the
cells' primary key, the namings' primary key), so a new cell costs the same in a
replica of a hundred records and of a million, whatever its register's history.
The same rules as the server's (`server/store/bundles.view`), on plaintext.

Cells and namings are stored under their record's arrival number (`records.rid`),
not its random id: a new record's cells append to the end of the table and of its
heads index instead of landing on random pages, and a record's cells sit together
in the order records arrived (see store.py). `load` reads the numbers of the page's
records once; `write` gives each new record the next number.

Bundles are folded one by one against the view of the whole page, so a bundle the
fold refuses (`too_many_heads`, `cell_id_reused`) is left out alone; `write` then
stores what was accepted and sets the `head` and `winner` flags of every register
that changed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from protocol.merge import (
    MAX_HEADS,
    CellKey,
    CellMeta,
    Namer,
    RegisterKey,
    View,
    fold,
    winner_first,
)

from .opening import Opened

_TRIPLES = 300  # (record, field, id) triples per statement: 900 parameters


def _want(n: int, width: int) -> str:
    cols = "r, f, c" if width == 3 else "r, f"
    row = "(" + ",".join("?" * width) + ")"
    return f"WITH want({cols}) AS (VALUES " + ",".join([row] * n) + ")"


def _meta(record_id: str, row: Sequence[Any], keyholder: Callable[[str], bool]) -> CellMeta:
    _, tag, cid, hlc, dev, sup, bundle_id = row[:7]
    return CellMeta(
        record_id, tag, cid, hlc, dev, tuple(json.loads(sup)) if sup != "[]" else (), bundle_id,
        keyholder(dev),
    )  # fmt: skip


_COLS = "c.rid, c.field_tag, c.cell_id, c.hlc, c.device_id, c.supersedes, c.bundle_id"


def record_numbers(db: Any, record_ids: Iterable[str]) -> dict[str, int]:
    """record id -> its arrival number, for the records of these ids held already."""
    ids = sorted(set(record_ids))
    out: dict[str, int] = {}
    for i in range(0, len(ids), 500):
        part = ids[i : i + 500]
        marks = ",".join("?" * len(part))
        out.update(
            db.execute(
                f"SELECT record_id, rid FROM records WHERE record_id IN ({marks})",  # noqa: S608
                part,
            ).fetchall()
        )
    return out


class PageMerge:
    """One page's merge: `load` the view, `fold` each bundle's cells, `write` the result."""

    def __init__(self, db: Any, keyholder: Callable[[str], bool]) -> None:
        self.db = db
        self.keyholder = keyholder
        self.view = View()
        self.rids: dict[str, int] = {}  # record id -> arrival number (new ones: at `write`)
        self.fresh: dict[str, str] = {}  # record id -> type, of the records this page created
        self.stored: dict[RegisterKey, tuple[str, ...]] = {}  # heads at load, winner first
        self.accepted: list[Opened] = []
        self.namings: list[tuple[CellKey, Namer]] = []
        self.changed: set[RegisterKey] = set()

    def load(self, cells: Iterable[Opened]) -> None:
        keys: set[RegisterKey] = set()
        ids: set[CellKey] = set()
        for c in cells:
            keys.add((c.record_id, c.field_tag))
            ids.add((c.record_id, c.field_tag, c.cell_id))
        db, view, keyholder = self.db, self.view, self.keyholder
        self.rids = rids = record_numbers(db, (k[0] for k in keys))
        ids_of = {n: record_id for record_id, n in rids.items()}
        # A record not held yet has no stored cells, heads or namings to read.
        pairs = sorted((rids[r], f) for r, f in keys if r in rids)
        for i in range(0, len(pairs), _TRIPLES):
            pair_part = pairs[i : i + _TRIPLES]
            sql = (
                f"{_want(len(pair_part), 2)} SELECT {_COLS} FROM want CROSS JOIN cells c"  # noqa: S608
                " ON c.rid = want.r AND c.field_tag = want.f AND c.head = 1"
            )
            for row in db.execute(sql, [x for p in pair_part for x in p]):
                record_id = ids_of[row[0]]
                meta = _meta(record_id, row, keyholder)
                view.heads.setdefault((record_id, row[1]), []).append(meta)
        for key, heads in view.heads.items():
            view.heads[key] = list(winner_first(heads))
            self.stored[key] = tuple(h.cell_id for h in view.heads[key])
        triples = sorted((rids[r], f, c) for r, f, c in ids if r in rids)
        for i in range(0, len(triples), _TRIPLES):
            part = triples[i : i + _TRIPLES]
            params = [x for t in part for x in t]
            known = (
                f"{_want(len(part), 3)} SELECT {_COLS} FROM want CROSS JOIN cells c"  # noqa: S608
                " ON c.rid = want.r AND c.field_tag = want.f AND c.cell_id = want.c"
            )
            for row in db.execute(known, params):
                record_id = ids_of[row[0]]
                view.known[(record_id, row[1], row[2])] = _meta(record_id, row, keyholder)
            named = (
                f"{_want(len(part), 3)} SELECT n.rid, n.field_tag, n.cell_id,"  # noqa: S608
                " n.by_device FROM want CROSS JOIN namings n ON n.rid = want.r"
                " AND n.field_tag = want.f AND n.cell_id = want.c"
            )
            for n, tag, cid, dev in db.execute(named, params):
                view.named.setdefault((ids_of[n], tag, cid), []).append(Namer(dev, keyholder(dev)))

    def fold(self, cells: Sequence[Opened], max_heads: int | None = MAX_HEADS) -> int:
        """Fold one bundle's cells; all or none (`MergeConflictError` leaves the view as it
        was). Returns how many were new."""
        keyholder = self.keyholder
        metas = [
            CellMeta(c.record_id, c.field_tag, c.cell_id, c.hlc, c.device_id, c.supersedes,
                     c.bundle_id, keyholder(c.device_id))
            for c in cells
        ]  # fmt: skip
        delta = fold(self.view, metas, max_heads)
        by_key = {(c.record_id, c.field_tag, c.cell_id): c for c in cells}
        self.accepted.extend(by_key[(m.record_id, m.field_tag, m.cell_id)] for m in delta.accepted)
        self.namings.extend(delta.namings)
        self.changed.update(delta.heads)
        return len(delta.accepted)

    def write(self) -> None:
        """Store the accepted cells and namings, a new record's `records` row first (with
        the next arrival number); set the flags of every changed register."""
        self._number_records()
        rids = self.rids
        flags: dict[CellKey, tuple[int, int]] = {}  # (head, winner) of cells whose flags are set
        for key in self.changed:
            final = [h.cell_id for h in self.view.heads.get(key, ())]
            for cid in self.stored.get(key, ()):
                if cid not in final:
                    flags[(*key, cid)] = (0, 0)
            for n, cid in enumerate(final):
                flags[(*key, cid)] = (1, 1 if n == 0 else 0)
        rows = []
        for c in self.accepted:
            head, winner = flags.pop((c.record_id, c.field_tag, c.cell_id), (0, 0))
            rows.append((
                rids[c.record_id], c.field_tag, c.cell_id, c.record_type, c.field, c.value, c.hlc,
                c.device_id, c.bundle_id,
                json.dumps(list(c.supersedes)) if c.supersedes else "[]",
                c.sort_key, c.problem, head, winner,
            ))  # fmt: skip
        self.db.executemany(
            "INSERT INTO cells VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
        )
        # Stored cells whose flags changed (the rest of `flags`: none of them is new).
        stored_was = {
            (*key, cid): (1, 1 if n == 0 else 0)
            for key, ids in self.stored.items()
            for n, cid in enumerate(ids)
        }
        self.db.executemany(
            "UPDATE cells SET head = ?, winner = ? WHERE rid = ? AND field_tag = ? AND cell_id = ?",
            [
                (*fl, rids[r], tag, cid)
                for (r, tag, cid), fl in flags.items()
                if stored_was.get((r, tag, cid)) != fl
            ],
        )
        self.db.executemany(
            "INSERT OR IGNORE INTO namings VALUES (?, ?, ?, ?)",
            [(rids[r], tag, cid, namer.device_id) for (r, tag, cid), namer in self.namings],
        )

    def _number_records(self) -> None:
        """A `records` row for every record of the accepted cells: a new one gets the next
        arrival number, in the order its cells arrived; its type is that of its earliest
        cell (cells of another type under its id are a device's error, shown as such)."""
        firsts: dict[str, tuple[str, int]] = {}
        for c in self.accepted:
            first = firsts.get(c.record_id)
            if first is None or c.hlc < first[1]:
                firsts[c.record_id] = (c.record_type, c.hlc)
        db, rids = self.db, self.rids
        new = [r for r in firsts if r not in rids]
        self.fresh = {r: firsts[r][0] for r in new}
        if new:
            top = int(db.execute("SELECT coalesce(max(rid), 0) FROM records").fetchone()[0])
            rids.update((r, top + 1 + n) for n, r in enumerate(new))
            db.executemany(
                "INSERT INTO records (rid, record_id, record_type, first_hlc) VALUES (?, ?, ?, ?)",
                [(rids[r], r, *firsts[r]) for r in new],
            )
        db.executemany(
            "UPDATE records SET record_type = ?, first_hlc = ? WHERE rid = ? AND first_hlc > ?",
            [(t, hlc, rids[r], hlc) for r, (t, hlc) in firsts.items() if r not in self.fresh],
        )

    def fresh_heads(self) -> dict[int, tuple[str, str, list[tuple[Any, ...]]]]:
        """For each record this page created: (record id, type, its heads as the replica
        stores them: field tag, type, field, value, hlc, winner, problem). Every cell of
        such a record was accepted here, so they are read from memory, not back from disk."""
        if not self.fresh:
            return {}
        by_id = {(c.record_id, c.field_tag, c.cell_id): c for c in self.accepted}
        out: dict[int, tuple[str, str, list[tuple[Any, ...]]]] = {
            self.rids[r]: (r, t, []) for r, t in self.fresh.items()
        }
        for key in self.changed:
            record_id, tag = key
            if record_id not in self.fresh:
                continue
            heads = out[self.rids[record_id]][2]
            for n, meta in enumerate(self.view.heads.get(key, ())):
                c = by_id[(record_id, tag, meta.cell_id)]
                heads.append((tag, c.record_type, c.field, c.value, c.hlc, int(n == 0), c.problem))
        return out
