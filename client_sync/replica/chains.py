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


class PageChains:
    """The runs of the devices one page touches, held in memory while the page is folded
    in and written back by `flush` (a device has one run per gap, so few rows)."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.runs: dict[str, dict[int, list[Any]]] = {}  # device -> first seq -> run
        self.ends: dict[str, dict[int, int]] = {}  # device -> last seq -> first seq
        self.held: dict[tuple[str, int], str] = {}  # (device, seq) -> bundle id

    def _device(self, dev: str) -> None:
        if dev in self.runs:
            return
        runs = {
            first: [first, last, first_prev, last_hash]
            for first, last, first_prev, last_hash in self.db.execute(
                "SELECT first_seq, last_seq, first_prev, last_hash FROM runs WHERE device_id = ?",
                (dev,),
            )
        }
        self.runs[dev] = runs
        self.ends[dev] = {run[1]: first for first, run in runs.items()}

    def known(self, bundles: list[Bundle]) -> None:
        """Read which (device, seq) of these bundles are held already (fork check)."""
        by_dev: dict[str, list[int]] = {}
        for b in bundles:
            by_dev.setdefault(b.device_id, []).append(b.seq)
        for dev, seqs in by_dev.items():
            for i in range(0, len(seqs), 500):
                part = seqs[i : i + 500]
                marks = ",".join("?" * len(part))
                for seq, bid in self.db.execute(
                    f"SELECT seq, bundle_id FROM bundles WHERE device_id = ? AND ok = 1"  # noqa: S608
                    f" AND seq IN ({marks})",
                    [dev, *part],
                ):
                    self.held[(dev, seq)] = bid

    def add(self, bundle: Bundle, bundle_hash: str) -> str | None:
        """Put a verified bundle into its device's runs; a fork's message instead."""
        dev, seq = bundle.device_id, bundle.seq
        other = self.held.get((dev, seq))
        if other is not None and other != bundle.bundle_id:
            return f"device {dev}: two different bundles numbered {seq} (a fork)"
        self.held[(dev, seq)] = bundle.bundle_id
        self._device(dev)
        runs, ends = self.runs[dev], self.ends[dev]
        run: list[Any] = [seq, seq, bundle.prev, bundle_hash]
        before = runs.get(ends.get(seq - 1, -1))
        if before is not None and before[3] == bundle.prev:
            del ends[before[1]]
            before[1], before[3] = seq, bundle_hash
            run = before
        after = runs.get(seq + 1)
        if after is not None and after[2] == bundle_hash:
            del runs[seq + 1]
            del ends[after[1]]
            run[1], run[3] = after[1], after[3]
        runs[run[0]] = run
        ends[run[1]] = run[0]
        return None

    def flush(self) -> None:
        for dev, runs in self.runs.items():
            self.db.execute("DELETE FROM runs WHERE device_id = ?", (dev,))
            self.db.executemany(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?)", [(dev, *run) for run in runs.values()]
            )


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
    rows."""
    db.execute("DELETE FROM runs")
    page = PageChains(db)
    forks = []
    for bid, dev, seq, prev, h in db.execute(
        "SELECT bundle_id, device_id, seq, prev, hash FROM bundles WHERE ok = 1"
        " ORDER BY device_id, seq, bundle_id"
    ).fetchall():
        fork = page.add(Bundle("", bid, dev, seq, prev, 0, "", (), 0, "", ""), h)
        if fork is not None:
            forks.append((f"fork:{dev}:{seq}", dev, fork))
    page.flush()
    return forks
