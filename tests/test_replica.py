"""The replica on its own: the merge through indexes equals the definition, a command reads
what it touches (counted in SQLite VM steps at two sizes), and the read layer's
markers, filters and sorts work on any script."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from replicakit import COORDINATOR, Steps, cell, merge, record, rid, temp_replica
from test_merge_laws import SETTINGS, histories, reference, split

from client_sync import review, view
from client_sync.replica import Replica, derived
from client_sync.replica.opening import Opened
from protocol.merge import CellMeta


def as_opened(c: CellMeta) -> Opened:
    deleting = c.field_tag == "tag-deleted"
    value: Any = True if deleting else f"value of {c.cell_id}"
    return Opened.of(
        c.record_id, c.field_tag, c.cell_id, c.hlc, c.supersedes, c.device_id, c.digest,
        "picket", "_deleted" if deleting else c.field_tag[4:], value,
    )  # fmt: skip


def stored_heads(replica: Replica) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[tuple[tuple[int, str, str], str, int]]] = defaultdict(list)
    for r, f, c, hlc, dev, winner in replica.db.execute(
        "SELECT r.record_id, c.field_tag, c.cell_id, c.hlc, c.device_id, c.winner"
        " FROM cells c JOIN records r ON r.rid = c.rid WHERE c.head = 1"
    ):
        out[(r, f)].append(((hlc, dev, c), c, winner))
    heads = {}
    for key, hs in out.items():
        hs.sort(reverse=True)
        assert [w for _, _, w in hs] == [1] + [0] * (len(hs) - 1), key  # the winner flag
        heads[key] = [c for _, c, _ in hs]
    return heads


@given(histories(), st.data())
@SETTINGS
def test_the_replica_merges_as_the_definition(cells: list[CellMeta], data: st.DataObject) -> None:
    """Any arrival order, duplicates and page cuts: the replica's heads, winners and open
    conflicts are those of the definition."""
    dups = data.draw(st.lists(st.sampled_from(cells), max_size=20))
    arrival = data.draw(st.permutations(cells + dups))
    cuts = data.draw(st.lists(st.integers(0, len(arrival)), max_size=6))
    expected = {k: [h.cell_id for h in reg.heads] for k, reg in reference(cells).items()}
    with temp_replica() as replica:
        for page in split(arrival, cuts):
            opened = [as_opened(c) for c in page]
            replica.merge_opened(opened, lambda d: d == COORDINATOR, max_heads=None)
        replica.save()
        assert stored_heads(replica) == expected
        open_rows = {
            (r, f): since for r, f, since in replica.db.execute("SELECT * FROM open_conflicts")
        }
        by_id = {c.cell_id: c for c in cells}
        assert open_rows == {
            k: sorted(by_id[h].hlc for h in hs)[1] for k, hs in expected.items() if len(hs) > 1
        }
        assert replica.counts()["cells"] == len(cells)
        # What the pages derived as cells arrived (records new in a page from memory, the
        # others from their heads on disk) is what all of it derived afresh is.
        kept = derived_rows(replica)
        replica.begin()
        derived.refresh(replica.db, [n for (n,) in replica.db.execute("SELECT rid FROM records")])
        replica.save()
        assert derived_rows(replica) == kept


def derived_rows(replica: Replica) -> dict[str, list[tuple[Any, ...]]]:
    return {
        sql: replica.db.execute(sql).fetchall()
        for sql in (
            "SELECT * FROM records ORDER BY rid",
            "SELECT rowid, text FROM search ORDER BY rowid",
            "SELECT * FROM links ORDER BY 1, 2, 3",
            "SELECT * FROM duplicates ORDER BY 1, 2",
            "SELECT * FROM open_conflicts ORDER BY 1, 2",
        )
    }


# --- cost: what a command reads does not grow with the replica --------------------------


def filled(replica: Replica, others: int) -> str:
    """A replica of `others` filler records plus one picket, its detention (in conflict,
    edited, with a likely duplicate): the detention's id."""
    cells: list[Opened] = []
    for n in range(others):
        cells += record(rid(10_000 + n), "picket", 1_000 + n, date=f"2025-{1 + n % 12:02d}-"
                        f"{1 + n % 28:02d}", place=f"Filler square {n}", attendance=n)  # fmt: skip
    picket, det, dup = rid(1), rid(2), rid(3)
    cells += record(picket, "picket", 50_000, date="2026-12-04", place="Gate", attendance=40)
    cells += record(det, "detention", 50_001, picket_id=picket, person_name="Aigul Demokyzy",
                    detained_at="2026-12-04T11:20")  # fmt: skip
    cells += record(dup, "detention", 50_002, "device-b", person_name="Aigul Demokyzi",
                    detained_at="2026-12-04T11:25")  # fmt: skip
    merge(replica, cells)
    first = replica.heads(det, cells[-5].field_tag)  # person_name of det
    edit = cell(
        det, "detention", "person_name", "Aigul Demokyzy", 50_010, supersedes=(first[0].cell_id,)
    )
    rival = cell(det, "detention", "person_name", "Aigul Demo-kyzy", 50_011, "device-b")
    merge(replica, [edit, rival])
    return det


def steps_of(fn: Any, sizes: tuple[int, int] = (60, 1500)) -> list[int]:
    """VM steps of `fn(replica, target)` in a replica of each size. An index range ends
    on the first key past it, so a bigger neighbourhood can add a step or two: the
    bound below is that, not a share of the size (a scan would add thousands)."""
    out = []
    for size in sizes:
        with temp_replica() as replica:
            target = filled(replica, size)
            with Steps(replica) as steps:
                fn(replica, target)
            out.append(steps.n)
    return out


def test_show_reads_the_same_at_two_sizes() -> None:
    def show(replica: Replica, target: str) -> None:
        detail = review.record_detail(replica, target)
        assert detail is not None and detail.record.duplicates == [rid(3)]
        assert detail.links_out == [{"field": "picket_id", "id": rid(1), "type": "picket"}]
        assert len(detail.history) == 5

    small, big = steps_of(show)
    assert big <= small + 2, (small, big)


def test_conflicts_and_a_sorted_page_read_the_same_at_two_sizes() -> None:
    def queue(replica: Replica, target: str) -> None:
        assert [(c.record_id, c.field) for c in review.conflict_queue(replica)] == [
            (target, "person_name")
        ]

    def page(replica: Replica, target: str) -> None:
        query = view.Query("detention", sort="person_name", limit=2, count=False)
        assert [r.id for r in view.records_page(replica, query).records] == [target, rid(3)]

    for fn in (queue, page):
        small, big = steps_of(fn)
        assert big <= small + 2, (fn.__name__, small, big)
