"""Each device's chain, kept as runs as bundles arrive in any order: the gaps and broken
links found are those of a check over the whole chain, and the chain head (what a
receipt states) is the end of the gap-free stretch from bundle 1."""

from __future__ import annotations

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
)
@SETTINGS
def test_runs_find_what_the_whole_chain_check_finds(
    length: int, withheld: set[int], broken: set[int], rnd: object
) -> None:
    held = {}
    for seq in range(1, length + 1):
        if seq not in withheld:
            prev = f"hash-{seq - 1}" if seq not in broken else f"other-{seq}"
            held[seq] = (prev if seq > 1 else "zero", f"hash-{seq}")
    arrival = sorted(held)
    rnd.shuffle(arrival)  # type: ignore[attr-defined]
    with temp_replica() as replica:
        db = replica.db
        for n, seq in enumerate(arrival):
            prev, h = held[seq]
            db.execute(
                "INSERT INTO bundles VALUES (?, ?, ?, ?, ?, ?, 1)",
                (f"b{seq}", DEV, seq, prev, h, n),
            )
            assert chains.add(db, stub(seq, prev, f"b{seq}"), h) is None
            partial = {s: held[s] for s in arrival[: n + 1]}
            assert chains.gaps(db, DEV) == whole_chain_check(partial)
        top = 0
        while top + 1 in held and (top == 0 or held[top + 1][0] == f"hash-{top}"):
            top += 1
        assert chains.heads(db) == ({DEV: (top, f"hash-{top}")} if top else {})
        # Runs: one per stretch, so a check reads one row per gap or broken link (the
        # message for bundles missing before the first held one needs no row of its own).
        (runs,) = db.execute("SELECT count(*) FROM runs").fetchone()
        starts_late = 1 if held and 1 not in held else 0
        assert runs == (len(whole_chain_check(held)) + 1 - starts_late if held else 0)
        fork = stub(arrival[0], "anything", "a-second-bundle") if arrival else None
        if fork is not None:
            db.execute(
                "INSERT INTO bundles VALUES (?, ?, ?, ?, ?, NULL, 1)",
                ("a-second-bundle", DEV, fork.seq, "anything", "h"),
            )
            assert chains.add(db, fork, "h") == (
                f"device {DEV}: two different bundles numbered {fork.seq} (a fork)"
            )
