"""The pull's pool of processes opens bundles and works out their hashes exactly as one
process does: the writer keeps the pool's hash of each bundle for its device's chain."""

from __future__ import annotations

import dataclasses

from corekit import T0, TAG_KEY, Log, Member, new_id, seal

from client_sync.replica.opening import POOL_THRESHOLD, Keys, Opener, hash_or_blank, open_one
from protocol import crypto, hlc
from protocol.model import ZERO_HASH, CellInput


def test_the_pool_opens_and_hashes_what_one_process_does() -> None:
    founder = Member("founder", keyholder=True)
    log = Log(founder)
    vol = log.join(founder, Member("volunteer", keyholder=False), "volunteer")
    bundles, prev = [], ZERO_HASH
    for seq in range(1, POOL_THRESHOLD + 8):
        stamp = hlc.pack(T0 * 1000 + seq, 0)
        cells = [CellInput(new_id(f"r{seq}"), "picket", "place", f"Square {seq}", stamp)]
        bundle = seal(cells, seq=seq, prev=prev, device=vol.key, label=f"b{seq}")
        prev = crypto.bundle_hash(bundle)
        bundles.append(bundle)
    # One whose signature is another's (refused, hashed all the same) and one whose
    # header does not encode (refused, no hash).
    bundles[3] = dataclasses.replace(bundles[3], sig=bundles[4].sig)
    bundles[5] = dataclasses.replace(bundles[5], seq=b"6")
    keys = Keys.of(log.state, {1: log.epochs[1].private_bytes}, TAG_KEY)
    alone = [open_one(b, keys) for b in bundles]
    hashes = [crypto.bundle_hash(b) if i != 5 else "" for i, b in enumerate(bundles)]
    assert [type(r) for r in alone] == [list] * 3 + [tuple] + [list] + [tuple] + [list] * (
        len(bundles) - 6
    )
    assert hashes == [hash_or_blank(b) for b in bundles]
    with Opener(keys, workers=2) as pool:
        pending = pool.start(bundles)
        assert (pending.results(), pending.hashes()) == (alone, hashes)
    with Opener(keys, workers=1) as here:
        pending = here.start(bundles)
        assert (pending.results(), pending.hashes()) == (alone, hashes)
