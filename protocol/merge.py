"""The merge the server performs on ciphertext: a multi-value register per (record, field).

Pure: no I/O, no clock, no randomness.

A register holds every cell ever written to one (record_id, field_tag). Its heads
are the cells no known cell of the same register supersedes; its winner is the
head with the greatest (hlc, device_id, cell_id); the other heads are open
conflicts. Because heads are a function of the *set* of cells alone, arrival
order, duplication and batching cannot change the result: the merge is a
join-semilattice (set union), hence commutative, associative and idempotent.

Supersession is scoped to its register: a cell naming a cell id of another
register supersedes nothing, whichever of the two arrives first.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from .errors import MergeConflictError

RegisterKey = tuple[str, str]  # (record_id, field_tag)


@dataclass(frozen=True, slots=True)
class CellMeta:
    """What the merge needs of a cell: its clear fields, never its content.

    `digest` identifies the sealed content (the server uses the bundle id and the
    ciphertext hash); one `cell_id` arriving with two digests is a protocol error.
    """

    record_id: str
    field_tag: str
    cell_id: str
    hlc: int
    device_id: str
    supersedes: tuple[str, ...]
    digest: str = ""

    @property
    def key(self) -> RegisterKey:
        return (self.record_id, self.field_tag)

    def order(self) -> tuple[int, str, str]:
        return (self.hlc, self.device_id, self.cell_id)


class Register(NamedTuple):
    # A NamedTuple rather than a frozen dataclass: a new record makes one register
    # per field, and tuple construction is several times cheaper.
    cells: Mapping[str, CellMeta]
    superseded: frozenset[str]
    # Kept incrementally (a head leaves when a cell supersedes it) so that adding a
    # cell costs O(heads), not O(history); sorted, winner first.
    heads: tuple[CellMeta, ...] = ()

    @property
    def winner(self) -> CellMeta | None:
        heads = self.heads
        return heads[0] if heads else None

    @property
    def in_conflict(self) -> bool:
        return len(self.heads) > 1


_NONE: frozenset[str] = frozenset()
EMPTY = Register(cells={}, superseded=_NONE, heads=())

State = Mapping[RegisterKey, Register]


def _lone(cell: CellMeta) -> Register:
    """The register of a single cell (a head, unless it names itself)."""
    superseded = frozenset(cell.supersedes) if cell.supersedes else _NONE
    heads = () if cell.cell_id in superseded else (cell,)
    return Register({cell.cell_id: cell}, superseded, heads)


class MergedState(Mapping[RegisterKey, Register]):
    """The merged state, a read-only mapping of register key to `Register`.

    Most registers hold one cell (a new record's fields, never edited), so those are
    kept as the bare cell and become a `Register` only when read: building a dict
    and a Register for each of them cost the merge ~85 % of its time. Equality, like
    every other read, is that of the mapping.
    """

    __slots__ = ("_lone", "_many")

    def __init__(
        self,
        lone: dict[RegisterKey, CellMeta] | None = None,
        many: dict[RegisterKey, Register] | None = None,
    ) -> None:
        self._lone = lone if lone is not None else {}
        self._many = many if many is not None else {}

    def __getitem__(self, key: RegisterKey) -> Register:
        reg = self._many.get(key)
        if reg is not None:
            return reg
        return _lone(self._lone[key])

    def __contains__(self, key: object) -> bool:
        return key in self._many or key in self._lone

    def __iter__(self) -> Iterator[RegisterKey]:
        yield from self._many
        yield from self._lone

    def __len__(self) -> int:
        return len(self._many) + len(self._lone)

    def __repr__(self) -> str:
        return f"MergedState({dict(self.items())!r})"


def merge(state: State, cells: Iterable[CellMeta]) -> tuple[MergedState, list[CellMeta]]:
    """Fold `cells` into `state`. Returns the new state and the cells it newly accepted.

    The changes are exactly the accepted cells, in the order given: the server
    numbers them, and any replica that folds them in gets the same state. A cell
    already present with the same content is a no-op (a retry); with another
    content it raises `MergeConflictError` and the caller must discard the batch.
    The input state is not modified.
    """
    if isinstance(state, MergedState):
        lone, many = dict(state._lone), dict(state._many)
    else:
        lone, many = {}, dict(state)
    # A register that gets a second cell, or was a full Register already, gets one
    # mutable working copy per batch: (cells, superseded, heads), finished at the end.
    work: dict[RegisterKey, tuple[dict[str, CellMeta], set[str], list[CellMeta]]] = {}
    accepted: list[CellMeta] = []
    accept = accepted.append
    work_get, lone_get, many_get = work.get, lone.get, many.get
    for cell in cells:
        key = (cell.record_id, cell.field_tag)
        w = work_get(key)
        if w is None:
            reg = many_get(key)
            if reg is None:
                prev = lone_get(key)
                if prev is None:
                    lone[key] = cell  # the common case: a register's first cell
                    accept(cell)
                    continue
                del lone[key]
                sup = set(prev.supersedes)
                heads = [] if prev.cell_id in sup else [prev]
                w = work[key] = ({prev.cell_id: prev}, sup, heads)
            else:
                w = work[key] = (dict(reg.cells), set(reg.superseded), list(reg.heads))
        known = w[0].get(cell.cell_id)
        if known is not None:
            if known != cell:
                raise MergeConflictError(
                    "cell_id_reused",
                    f"cell {cell.cell_id} was announced with two different contents",
                )
            continue
        w[0][cell.cell_id] = cell
        superseded = w[1]
        if cell.supersedes:
            superseded.update(cell.supersedes)
            w[2][:] = [h for h in w[2] if h.cell_id not in superseded]
        if cell.cell_id not in superseded:
            w[2].append(cell)
        accept(cell)
    for key, (cells_, superseded_, heads_) in work.items():
        heads_.sort(key=CellMeta.order, reverse=True)
        many[key] = Register(cells_, frozenset(superseded_), tuple(heads_))
    return MergedState(lone, many), accepted


def heads_of(state: State, key: RegisterKey) -> tuple[CellMeta, ...]:
    return state.get(key, EMPTY).heads
