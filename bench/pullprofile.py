"""Where a coordinator's first pull spends its time, page by page, as the replica grows.

    .venv/bin/python bench/pullprofile.py build DIR --size 100000   # once: workspace + pages
    .venv/bin/python bench/pullprofile.py pull DIR --records 30000 [--cprofile FILE]

`build` grows a workspace as bench/coordinator.py does (sealed on every core, stored
through the server's push judgement in this process) and keeps the changes feed's
pages as the founder reads them from the real server (pickled, with the founder's
profile), so `pull` runs the first pull's replica side alone: the pool opens page
i + 1 while page i is merged and written, committed every `COMMIT_EVERY` seconds as
`client_sync.sync` does, with no HTTP in between. It prints, per slice of pages, the
time of `ingest`, the SQL statements and the SQLite VM steps it ran, and at the end
where the parent's time went (cProfile, optional) and the statements that stepped most.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import pickle
import pstats
import resource
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.append(str(ROOT / "bench"))

import coordinator  # noqa: E402

from client_sync import keyring, sync  # noqa: E402
from client_sync.profile import Profile  # noqa: E402
from client_sync.replica import Replica  # noqa: E402
from client_sync.replica.opening import Keys, Opener  # noqa: E402


def build(root: Path, size: int) -> None:
    root.mkdir(parents=True)
    ws = coordinator.Workspace(root)
    try:
        for stage in range(10_000, size + 1, 10_000):
            ws.grow(stage, size)
            print(f"grown to {stage}", flush=True)
        prof = Profile.open(ws.admin_home, coordinator.PASS)
        client = keyring.client_for(prof)
        pages, cursor = [], 0
        while True:
            page = sync._fetch(client, cursor)
            pages.append(page[0])
            cursor = max(cursor, page[1])
            if page[2] or not page[0]:
                break
        with open(root / "pages.pkl", "wb") as fh:
            pickle.dump(pages, fh, protocol=pickle.HIGHEST_PROTOCOL)
        print(f"{sum(len(p) for p in pages)} bundles in {len(pages)} pages")
    finally:
        ws.server.stop()


class Counting:
    """SQL statements (by their first 90 characters) and VM steps between marks."""

    def __init__(self, db: Any) -> None:
        self.statements: Counter[str] = Counter()
        self.steps: Counter[str] = Counter()
        self.current = ""
        self.tick = 0
        db.set_trace_callback(self.trace)
        db.set_progress_handler(self.progress, 1000)

    def trace(self, sql: str) -> None:
        self.current = " ".join(sql.split())[:90]
        self.statements[self.current] += 1

    def progress(self) -> int:
        self.steps[self.current] += 1000
        self.tick += 1000
        return 0


def pull(
    root: Path,
    records: int,
    slices: int,
    profile_to: str | None,
    counts: bool,
    pragmas: list[str],
    no_gc: bool,
    window: tuple[int, int] = (0, 10**9),
) -> None:
    with open(root / "pages.pkl", "rb") as fh:
        pages: list[list[Any]] = pickle.load(fh)
    gc.freeze()  # the whole feed in memory is this harness's, not a pull's: kept out of GC
    taken, n = [], 0
    for page in pages:
        if n >= records:
            break
        taken.append(page)
        n += len(page)
    prof = Profile.open(root / "admin", coordinator.PASS)
    used = resource.getrusage(resource.RUSAGE_SELF)
    load_cpu = used.ru_utime + used.ru_stime
    log, epoch_keys, tag_key = prof.log(), prof.epoch_keys(), prof.tag_key
    path = root / "bench-replica.db"
    for leftover in root.glob("bench-replica.db*"):
        leftover.unlink()
    replica = Replica(path, bytes(32))
    for pragma in pragmas:
        replica.db.execute(f"PRAGMA {pragma}")
    counter = Counting(replica.db) if counts else None
    cpu = 0.0
    per_page: list[tuple[float, int]] = []
    cpu_page: list[float] = []
    commits: list[float] = []
    profiler = cProfile.Profile() if profile_to else None
    started = time.perf_counter()
    committed = time.monotonic()
    cursor = 0
    with Opener(Keys.of(log, epoch_keys, tag_key)) as opener:
        opening = opener.start([b for b, _ in taken[0]])
        for i, page in enumerate(taken):
            nxt = None
            if i + 1 < len(taken):
                opening.results()
                nxt = opener.start([b for b, _ in taken[i + 1]])
            cursor = max(cursor, max(c for _, c in page))
            last = i + 1 == len(taken)
            commit = last or time.monotonic() - committed > sync.COMMIT_EVERY
            tick = counter.tick if counter else 0
            t0, c0 = time.perf_counter(), time.thread_time()
            if no_gc:
                gc.disable()
            profiling = profiler is not None and window[0] <= i < window[1]
            if profiling:
                profiler.enable()
            replica.ingest(
                page, log, epoch_keys, tag_key, opened=opening, cursor=cursor, commit=commit
            )
            if profiling:
                profiler.disable()
            if no_gc:
                gc.enable()
            cpu_page.append(time.thread_time() - c0)
            cpu += cpu_page[-1]
            per_page.append((time.perf_counter() - t0, (counter.tick if counter else 0) - tick))
            if commit:
                commits.append(per_page[-1][0])
            if commit:
                committed = time.monotonic()
            if nxt is not None:
                opening = nxt
    wall = time.perf_counter() - started
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    own_cpu = me.ru_utime + me.ru_stime - load_cpu
    print(
        f"CPU: this process {own_cpu:.1f} s ({1e6 * own_cpu / n:.0f} us/record, of which"
        f" ingest's thread {1e6 * cpu / n:.0f}), the pool's workers"
        f" {kids.ru_utime + kids.ru_stime:.1f} s"
    )
    size = path.stat().st_size / 2**20
    replica.close()
    print(f"{n} records in {len(taken)} pages: {wall:.1f} s, {n / wall:.0f} records/s")
    print(
        f"ingest total {sum(t for t, _ in per_page):.1f} s; replica {size:.0f} MiB;"
        f" {len(commits)} committing pages: {sum(commits):.1f} s; parent CPU in ingest {cpu:.1f} s,"
        f" {1e6 * cpu / n:.0f} us/record"
    )
    step = max(1, len(per_page) // slices)
    for i in range(0, len(per_page), step):
        part = per_page[i : i + step]
        ms = 1000 * sum(t for t, _ in part) / len(part)
        vm = sum(s for _, s in part) / len(part)
        used = 1000 * sum(cpu_page[i : i + step]) / len(part)
        print(
            f"  pages {i:4d}-{i + len(part) - 1:4d}: ingest {ms:6.0f} ms/page, CPU {used:4.0f} ms,"
            f" {vm:9.0f} VM steps"
        )
    if counter:
        print("statements that stepped most (VM steps, executions):")
        for sql, vm in counter.steps.most_common(15):
            print(f"  {vm:11d} {counter.statements[sql]:7d}  {sql}")
    if profiler and profile_to:
        profiler.dump_stats(profile_to)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    print(json.dumps({"records": n, "wall_s": wall, "per_s": n / wall}))


def end_to_end(root: Path) -> None:
    """The real thing once: `fieldsync sync` of the founder, its replica deleted, against
    the workspace's real server (gunicorn, on the port the profile names)."""
    import kit
    from servergun import Gunicorn

    prof = Profile.open(root / "admin", coordinator.PASS)
    port = int(prof.server.rsplit(":", 1)[1])
    server = Gunicorn(root / "data", workers=2 * kit.cores(), port=port, log_dir=root / "logs")
    server.start()
    try:
        for leftover in (root / "admin").glob("replica.db*"):
            leftover.unlink()
        env = {**os.environ, "FIELDSYNC_HOME": str(root / "admin"),
               "FIELDSYNC_PASSPHRASE": coordinator.PASS}  # fmt: skip
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        ran = kit.fieldsync("sync", env=env)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        used = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        print(ran.out.decode()[-300:])
        print(json.dumps({"first_sync_s": ran.wall, "peak_mib": ran.peak_mib, "cpu_s": used}))
    finally:
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("root", type=Path)
    b.add_argument("--size", type=int, default=100_000)
    p = sub.add_parser("pull")
    p.add_argument("root", type=Path)
    p.add_argument("--records", type=int, default=10_000)
    p.add_argument("--slices", type=int, default=10)
    p.add_argument("--cprofile")
    p.add_argument("--counts", action="store_true")
    p.add_argument("--pragma", action="append", default=[])
    p.add_argument("--no-gc", action="store_true")
    p.add_argument("--pages", help="profile pages FIRST:END only", default="0:1000000000")
    e = sub.add_parser("e2e")
    e.add_argument("root", type=Path)
    args = ap.parse_args()
    if args.cmd == "e2e":
        end_to_end(args.root)
    elif args.cmd == "build":
        build(args.root, args.size)
    else:
        pull(
            args.root,
            args.records,
            args.slices,
            args.cprofile,
            args.counts,
            args.pragma,
            args.no_gc,
        )


if __name__ == "__main__":
    main()
