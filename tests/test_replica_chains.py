"""Each device's chain, kept as runs as bundles arrive in any order: the gaps and broken
links found are those of a check over the whole chain, and the chain head (what a
receipt states) is the end of the gap-free stretch from bundle 1."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st
from replicakit import temp_replica
from test_merge_laws import SETTINGS

from client_sync.replica import chains
from protocol.model import Bundle

DEV = "device-a"


def stub(seq: int, prev: str, bundle_id: str) -> Bundle:
    return Bundle("", bundle_id, DEV, seq, prev, 1, "", (), 1, "", "")


def whole_chain_check(held: dict[int, tuple[str, str]]) -> list[str]:
    """The check the replica used to run over a device's whole chain (seq -> prev, hash)."""
    found, expected, last_hash = [], 1, None
    for seq in sorted(held):
        if seq > expected:
            span = f"{expected}" if seq - expected == 1 else f"{expected}-{seq - 1}"
            noun = "bundle" if seq - expected == 1 else "bundles"
            where = f"between {expected - 1} and {seq}" if expected > 1 else f"before {seq}"
            found.append(f"device {DEV}: {noun} {span} missing {where}")
        elif last_hash is not None and held[seq][0] != last_hash:
            found.append(
                f"device {DEV}: bundle {seq} does not chain to bundle {seq - 1}"
                " (its prev is not that bundle's hash)"
            )
        expected, last_hash = seq + 1, held[seq][1]
    return found


@given(
    st.integers(1, 40),
    st.sets(st.integers(1, 40)),  # withheld
    st.sets(st.integers(2, 40)),  # signed with a wrong prev
    st.randoms(use_true_random=False),
    st.lists(st.integers(0, 40), max_size=5),  # page cuts
)
@SETTINGS
def test_runs_find_what_the_whole_chain_check_finds(
    length: int, withheld: set[int], broken: set[int], rnd: object, cuts: list[int]
) -> None:
    held = {}
    for seq in range(1, length + 1):
        if seq not in withheld:
            prev = f"hash-{seq - 1}" if seq not in broken else f"other-{seq}"
            held[seq] = (prev if seq > 1 else "zero", f"hash-{seq}")
    arrival = sorted(held)
    rnd.shuffle(arrival)  # type: ignore[attr-defined]
    points = sorted({0, len(arrival), *(c % (len(arrival) + 1) for c in cuts)})
    with temp_replica() as replica:
        db = replica.db
        for a, b in itertools.pairwise(points):
            page = chains.PageChains(db)
            bundles = [stub(seq, held[seq][0], f"b{seq}") for seq in arrival[a:b]]
            page.known(bundles)
            for bundle in bundles:
                assert page.add(bundle, held[bundle.seq][1]) is None
            page.flush()
            db.executemany(
                "INSERT INTO bundles VALUES (?, ?, ?, ?, ?, NULL, 1)",
                [(x.bundle_id, DEV, x.seq, x.prev, held[x.seq][1]) for x in bundles],
            )
            assert chains.gaps(db, DEV) == whole_chain_check({s: held[s] for s in arrival[:b]})
        top = 0
        while top + 1 in held and (top == 0 or held[top + 1][0] == f"hash-{top}"):
            top += 1
        assert chains.heads(db) == ({DEV: (top, f"hash-{top}")} if top else {})
        # Runs: one per stretch, so a check reads one row per gap or broken link (the
        # message for bundles missing before the first held one needs no row of its own).
        (runs,) = db.execute("SELECT count(*) FROM runs").fetchone()
        starts_late = 1 if held and 1 not in held else 0
        assert runs == (len(whole_chain_check(held)) + 1 - starts_late if held else 0)
        if arrival:
            page = chains.PageChains(db)
            fork = stub(arrival[0], "anything", "a-second-bundle")
            page.known([fork])
            assert page.add(fork, "h") == (
                f"device {DEV}: two different bundles numbered {fork.seq} (a fork)"
            )
            twins = [stub(99, "x", "twin-1"), stub(99, "y", "twin-2")]  # a fork within a page
            assert [page.add(t, t.bundle_id) for t in twins] == [
                None, f"device {DEV}: two different bundles numbered 99 (a fork)"
            ]  # fmt: skip
