"""The read layer the command line and the workbench share (client_sync/view.py): markers,
the full-text filter on any script, sorting, links both ways, duplicates kept as
cells arrive, deleted records hidden unless asked for."""

from __future__ import annotations

import itertools
from unittest.mock import patch

from hypothesis import example, given, settings
from hypothesis import strategies as st
from replicakit import cell, merge, record, rid, temp_replica

from client_sync import review, view
from client_sync.replica import Replica, derived


def ids(replica: Replica, **query: object) -> list[str]:
    return [r.id for r in view.records_page(replica, view.Query(**query)).records]  # type: ignore[arg-type]


def test_values_a_device_should_not_have_sent_are_shown_as_such() -> None:
    with temp_replica() as replica:
        merge(replica, [
            *record(rid(1), "picket", 10, place="Gate", attendance="forty"),
            *record(rid(2), "pamphlet", 11, title="Not a type we know"),
            *record(rid(3), "picket", 12, place="Square", attendance=12),
            cell(rid(3), "detention", "person_name", "Wrong type here", 13),
        ])  # fmt: skip
        got = {r.id: r.as_json() for r in view.iter_records(replica)}
        assert got[rid(1)] == {
            "id": rid(1), "type": "picket", "fields": {"attendance": "forty", "place": "Gate"},
            "conflicts": {}, "deleted": False,
            "invalid": {"attendance": {"value": "forty", "problem": "Not a whole number."}},
        }  # fmt: skip
        assert got[rid(2)]["fields"] == {"title": "Not a type we know"}
        assert got[rid(2)]["invalid"] == {
            "title": {"value": "Not a type we know", "problem": "unknown record type 'pamphlet'"}
        }
        assert got[rid(3)]["fields"] == {"attendance": 12, "place": "Square"}
        assert got[rid(3)]["invalid"] == {
            "detention.person_name": {
                "value": "Wrong type here", "problem": "a detention value under a picket record",
            }
        }  # fmt: skip
        assert ids(replica, only="invalid") == [rid(1), rid(2), rid(3)]
        assert ids(replica, record_type="picket", only="invalid") == [rid(1), rid(3)]


NAMES = {
    1: "Айгүл Демоқызы",  # Kazakh Cyrillic
    2: "Аигуль Демокызы",  # Russian spelling of the same
    3: "Éléonore Zoë",  # Latin with accents
    4: "艾古丽·德莫",  # Chinese
    5: "ئايگۈل دېموقىزى",  # Uyghur, Arabic script
    6: "Ёлкин Пётр",
}


def names_replica(replica: Replica) -> None:
    merge(replica, [
        c for n, name in NAMES.items()
        for c in record(rid(n), "relative", 100 + n, full_name=name, status="camp")
    ])  # fmt: skip


def test_the_full_text_filter_works_on_any_script() -> None:
    with temp_replica() as replica:
        names_replica(replica)
        assert ids(replica, search="айгүл") == [rid(1)]
        assert ids(replica, search="ДЕМО") == [rid(1), rid(2)]  # case, any length ≥ 3
        assert ids(replica, search="eleonore") == [rid(3)]  # accents dropped
        assert ids(replica, search="ZOË") == [rid(3)]
        assert ids(replica, search="艾古丽") == [rid(4)]
        assert ids(replica, search="古丽") == [rid(4)]  # two characters: below a trigram
        assert ids(replica, search="ئايگۈل") == [rid(5)]
        assert ids(replica, search="ёлкин петр") == [rid(6)]  # ё as е, words in any order
        assert ids(replica, search="дем кыз") == [rid(2)]
        assert ids(replica, search="camp", record_type="picket") == []
        page = view.records_page(replica, view.Query(search="camp", limit=2, offset=2))
        assert (page.total, [r.id for r in page.records]) == (6, [rid(3), rid(4)])


def test_sorting_on_any_script_with_numbers_before_text_and_missing_last() -> None:
    with temp_replica() as replica:
        names_replica(replica)
        assert ids(replica, record_type="relative", sort="full_name") == [
            rid(3), rid(2), rid(1), rid(6), rid(5), rid(4)
        ]  # fmt: skip
        merge(replica, [
            *record(rid(20), "picket", 200, attendance=9),
            *record(rid(21), "picket", 201, attendance=10),
            *record(rid(22), "picket", 202, attendance="forty"),
            *record(rid(23), "picket", 203, place="no count"),
            *record(rid(24), "picket", 204, attendance=100),
        ])  # fmt: skip
        asc = [rid(20), rid(21), rid(24), rid(22), rid(23)]
        assert ids(replica, record_type="picket", sort="attendance") == asc
        desc = [rid(22), rid(24), rid(21), rid(20), rid(23)]
        assert ids(replica, record_type="picket", sort="attendance", descending=True) == desc
        for offset in range(5):
            got = ids(replica, record_type="picket", sort="attendance", offset=offset, limit=2)
            assert got == asc[offset : offset + 2]
        got = ids(replica, record_type="picket", sort="attendance", search="o")
        assert got == [rid(22), rid(23)]  # "forty" and "no count"; sorted the same way


def test_links_both_ways_and_deleted_records() -> None:
    with temp_replica() as replica:
        picket, det1, det2 = rid(1), rid(2), rid(3)
        merge(replica, [
            *record(picket, "picket", 10, place="Gate", date="2026-12-04"),
            *record(det1, "detention", 11, picket_id=picket, person_name="Aigul"),
            *record(det2, "detention", 12, picket_id=picket, person_name="Serik"),
            *record(rid(4), "detention", 13, picket_id=rid(99), person_name="Marat"),
        ])  # fmt: skip
        shown = review.record_detail(replica, picket)
        assert shown is not None
        assert (shown.links_out, shown.links_in) == ([], [
            {"field": "picket_id", "id": det1, "type": "detention"},
            {"field": "picket_id", "id": det2, "type": "detention"},
        ])  # fmt: skip
        other = review.record_detail(replica, rid(4))
        assert other is not None
        assert other.links_out == [{"field": "picket_id", "id": rid(99), "type": None}]
        merge(replica, [cell(det2, "detention", "_deleted", True, 20)])
        assert ids(replica, record_type="detention") == [det1, rid(4)]
        assert ids(replica, record_type="detention", include_deleted=True) == [det1, det2, rid(4)]
        # A write after the delete keeps the record (docs/PROTOCOL.md "Deletion").
        merge(replica, [cell(det2, "detention", "court", "Court No. 3", 21, "device-b")])
        assert ids(replica, record_type="detention") == [det1, det2, rid(4)]


DAY = "2026-12-04T"


def test_likely_duplicates_follow_the_cells() -> None:
    with temp_replica() as replica:
        a, b, c = rid(1), rid(2), rid(3)
        merge(replica, [
            *record(a, "detention", 10, person_name="Daulet Fakeuly", detained_at=DAY + "11:20"),
            *record(b, "detention", 11, person_name="Zarina Otherova", detained_at=DAY + "11:30"),
            *record(c, "detention", 12, person_name="Daulet Fakeuly", detained_at="2026-12-05T09"),
        ])  # fmt: skip
        assert ids(replica, only="duplicates") == []
        # A correction makes two records of one day look alike; another takes it back.
        first = replica.heads(b, cell(b, "detention", "person_name", "", 0).field_tag)[0]
        fix = cell(
            b, "detention", "person_name", "Daulet Fake-uly", 13, supersedes=(first.cell_id,)
        )
        merge(replica, [fix])
        assert ids(replica, only="duplicates") == [a, b]
        assert [r.duplicates for r in view.load(replica, [a, b, c])] == [[b], [a], []]
        back = cell(b, "detention", "person_name", "Zarina Otherova", 14, supersedes=(fix.cell_id,))
        merge(replica, [back])
        assert ids(replica, only="duplicates") == []
        # The day moves (a later value wins, even while in conflict): c joins a's block.
        merge(replica, [cell(c, "detention", "detained_at", "2026-12-04T12:00", 15, "device-b")])
        assert ids(replica, only="duplicates") == [a, c]
        # Deleting one of a pair takes the pair away.
        merge(replica, [cell(c, "detention", "_deleted", True, 30, "device-coordinator")])
        assert ids(replica, only="duplicates", include_deleted=True) == []


BLOCK_DAYS = ["2026-12-04T11:20", "2026-12-04T15:00", "2026-12-05T09:00"]
# Two families of near names (each alike the others of its family), and others: equal
# names, neighbours past the fourth that are alike too, and names alike no other.
NEAR_NAMES = [
    *(f"daulet {s}" for s in ("fakeuly", "fake-uly", "fakeuli", "fakeul", "fakeuly a", "fakeily")),
    *(f"zarina {s}" for s in ("otherova", "otherov", "other-ova", "otherova b", "atherova")),
]
BLOCK_NAMES = st.one_of(
    st.sampled_from(NEAR_NAMES),
    st.text(alphabet="abn -", min_size=1, max_size=9).filter(lambda n: bool(n.strip())),
)


@given(
    st.lists(st.tuples(BLOCK_NAMES, st.sampled_from(BLOCK_DAYS)), min_size=1, max_size=28),
    st.lists(st.integers(0, 28), max_size=4),
    st.lists(st.tuples(st.integers(0, 27), BLOCK_NAMES, st.sampled_from(BLOCK_DAYS)), max_size=6),
)
@example([("daulet fakeuly", BLOCK_DAYS[0])] * 7, [], [])  # equal names past the fourth
@settings(deadline=None, max_examples=40)
def test_a_block_read_whole_pairs_as_the_index_does(
    people: list[tuple[str, str]], cuts: list[int], edits: list[tuple[int, str, str]]
) -> None:
    """Likely duplicates from a day's block read once per page (derived.BLOCK) are those the
    per-record index reads find, whatever the pages and the later corrections of names
    and days (equal names, neighbours past the fourth, records leaving a block)."""

    def who(n: int) -> str:  # record ids in another order than their arrival
        return rid(37 * n % 101)

    def pairs(block: int) -> list[tuple[str, str]]:
        with patch.object(derived, "BLOCK", block), temp_replica() as replica:
            cells = [
                c
                for n, (name, day) in enumerate(people)
                for c in (
                    cell(who(n), "detention", "person_name", name, 10 + n, cell_id=f"n{n}"),
                    cell(who(n), "detention", "detained_at", day, 10 + n, cell_id=f"d{n}"),
                )
            ]
            bounds = sorted({0, len(cells), *(2 * min(c, len(people)) for c in cuts)})
            for lo, hi in itertools.pairwise(bounds):
                merge(replica, cells[lo:hi])
            for k, (n, name, day) in enumerate(edits):
                if n < len(people):
                    names = replica.heads(who(n), cells[2 * n].field_tag)
                    days = replica.heads(who(n), cells[2 * n + 1].field_tag)
                    merge(replica, [
                        cell(who(n), "detention", "person_name", name, 100 + k,
                             supersedes=(names[0].cell_id,)),
                        cell(who(n), "detention", "detained_at", day, 100 + k,
                             supersedes=(days[0].cell_id,)),
                    ])  # fmt: skip
            return sorted(replica.db.execute("SELECT a, b FROM duplicates").fetchall())

    assert pairs(derived.BLOCK) == pairs(0)


ODD = [None, True, False, 0, -1, 40, 10**13, "", " x", "x ", "40", "forty", "2024", "2024-13",
       "2024-02-30", "2024-02-29", "2023-02-29", "2024-03-05T11:20", "2024-03-05 11:20",
       "2024-3-5T11:20", "2024-03-05T25:20", "A" * 22, "A" * 21, "KZT", "kzt", "camp", "Camp",
       "x" * 4000, "x" * 4001, [1], {"a": 1}, "Айгүл"]  # fmt: skip


def test_the_quick_verdict_is_the_schemas() -> None:
    """`problem` clears common values without marshmallow; on every field of every type
    (and a reserved and an unknown one) it says what the schema says."""
    from client_sync.replica.values import _judged, problem
    from schemas.records import RECORD_TYPES, field_names

    for rtype in [*RECORD_TYPES, "pamphlet"]:
        names = field_names(rtype) if rtype in RECORD_TYPES else ["title"]
        for name in [*names, "_deleted", "nope"]:
            for value in ODD:
                assert problem(rtype, name, value) == _judged(rtype, name, value), (
                    rtype, name, value,
                )  # fmt: skip


def _lcs_table(a: str, b: str) -> int:
    """The longest common subsequence by the textbook table: the reference."""
    row = [0] * (len(b) + 1)
    for ch in a:
        diagonal = 0
        for j, other in enumerate(b, 1):
            diagonal, row[j] = row[j], diagonal + 1 if ch == other else max(row[j], row[j - 1])
    return row[-1]


_NAME_TEXT = st.text(alphabet="adeklnuyз-. 艾\U0001f600", max_size=24)


@given(_NAME_TEXT, _NAME_TEXT)
@settings(deadline=None, max_examples=300)
def test_likely_duplicate_names_are_judged_by_their_longest_common_subsequence(
    a: str, b: str
) -> None:
    total = len(a) + len(b)
    assert derived.Name(a).lcs(b) == _lcs_table(a, b)
    assert derived.Name(a).similar(b) == (total > 0 and 2 * _lcs_table(a, b) >= 0.8 * total)


def test_names_at_the_likely_duplicates_boundary() -> None:
    # 2 * 12 / 30 = 0.8 exactly: a likely duplicate; one character less in common: not.
    name = derived.Name("abcdefghijklmno")
    assert [name.lcs("abcdefghijklxyz"), name.lcs("abcdefghijkwxyz")] == [12, 11]
    assert [name.similar("abcdefghijklxyz"), name.similar("abcdefghijkwxyz")] == [True, False]
    assert derived.Name("daulet fakeuly").lcs("daulet fake-uly") == 14
