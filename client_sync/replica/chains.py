"""Each device's chain of bundles, kept incrementally: gaps, forks, broken links, heads.

A device numbers its bundles 1, 2, 3, … and each names the hash of the one before,
so a coordinator sees a bundle the server withheld or dropped. The replica keeps
each device's verified bundles as *runs*: stretches of consecutive numbers, each
bundle's `prev` the hash of the one before. A new bundle joins the run that ends
just before it and the one that starts just after it, when it links to them; so a
check costs the device's runs (one more per gap), never its whole chain.

- The chain head of a device (for receipts) is the end of its run that starts at 1:
  the highest number up to which the replica holds the chain without a gap, and that
  bundle's hash.
- Between two runs there is a gap ("bundles 6-7 missing between 5 and 8"), or, when
  they touch, a broken link ("bundle 8 does not chain to bundle 7").
- A second bundle with a number already held is a fork, reported once and kept out.
"""

from __future__ import annotations

from typing import Any

from protocol.model import Bundle


def add(db: Any, bundle: Bundle, bundle_hash: str) -> str | None:
    """Put a verified bundle into its device's runs; a fork's message instead."""
    dev, seq = bundle.device_id, bundle.seq
    other = db.execute(
        "SELECT bundle_id FROM bundles WHERE device_id = ? AND seq = ? AND ok = 1"
        " AND bundle_id != ?",
        (dev, seq, bundle.bundle_id),
    ).fetchone()
    if other is not None:
        return f"device {dev}: two different bundles numbered {seq} (a fork)"
    _join(db, dev, seq, bundle.prev, bundle_hash)
    return None


def _join(db: Any, dev: str, seq: int, prev: str, bundle_hash: str) -> None:
    first, first_prev, last, last_hash = seq, prev, seq, bundle_hash
    before = db.execute(
        "SELECT first_seq, last_seq, first_prev, last_hash FROM runs WHERE device_id = ?"
        " AND first_seq < ? ORDER BY first_seq DESC LIMIT 1",
        (dev, seq),
    ).fetchone()
    if before is not None and before[1] == seq - 1 and before[3] == prev:
        db.execute("DELETE FROM runs WHERE device_id = ? AND first_seq = ?", (dev, before[0]))
        first, first_prev = before[0], before[2]
    after = db.execute(
        "SELECT last_seq, first_prev, last_hash FROM runs WHERE device_id = ? AND first_seq = ?",
        (dev, seq + 1),
    ).fetchone()
    if after is not None and after[1] == bundle_hash:
        db.execute("DELETE FROM runs WHERE device_id = ? AND first_seq = ?", (dev, seq + 1))
        last, last_hash = after[0], after[2]
    db.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?)", (dev, first, last, first_prev, last_hash))


def gaps(db: Any, dev: str) -> list[str]:
    """What is missing or broken in a device's chain, from its runs."""
    found: list[str] = []
    expected, last_hash = 1, None
    for first, last, first_prev, end_hash in db.execute(
        "SELECT first_seq, last_seq, first_prev, last_hash FROM runs WHERE device_id = ?"
        " ORDER BY first_seq",
        (dev,),
    ):
        if first > expected:
            span = f"{expected}" if first - expected == 1 else f"{expected}-{first - 1}"
            noun = "bundle" if first - expected == 1 else "bundles"
            where = f"between {expected - 1} and {first}" if expected > 1 else f"before {first}"
            found.append(f"device {dev}: {noun} {span} missing {where}")
        elif last_hash is not None and first_prev != last_hash:
            found.append(
                f"device {dev}: bundle {first} does not chain to bundle {first - 1}"
                " (its prev is not that bundle's hash)"
            )
        expected, last_hash = last + 1, end_hash
    return found


def heads(db: Any) -> dict[str, tuple[int, str]]:
    """device id -> (highest seq held without a gap from 1, that bundle's hash)."""
    return {
        dev: (int(last), str(h))
        for dev, last, h in db.execute(
            "SELECT device_id, last_seq, last_hash FROM runs WHERE first_seq = 1"
        )
    }


def rebuild(db: Any) -> list[tuple[str, str, str]]:
    """Runs from every verified bundle (a migrated replica); the forks found, as problem
    rows. Bundles of one device go in number order, so each joins the run before it."""
    db.execute("DELETE FROM runs")
    rows = db.execute(
        "SELECT device_id, seq, prev, hash FROM bundles WHERE ok = 1"
        " ORDER BY device_id, seq, bundle_id"
    ).fetchall()
    forks = []
    held: set[tuple[str, int]] = set()
    for dev, seq, prev, h in rows:
        if (dev, seq) in held:
            message = f"device {dev}: two different bundles numbered {seq} (a fork)"
            forks.append((f"fork:{dev}:{seq}", dev, message))
            continue
        held.add((dev, seq))
        _join(db, dev, seq, prev, h)
    return forks
