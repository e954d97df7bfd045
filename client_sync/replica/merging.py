"""The merge of one page of opened bundles into the replica, through indexes only.

The pure core's `fold` judges cells against a `View`: the current heads of the
registers they touch, the stored cells carrying their ids, and the stored namings
of those ids. `PageMerge.load` reads exactly that (the partial index on heads, the
cells' primary key, the namings' primary key), so a new cell costs the same in a
replica of a hundred records and of a million, whatever its register's history.
The same rules as the server's (`server/store/bundles.view`), on plaintext.

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


def _meta(row: Sequence[Any], keyholder: Callable[[str], bool]) -> CellMeta:
    rid, tag, cid, hlc, dev, sup, bundle_id = row[:7]
    return CellMeta(
        rid, tag, cid, hlc, dev, tuple(json.loads(sup)) if sup != "[]" else (), bundle_id,
        keyholder(dev),
    )  # fmt: skip


_COLS = "c.record_id, c.field_tag, c.cell_id, c.hlc, c.device_id, c.supersedes, c.bundle_id"


class PageMerge:
    """One page's merge: `load` the view, `fold` each bundle's cells, `write` the result."""

    def __init__(self, db: Any, keyholder: Callable[[str], bool]) -> None:
        self.db = db
        self.keyholder = keyholder
        self.view = View()
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
        db, view = self.db, self.view
        pairs = sorted(keys)
        for i in range(0, len(pairs), _TRIPLES):
            pair_part = pairs[i : i + _TRIPLES]
            sql = (
                f"{_want(len(pair_part), 2)} SELECT {_COLS} FROM want CROSS JOIN cells c"  # noqa: S608
                " ON c.record_id = want.r AND c.field_tag = want.f AND c.head = 1"
            )
            for row in db.execute(sql, [x for p in pair_part for x in p]):
                view.heads.setdefault((row[0], row[1]), []).append(_meta(row, self.keyholder))
        for key, heads in view.heads.items():
            view.heads[key] = list(winner_first(heads))
            self.stored[key] = tuple(h.cell_id for h in view.heads[key])
        triples = sorted(ids)
        for i in range(0, len(triples), _TRIPLES):
            part = triples[i : i + _TRIPLES]
            params = [x for t in part for x in t]
            known = (
                f"{_want(len(part), 3)} SELECT {_COLS} FROM want CROSS JOIN cells c"  # noqa: S608
                " ON c.record_id = want.r AND c.field_tag = want.f AND c.cell_id = want.c"
            )
            for row in db.execute(known, params):
                view.known[(row[0], row[1], row[2])] = _meta(row, self.keyholder)
            named = (
                f"{_want(len(part), 3)} SELECT n.record_id, n.field_tag, n.cell_id,"  # noqa: S608
                " n.by_device FROM want CROSS JOIN namings n ON n.record_id = want.r"
                " AND n.field_tag = want.f AND n.cell_id = want.c"
            )
            for rid, tag, cid, dev in db.execute(named, params):
                view.named.setdefault((rid, tag, cid), []).append(Namer(dev, self.keyholder(dev)))

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
        """Store the accepted cells and namings; set the flags of every changed register."""
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
                c.record_id, c.field_tag, c.cell_id, c.record_type, c.field, c.value, c.hlc,
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
            "UPDATE cells SET head = ?, winner = ? WHERE record_id = ? AND field_tag = ?"
            " AND cell_id = ?",
            [(*fl, *ck) for ck, fl in flags.items() if stored_was.get(ck) != fl],
        )
        self.db.executemany(
            "INSERT OR IGNORE INTO namings VALUES (?, ?, ?, ?)",
            [(rid, tag, cid, namer.device_id) for (rid, tag, cid), namer in self.namings],
        )

    def final_heads(self, key: RegisterKey) -> list[CellMeta]:
        return self.view.heads.get(key, [])
