"""The merge the server performs on ciphertext: a multi-value register per (record, field).

Pure: no I/O, no clock, no randomness.

A register holds every cell ever written to one (record_id, field_tag). A cell
*names* the cells its `supersedes` lists; a naming **takes effect** when it stays
inside the register and either the naming cell's author is a keyholder (role
coordinator or admin) or both cells are of the same device: a volunteer replaces
only its own writes, so two witnesses who disagree stay a conflict, whatever a
hostile device names. The heads of a register are its cells that no effective
naming reaches; the winner is the head with the greatest (hlc, device_id,
cell_id); the other heads are open conflicts.

Heads are a function of the *set* of cells alone (whether a naming takes effect
depends only on the two cells), so arrival order, duplication and batching cannot
change the result: the merge is a join-semilattice (set union), hence commutative,
associative and idempotent.

**Cost follows the batch, never the register.** `fold` touches, per cell, the
register's current heads (at most `MAX_HEADS`), the stored cells that carry the
batch's ids, and the stored namings of those ids: a `View` the caller loads with
index lookups (`keys_and_ids` says which). Nothing else of a register is read, so a
register of a million cells costs what a register of one does. A batch that would
leave a register with more than `MAX_HEADS` open values is refused
(`too_many_heads`): one write may name at most that many cells, and a conflict must
stay closable by one write.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from .errors import MergeConflictError

RegisterKey = tuple[str, str]  # (record_id, field_tag)
CellKey = tuple[str, str, str]  # (record_id, field_tag, cell_id)

# At most this many heads per register: the most one cell may supersede
# (schemas.wire.MAX_SUPERSEDES), so a coordinator can always close a conflict.
MAX_HEADS = 32


@dataclass(frozen=True, slots=True)
class CellMeta:
    """What the merge needs of a cell: its clear fields and its author, never its content.

    `keyholder` says whether the author's role (fixed by its enroll event) is
    coordinator or admin, whose namings reach other devices' cells. `digest`
    identifies the sealed content (the replica uses the bundle id); one `cell_id`
    arriving with two different metas is a protocol error.
    """

    record_id: str
    field_tag: str
    cell_id: str
    hlc: int
    device_id: str
    supersedes: tuple[str, ...]
    digest: str = ""
    keyholder: bool = False

    @property
    def key(self) -> RegisterKey:
        return (self.record_id, self.field_tag)

    def order(self) -> tuple[int, str, str]:
        return (self.hlc, self.device_id, self.cell_id)


class Namer(NamedTuple):
    """Who named a cell in its `supersedes`: the author and whether it is a keyholder."""

    device_id: str
    keyholder: bool


def takes_effect(namer: Namer, target_device: str) -> bool:
    """Does a naming by `namer` supersede a cell written by `target_device`?"""
    return namer.keyholder or namer.device_id == target_device


def winner_first(heads: Iterable[CellMeta]) -> tuple[CellMeta, ...]:
    """Heads in the merge's order: the winner, then the other open values, by
    (hlc, device_id, cell_id) descending."""
    return tuple(sorted(heads, key=CellMeta.order, reverse=True))


@dataclass
class View:
    """The part of the stored state one batch touches; the caller loads it.

    - `heads`: the current heads of every register the batch touches (an absent
      key is an empty register);
    - `known`: stored cells whose (record, field, id) a cell of the batch carries;
    - `named`: stored namings of the batch's cell ids, per (record, field, id).

    `fold` updates the view with what it accepted, so several bundles judged one
    after the other see each other, as they would once stored.
    """

    heads: dict[RegisterKey, list[CellMeta]] = field(default_factory=dict)
    known: dict[CellKey, CellMeta] = field(default_factory=dict)
    named: dict[CellKey, list[Namer]] = field(default_factory=dict)


@dataclass
class Delta:
    """What a fold changed, for the caller to store.

    - `accepted`: the new cells, in the order given;
    - `heads`: the final heads of every register that changed, winner first;
    - `new_heads`: ids of accepted cells that are heads at the end;
    - `unheaded`: stored cells (from the view) that stopped being heads;
    - `namings`: one row per (cell named, namer) to remember, so that a cell that
      arrives after the cell naming it is judged without reading its register.
    """

    accepted: list[CellMeta] = field(default_factory=list)
    heads: dict[RegisterKey, tuple[CellMeta, ...]] = field(default_factory=dict)
    new_heads: set[str] = field(default_factory=set)
    unheaded: list[tuple[RegisterKey, str]] = field(default_factory=list)
    namings: list[tuple[CellKey, Namer]] = field(default_factory=list)


def keys_and_ids(cells: Iterable[CellMeta]) -> tuple[set[RegisterKey], set[CellKey]]:
    """What a caller must load into a `View` for `cells`: the registers (for their
    heads) and the (record, field, id) of every cell (for `known` and `named`)."""
    keys: set[RegisterKey] = set()
    ids: set[CellKey] = set()
    for c in cells:
        keys.add((c.record_id, c.field_tag))
        ids.add((c.record_id, c.field_tag, c.cell_id))
    return keys, ids


def fold(view: View, cells: Iterable[CellMeta], max_heads: int | None = MAX_HEADS) -> Delta:
    """Merge `cells` into `view`: all of them, or (on `MergeConflictError`) none.

    A cell already known with the same meta is a no-op (a retry); with another meta
    it is `cell_id_reused`. A register left with more than `max_heads` heads is
    `too_many_heads` (None: no bound, for whole in-memory states). Each cell costs
    O(its namings + the register's heads).
    """
    # Work on copies of what the batch touches, so a refusal leaves `view` as it was.
    heads: dict[RegisterKey, dict[str, CellMeta]] = {}
    known: dict[CellKey, CellMeta] = {}
    named: dict[CellKey, list[Namer]] = {}
    stored_heads: set[str] = set()
    delta = Delta()
    # The common cell (a new value, naming nothing, named by nothing, in a register
    # with no heads yet) takes a few dictionary probes: this runs for every cell pushed.
    view_known, view_named, view_heads = view.known, view.named, view.heads
    accepted = delta.accepted
    for c in cells:
        rid, tag, cid = c.record_id, c.field_tag, c.cell_id
        key = (rid, tag)
        ckey = (rid, tag, cid)
        prev = known.get(ckey) or view_known.get(ckey)
        if prev is not None:
            if prev != c:
                raise MergeConflictError(
                    "cell_id_reused", f"cell {cid} was announced with two different contents"
                )
            continue
        reg = heads.get(key)
        if reg is None:
            current = view_heads.get(key)
            reg = heads[key] = {h.cell_id: h for h in current} if current else {}
            stored_heads.update(reg)
        known[ckey] = c
        accepted.append(c)
        if c.supersedes:
            namer = Namer(c.device_id, c.keyholder)
            for name in c.supersedes:
                target = (rid, tag, name)
                named.setdefault(target, list(view_named.get(target, ()))).append(namer)
                delta.namings.append((target, namer))
                head = reg.get(name)
                if head is not None and takes_effect(namer, head.device_id):
                    del reg[name]
        namers = named.get(ckey)
        if namers is None:
            namers = view_named.get(ckey)
        if not namers or not any(takes_effect(n, c.device_id) for n in namers):
            reg[cid] = c
            if max_heads is not None and len(reg) > max_heads:
                raise MergeConflictError(
                    "too_many_heads",
                    f"a field would hold more than {max_heads} open values; a keyholder"
                    " must resolve it first",
                )
    for key, reg in heads.items():
        before = view_heads.get(key, [])
        if {h.cell_id for h in before} == reg.keys():
            continue
        ordered = winner_first(reg.values()) if len(reg) > 1 else tuple(reg.values())
        delta.heads[key] = ordered
        view.heads[key] = list(ordered)
        for old in before:
            if old.cell_id not in reg:
                delta.unheaded.append((key, old.cell_id))
    accepted_ids = {c.cell_id for c in delta.accepted}
    delta.new_heads = {cid for reg in heads.values() for cid in reg if cid in accepted_ids}
    view.known.update(known)
    for target, namers in named.items():
        view.named[target] = namers
    return delta


# --- an in-memory state, for tests, benchmarks and small tools ----------------------------


class Register(NamedTuple):
    """One register held whole in memory: every cell, who named what, and the heads."""

    cells: Mapping[str, CellMeta]
    named: Mapping[str, tuple[Namer, ...]]
    heads: tuple[CellMeta, ...] = ()

    @property
    def winner(self) -> CellMeta | None:
        return self.heads[0] if self.heads else None

    @property
    def in_conflict(self) -> bool:
        return len(self.heads) > 1

    @property
    def superseded(self) -> frozenset[str]:
        """Ids of the register's cells that an effective naming reaches."""
        return frozenset(
            cid
            for cid, c in self.cells.items()
            if any(takes_effect(n, c.device_id) for n in self.named.get(cid, ()))
        )


EMPTY = Register(cells={}, named={}, heads=())

State = Mapping[RegisterKey, Register]


class MergedState(Mapping[RegisterKey, Register]):
    """A merged state: a read-only mapping of register key to `Register`."""

    __slots__ = ("_regs",)

    def __init__(self, regs: dict[RegisterKey, Register] | None = None) -> None:
        self._regs = regs if regs is not None else {}

    def __getitem__(self, key: RegisterKey) -> Register:
        return self._regs[key]

    def __iter__(self) -> Iterator[RegisterKey]:
        return iter(self._regs)

    def __len__(self) -> int:
        return len(self._regs)

    def __repr__(self) -> str:
        return f"MergedState({self._regs!r})"


def merge(state: State, cells: Iterable[CellMeta]) -> tuple[MergedState, list[CellMeta]]:
    """Fold `cells` into a whole in-memory `state`. Returns the new state and the cells
    it newly accepted, in the order given. The input state is not modified.

    This is `fold` over a `View` built from the whole state: the same rules, for
    tests and tools that hold everything in memory. `max_heads` is not applied here.
    """
    cells = list(cells)
    keys, ids = keys_and_ids(cells)
    view = View()
    for key in keys:
        reg = state.get(key)
        if reg is not None:
            view.heads[key] = list(reg.heads)
    for rid, tag, cid in ids:
        reg = state.get((rid, tag))
        if reg is None:
            continue
        if cid in reg.cells:
            view.known[(rid, tag, cid)] = reg.cells[cid]
        if cid in reg.named:
            view.named[(rid, tag, cid)] = list(reg.named[cid])
    delta = fold(view, cells, max_heads=None)
    regs = dict(state.items())
    by_key: dict[RegisterKey, list[CellMeta]] = {}
    for c in delta.accepted:
        by_key.setdefault(c.key, []).append(c)
    named_by_key: dict[RegisterKey, list[tuple[str, Namer]]] = {}
    for (rid, tag, cid), namer in delta.namings:
        named_by_key.setdefault((rid, tag), []).append((cid, namer))
    for key in set(by_key) | set(named_by_key):
        old = regs.get(key, EMPTY)
        new_cells = dict(old.cells)
        for c in by_key.get(key, ()):
            new_cells[c.cell_id] = c
        new_named = {cid: list(ns) for cid, ns in old.named.items()}
        for cid, namer in named_by_key.get(key, ()):
            new_named.setdefault(cid, []).append(namer)
        heads = delta.heads.get(key, old.heads)
        regs[key] = Register(
            new_cells, {cid: tuple(sorted(set(ns))) for cid, ns in new_named.items()}, heads
        )
    return MergedState(regs), delta.accepted


def heads_of(state: State, key: RegisterKey) -> tuple[CellMeta, ...]:
    return state.get(key, EMPTY).heads
