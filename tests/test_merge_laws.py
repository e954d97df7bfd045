"""The merge is a join-semilattice: order, duplication and batching never change the result.

Histories are generated: three or four volunteers and a coordinator write, edit
their own earlier cells, tombstone records (a cell on the reserved `_deleted`
register, nothing special to the merge), name cells of another register in
`supersedes` (which must be ignored), name another volunteer's cell of the same
register (which must be ignored too: a volunteer replaces only its own writes),
and the coordinator resolves conflicts by superseding every current head. The
merged state is compared whole with a reference computed from the definition:
heads are the cells that no naming in their register reaches (a naming reaches a
cell of its own device, or any cell when its author is a keyholder), sorted
winner first by (hlc, device_id, cell_id).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
from collections import defaultdict
from collections.abc import Iterable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import MergeConflictError
from protocol.merge import (
    EMPTY,
    MAX_HEADS,
    CellMeta,
    Namer,
    Register,
    RegisterKey,
    State,
    View,
    heads_of,
    merge,
)
from protocol.merge import (
    fold as fold_view,
)

RECORDS = ("record-a", "record-b")
FIELDS = ("tag-date", "tag-place", "tag-attendance", "tag-deleted")  # tag-deleted: `_deleted`
REGISTERS = [(r, f) for r in RECORDS for f in FIELDS]
COORDINATOR = "device-coordinator"
ACTIONS = ("write", "write", "edit", "edit", "resolve", "cross", "foreign", "tombstone")
SETTINGS = settings(deadline=None, max_examples=40)


def cell_id(n: int) -> str:
    # Hash-like ids, so that id order (the last tie-break) is unrelated to history order.
    return hashlib.sha256(b"cell %d" % n).hexdigest()[:22]


def reference(cells: Iterable[CellMeta]) -> dict[RegisterKey, Register]:
    """The merged state straight from the definition, ignoring order and duplicates."""
    by_key: dict[RegisterKey, dict[str, CellMeta]] = defaultdict(dict)
    for c in cells:
        by_key[c.key][c.cell_id] = c
    out = {}
    for key, cs in by_key.items():
        named: dict[str, set[Namer]] = defaultdict(set)
        for c in cs.values():
            for s in c.supersedes:
                named[s].add(Namer(c.device_id, c.keyholder))
        heads = sorted(
            (
                c
                for c in cs.values()
                if not any(
                    n.keyholder or n.device_id == c.device_id for n in named.get(c.cell_id, ())
                )
            ),
            key=CellMeta.order,
            reverse=True,
        )
        out[key] = Register(
            cells=cs,
            named={cid: tuple(sorted(ns)) for cid, ns in named.items()},
            heads=tuple(heads),
        )
    return out


@st.composite
def histories(draw: st.DrawFn) -> list[CellMeta]:
    n_devices = draw(st.integers(3, 4))
    devices = [f"device-{i}" for i in range(n_devices)]
    steps = draw(
        st.lists(
            st.tuples(
                st.integers(0, n_devices - 1),
                st.integers(0, len(REGISTERS) - 1),
                st.sampled_from(ACTIONS),
                st.integers(0, 2),  # clock advance; 0 makes equal HLCs across devices
                st.integers(0, 2**16),  # picks which earlier cells an edit names
            ),
            min_size=50,
            max_size=80,
        )
    )
    cells: list[CellMeta] = []
    now = 1_000_000
    for n, (dev, reg, action, advance, pick) in enumerate(steps):
        device = devices[n] if n < n_devices else devices[dev]  # every device writes
        now += advance
        key = REGISTERS[reg]
        supersedes: tuple[str, ...] = ()
        if action == "tombstone":
            key = (key[0], "tag-deleted")
        if action in ("edit", "tombstone"):
            own = [c.cell_id for c in cells if c.key == key and c.device_id == device]
            if own:
                chosen = {own[pick % len(own)], own[(pick // 7) % len(own)]}
                supersedes = tuple(sorted(chosen))
        elif action == "resolve" and n >= n_devices:  # the first steps: one per device
            device = COORDINATOR
            supersedes = tuple(h.cell_id for h in reference(cells).get(key, EMPTY).heads)
        elif action == "cross":
            others = [c.cell_id for c in cells if c.key != key]
            if others:
                supersedes = (others[pick % len(others)],)
        elif action == "foreign":
            # A volunteer names other devices' cells of this register: no effect.
            foreign = [c.cell_id for c in cells if c.key == key and c.device_id != device]
            if foreign:
                supersedes = (foreign[pick % len(foreign)],)
        cells.append(
            CellMeta(
                record_id=key[0],
                field_tag=key[1],
                cell_id=cell_id(n),
                hlc=now,
                device_id=device,
                supersedes=supersedes,
                digest=f"digest-{n}",
                keyholder=device == COORDINATOR,
            )
        )
    return cells


def fold(
    batches: Iterable[Sequence[CellMeta]], state: State | None = None
) -> tuple[State, list[CellMeta]]:
    state = {} if state is None else state
    accepted: list[CellMeta] = []
    for batch in batches:
        state, new = merge(state, batch)
        accepted.extend(new)
    return state, accepted


def split(seq: Sequence[CellMeta], cuts: Iterable[int]) -> list[Sequence[CellMeta]]:
    points = sorted({0, len(seq), *(c % (len(seq) + 1) for c in cuts)})
    return [seq[a:b] for a, b in itertools.pairwise(points)]


@given(histories())
@SETTINGS
def test_one_batch_in_history_order_is_the_reference(cells: list[CellMeta]) -> None:
    assert len(cells) >= 50 and len({c.device_id for c in cells} - {COORDINATOR}) >= 3
    state, accepted = merge({}, cells)
    assert state == reference(cells)
    assert accepted == cells


@given(histories(), st.data())
@SETTINGS
def test_order_duplication_and_batching_do_not_matter(
    cells: list[CellMeta], data: st.DataObject
) -> None:
    dups = data.draw(st.lists(st.sampled_from(cells), max_size=30))
    arrival = data.draw(st.permutations(cells + dups))
    cuts = data.draw(st.lists(st.integers(0, len(arrival)), max_size=8))
    state, accepted = fold(split(arrival, cuts))
    assert state == reference(cells)
    # Each cell is accepted once, the first time it arrives; duplicates are no-ops.
    assert sorted(c.cell_id for c in accepted) == sorted(c.cell_id for c in cells)


@given(histories(), st.data())
@SETTINGS
def test_two_replicas_fed_differently_agree(cells: list[CellMeta], data: st.DataObject) -> None:
    one = data.draw(st.permutations(cells))
    two = data.draw(st.permutations(cells))
    left, _ = fold(split(one, data.draw(st.lists(st.integers(0, len(cells)), max_size=5))))
    right, _ = fold([[c] for c in two])
    assert left == right


@given(histories())
@SETTINGS
def test_a_merge_is_idempotent_and_leaves_its_input_alone(cells: list[CellMeta]) -> None:
    half = len(cells) // 2
    state, _ = merge({}, cells[:half])
    before = copy.deepcopy(state)
    after, accepted = merge(state, cells)
    assert state == before
    assert accepted == cells[half:]
    again, nothing = merge(after, reversed(cells))
    assert (again, nothing) == (after, [])


@given(histories())
@SETTINGS
def test_no_accepted_cell_is_lost(cells: list[CellMeta]) -> None:
    state, _ = merge({}, cells)
    for c in cells:
        reg = state[c.key]
        assert reg.cells[c.cell_id] == c
        # A winner, an open conflict, or history that a cell of its own register replaced.
        assert (c in reg.heads) != (c.cell_id in reg.superseded)
    for key, reg in state.items():
        assert reg.winner == max(reg.heads, key=CellMeta.order)
        assert reg.in_conflict == (len(reg.heads) > 1)
        assert heads_of(state, key) == reg.heads


@given(histories(), st.data())
@SETTINGS
def test_a_write_superseding_every_head_closes_the_conflict(
    cells: list[CellMeta], data: st.DataObject
) -> None:
    state, _ = merge({}, cells)
    key = data.draw(st.sampled_from(sorted(state)))
    resolution = CellMeta(
        record_id=key[0],
        field_tag=key[1],
        cell_id="resolution",
        hlc=0,  # even an old clock resolves: supersession, not time, decides
        device_id=COORDINATOR,
        supersedes=tuple(h.cell_id for h in state[key].heads),
        keyholder=True,
    )
    for arrival in ([*cells, resolution], [resolution, *cells]):
        resolved, _ = merge({}, arrival)
        assert resolved[key].heads == (resolution,)
        assert not resolved[key].in_conflict
        assert {k: r for k, r in resolved.items() if k != key} == {
            k: r for k, r in state.items() if k != key
        }


@given(histories(), st.data())
@SETTINGS
def test_one_cell_id_with_two_contents_is_refused(
    cells: list[CellMeta], data: st.DataObject
) -> None:
    victim = data.draw(st.sampled_from(cells))
    field = data.draw(st.sampled_from(["hlc", "device_id", "supersedes", "digest"]))
    changes = {
        "hlc": {"hlc": victim.hlc + 1},
        "device_id": {"device_id": "device-impostor"},
        "supersedes": {"supersedes": (*victim.supersedes, "another")},
        "digest": {"digest": "other content"},
    }[field]
    forged = dataclasses.replace(victim, **changes)
    state, _ = merge({}, cells)
    with pytest.raises(MergeConflictError) as info:
        merge(state, [forged])
    assert info.value.code == "cell_id_reused"
    with pytest.raises(MergeConflictError):
        merge({}, [*cells, forged])


def meta(
    cid: str,
    key: RegisterKey,
    hlc: int,
    device: str = "device-0",
    sup: tuple[str, ...] = (),
    keyholder: bool = False,
) -> CellMeta:
    return CellMeta(key[0], key[1], cid, hlc, device, sup, digest="d-" + cid, keyholder=keyholder)


@pytest.mark.parametrize("order", ["target first", "naming cell first"])
def test_supersession_across_registers_is_ignored(order: str) -> None:
    date, place = ("record-a", "tag-date"), ("record-a", "tag-place")
    target = meta("target", date, 10)
    intruder = meta("intruder", place, 20, sup=("target",))
    arrival = [target, intruder] if order == "target first" else [intruder, target]
    state, _ = fold([[c] for c in arrival])
    assert state[date].heads == (target,)
    assert state[place].heads == (intruder,)
    assert state == reference([target, intruder])


def test_winner_order_is_hlc_then_device_then_cell_id() -> None:
    key = ("record-a", "tag-date")
    cells = [
        meta("c-1", key, 5, "device-b"),
        meta("c-2", key, 7, "device-a"),
        meta("c-3", key, 7, "device-c"),
        meta("c-4", key, 7, "device-c"),
    ]
    for arrival in (cells, cells[::-1]):
        state, _ = merge({}, arrival)
        assert state[key].heads == (cells[3], cells[2], cells[1], cells[0])


def test_an_edit_superseding_a_cell_not_yet_seen_hides_it_on_arrival() -> None:
    key = ("record-a", "tag-place")
    old, edit = meta("old", key, 1), meta("edit", key, 2, sup=("old",))
    state, _ = merge({}, [edit])
    state, accepted = merge(state, [old])
    assert accepted == [old]
    assert state[key] == Register(
        cells={"edit": edit, "old": old},
        named={"old": (Namer("device-0", False),)},
        heads=(edit,),
    )


@pytest.mark.parametrize("order", ["target first", "naming cell first"])
@pytest.mark.parametrize("keyholder", [False, True])
def test_only_a_keyholder_supersedes_another_devices_cell(order: str, keyholder: bool) -> None:
    key = ("record-a", "tag-place")
    target = meta("target", key, 10, device="device-a")
    namer = meta("namer", key, 20, device="device-b", sup=("target",), keyholder=keyholder)
    arrival = [target, namer] if order == "target first" else [namer, target]
    state, _ = fold([[c] for c in arrival])
    assert state[key].heads == ((namer,) if keyholder else (namer, target))
    assert state == reference([target, namer])


def test_a_register_holds_at_most_max_heads_open_values_and_a_refusal_changes_nothing() -> None:
    key = ("record-a", "tag-place")
    view = View()
    writers = [meta(f"c{i:02d}", key, i, device=f"device-{i:02d}") for i in range(MAX_HEADS)]
    fold_view(view, writers)
    assert len(view.heads[key]) == MAX_HEADS
    before = (dict(view.heads), dict(view.known), dict(view.named))
    one_more = meta("c-extra", key, 99, device="device-extra")
    with pytest.raises(MergeConflictError) as info:
        fold_view(view, [one_more])
    assert info.value.code == "too_many_heads"
    assert (view.heads, view.known, view.named) == before
    # A keyholder's write naming every head closes them all, whatever their number.
    resolution = meta(
        "resolution", key, 1, device="device-coord", sup=tuple(c.cell_id for c in writers),
        keyholder=True,
    )  # fmt: skip
    delta = fold_view(view, [resolution])
    assert delta.heads[key] == (resolution,)
    assert sorted(cid for _, cid in delta.unheaded) == sorted(c.cell_id for c in writers)


def test_a_fold_reads_only_the_view_its_cells_name() -> None:
    """The cost of a cell does not grow with its register's history: `fold` asks the
    view for the register's heads (at most MAX_HEADS) and the cell's own ids, nothing
    else (counted, not timed)."""

    class Counting(dict):  # type: ignore[type-arg]
        reads = 0
        items_seen = 0

        def get(self, k, default=None):  # type: ignore[no-untyped-def]
            Counting.reads += 1
            found = super().get(k, default)
            Counting.items_seen += len(found) if isinstance(found, list) else 1
            return found

    key = ("record-a", "tag-place")
    work = {}
    for size in (10, 10_000):
        view = View()
        # A long history: each write of one device replaces the one before.
        history = [meta(f"h{i}", key, i, sup=(f"h{i - 1}",) if i else ()) for i in range(size)]
        for i in range(0, size, 500):
            fold_view(view, history[i : i + 500])
        view.known, view.named, view.heads = (
            Counting(view.known),
            Counting(view.named),
            Counting(view.heads),
        )
        Counting.reads = Counting.items_seen = 0
        last = f"h{size - 1}"
        fold_view(view, [meta("new", key, size + 1, sup=(last, "never-seen"))])
        work[size] = (Counting.reads, Counting.items_seen)
        assert [h.cell_id for h in view.heads[key]] == ["new"]
    assert work[10] == work[10_000]
    assert work[10][0] <= 6
