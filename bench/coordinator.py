"""A coordinator's commands at 1,000, 10,000 and 100,000 records: wall time, peak memory,
and how they grow between sizes; the first pull beside `open_bundle` on every core.

    .venv/bin/python bench/coordinator.py [--quick]   # print (`make bench` writes them)

A real `fieldsync-server run` (gunicorn, 2 workers per core) on loopback. The
workspace is founded and four volunteers enrolled with the client's own code
(real Argon2id, 64 MiB); their records (a mix of pickets, detentions linked to their
picket and relatives, invented names over five years, each valid, one bundle per
record as captured) are sealed with the core on every core and stored through the
server's own push judgement (`server.ingest.push`, in this process: faster than HTTP,
and not what is measured). The workspace grows stage by stage; at each size the
commands run as a coordinator runs them, each a fresh `fieldsync` process:

- first `sync`: the founder's replica deleted, then pull, verify, open, merge all;
- `sync` with one new record: a fifth volunteer (a real profile) adds one and syncs;
- `records --format json` (all of them), `show ID` (a detention), `conflicts` (none open);
- the fixed cost: the fifth volunteer's `status` (start-up, imports, Argon2id unlock).

Figures are medians of three runs (one for the first sync and `records`); peak memory
is the largest resident set of the command's process and the workers it started.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import re
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.append(str(ROOT / "bench"))  # after the packages: bench/server.py is no `server`

import kit  # noqa: E402
from servergun import Gunicorn  # noqa: E402

from client_sync import enrol  # noqa: E402
from client_sync.profile import Profile  # noqa: E402
from client_sync.replica.opening import Keys, Opener, open_one  # noqa: E402
from client_sync.vault import DEFAULT_COST, derive_key  # noqa: E402
from protocol import crypto, hlc  # noqa: E402
from protocol.encoding import b64e  # noqa: E402
from protocol.model import ZERO_HASH, Bundle, CellInput  # noqa: E402
from server import ingest  # noqa: E402
from server.store import Paths, connect, server_db  # noqa: E402
from server.store import keylog as stored_log  # noqa: E402

PASS = "bench passphrase"
VOLUNTEERS = 4
SIZES = (1_000, 10_000, 100_000)
QUICK_SIZES = (200, 1_000, 3_000)
FIRST = ["Aigul", "Serik", "Marat", "Dana", "Erlan", "Asel", "Bolat", "Gulnara", "Nurlan",
         "Zarina", "Daulet", "Aruzhan", "Yerlan", "Madina", "Timur", "Saule", "Айгүл", "Ерлан",
         "Гүлнар", "Нұрлан", "艾古丽", "Ainur", "Berik", "Kairat"]  # fmt: skip
LAST = ["Demokyzy", "Samplebekov", "Fictionuly", "Inventova", "Placeholderuly", "Otherova",
        "Fakeuly", "Madeupov", "Testbaeva", "Mockenov", "Dummyuly", "Sketchova", "Демоқызы",
        "Жасанды", "Ойдан", "德莫", "Notrealov", "Imaginova"]  # fmt: skip
PLACES = [f"Invented place {c}" for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"]


def record_id(n: int) -> str:
    return b64e(random.Random(-n - 1).randbytes(16))


def kind(n: int) -> str:
    return "picket" if n % 8 == 0 else "relative" if n % 5 == 0 else "detention"


def values_of(n: int, total: int) -> tuple[str, dict[str, Any]]:
    """Record n of a workspace of `total`: every eighth a picket, then its detentions (each
    naming it); every fifth a relative. Five years of days; invented names, all valid."""
    rnd = random.Random(n)
    day = date(2021, 1, 1) + timedelta(days=(n % total) * 5 * 365 // total)
    name = f"{rnd.choice(FIRST)} {rnd.choice(LAST)} {rnd.choice('ABCDEFGHKLMNPRST')}."
    if kind(n) == "picket":
        return "picket", {"date": day.isoformat(), "place": rnd.choice(PLACES),
                          "attendance": rnd.randrange(5, 200), "reliability": "high",
                          "police_action": "dispersed after twenty minutes"}  # fmt: skip
    if kind(n) == "relative":
        return "relative", {"full_name": name, "status": rnd.choice(["camp", "prison"]),
                            "detained_since": f"{2017 + n % 5}-{1 + n % 12:02d}",
                            "relation": "brother", "sources": "petitioner"}  # fmt: skip
    return "detention", {
        "person_name": name,
        "detained_at": f"{day.isoformat()}T11:{n % 60:02d}",
        "held_at": f"Station {n % 40}",
        "charges": "Art. 488",
        "picket_id": record_id(n - n % 8),
        "sources": "seen by the volunteer",
    }


def seal_range(args: tuple[str, int, int, int, int, str]) -> list[Bundle]:
    """One volunteer seals records [first, last) as its chain from bundle `seq + 1` on."""
    home, first, last, total, seq, prev = args
    prof = Profile.open(Path(home), PASS)
    log = prof.log()
    stamp, out = hlc.pack(int(time.time() * 1000), 0), []
    for n in range(first, last):
        rtype, values = values_of(n, total)
        rid = record_id(n)
        stamp += 1
        seq += 1
        bundle = crypto.seal_bundle(
            workspace=prof.workspace_id, device_key=prof.device_key, seq=seq, prev=prev,
            epoch=log.current_epoch, epoch_public=log.current_epoch_public, tag_key=prof.tag_key,
            cells=[CellInput(rid, rtype, f, v, stamp) for f, v in values.items()],
            random=os.urandom,
        )  # fmt: skip
        prev = crypto.bundle_hash(bundle)
        out.append(bundle)
    return out


class Workspace:
    """The server, the founder and the volunteers; `grow` adds records through the
    server's push judgement."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        Paths(self.data).ensure()
        self.server = Gunicorn(self.data, workers=2 * kit.cores(), log_dir=root / "logs").start()
        code = server_db.new_code(Paths(self.data), int(time.time()))
        self.admin_home = root / "admin"
        self.admin_home.mkdir(mode=0o700)
        self.admin = enrol.init(self.admin_home, PASS, self.server.url, "Bench", code)
        self.homes = [self.join(f"v{i}") for i in range(VOLUNTEERS)]
        self.cli_home = self.join("cli-volunteer")
        self.chains = [(0, ZERO_HASH) for _ in self.homes]
        self.size = 0

    def join(self, name: str) -> Path:
        from client_sync import keyring

        text = enrol.make_invite(self.admin, keyring.client_for(self.admin), "volunteer", 1)
        self.admin.save()
        home = self.root / name
        home.mkdir(mode=0o700)
        enrol.join(home, PASS, text)
        return home

    def env(self, home: Path) -> dict[str, str]:
        return {**os.environ, "FIELDSYNC_HOME": str(home), "FIELDSYNC_PASSPHRASE": PASS}

    def grow(self, size: int, total: int) -> None:
        per = (size - self.size) // len(self.homes)
        jobs, start = [], self.size
        for i, home in enumerate(self.homes):
            count = per if i < len(self.homes) - 1 else size - self.size - per * i
            seq, prev = self.chains[i]
            jobs.append((str(home), start, start + count, total, seq, prev))
            start += count
        with multiprocessing.get_context("fork").Pool(kit.cores()) as pool:
            sealed = pool.map(seal_range, jobs)
        path = Paths(self.data).workspace_db(self.admin.workspace_id)
        conn = connect(path, create=False)
        try:
            state = stored_log.state(conn, str(path))
            for i, bundles in enumerate(sealed):
                signer = state.devices[bundles[0].device_id]
                for j in range(0, len(bundles), 500):
                    now = int(time.time() * 1000)
                    outcome = ingest.push(
                        conn, bundles[j : j + 500], signer, state, now_ms=now, max_skew_ms=300_000
                    )
                    assert all(isinstance(r, tuple) for r in outcome.results), outcome.results
                self.chains[i] = (bundles[-1].seq, crypto.bundle_hash(bundles[-1]))
        finally:
            conn.close()
        self.size = size


def measure_size(ws: Workspace, size: int, held: int, tmp: Path, repeats: int) -> dict[str, float]:
    """The commands at one size; `held`: records the workspace holds (with earlier stages'
    single new records)."""
    admin, vol = ws.env(ws.admin_home), ws.env(ws.cli_home)
    for leftover in ws.admin_home.glob("replica.db*"):
        leftover.unlink()
    first = kit.fieldsync("sync", env=admin)
    pulled = int(re.search(rb"pulled (\d+) new bundle", first.out).group(1))  # type: ignore[union-attr]
    assert pulled == held, (pulled, held)
    out = {"first_sync_s": first.wall, "first_sync_peak_mib": first.peak_mib}

    def one_new() -> kit.Ran:
        kit.fieldsync("add", "picket", "--set", "place=One more square", "--set", "date=2026-12-05",
                      "--set", "attendance=3",
                      env=vol)  # fmt: skip
        kit.fieldsync("sync", env=vol)
        return kit.fieldsync("sync", env=admin)

    out["sync_one_s"], out["sync_one_peak_mib"] = kit.repeat(one_new, repeats)
    listing = kit.fieldsync("records", "--format", "json", env=admin, stdout_path=tmp / "out.json")
    with open(tmp / "out.json", encoding="utf-8") as fh:
        listed = sum(1 for line in fh if line.startswith('    "id": '))
    assert listed == held + repeats, (listed, held)  # and the single new ones
    out["records_s"], out["records_peak_mib"] = listing.wall, listing.peak_mib
    n = size // 2  # a detention mid-way, with its picket
    while kind(n) != "detention" or record_id(n).startswith("-"):
        n += 1
    shown = kit.fieldsync("show", record_id(n), "--format", "json", env=admin)
    assert json.loads(shown.out)["links"]["out"][0]["type"] == "picket"
    out["show_s"], out["show_peak_mib"] = kit.repeat(
        lambda: kit.fieldsync("show", record_id(n), env=admin), repeats
    )
    out["conflicts_s"], out["conflicts_peak_mib"] = kit.repeat(
        lambda: kit.fieldsync("conflicts", env=admin), repeats
    )
    out["fixed_s"], out["fixed_peak_mib"] = kit.repeat(
        lambda: kit.fieldsync("status", env=vol), repeats
    )
    out["profile_mib"] = sum(p.stat().st_size for p in ws.admin_home.iterdir()) / 2**20
    out.update(operations(ws, record_id(n), repeats))
    return out


def operations(ws: Workspace, target: str, repeats: int) -> dict[str, float]:
    """What each command does once the profile is unlocked, timed in this process (the
    fixed cost of a command taken off exactly): open the replica, run, close."""
    from client_sync import keyring, review, view
    from client_sync import sync as syncing
    from client_sync.replica import open_replica

    prof = Profile.open(ws.admin_home, PASS)

    def timed(fn: Any, times: int = repeats) -> float:
        runs = []
        for _ in range(times):
            started = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - started)
        return kit.median(runs)

    def on_replica(fn: Any) -> Any:
        def go() -> None:
            replica = open_replica(prof)
            assert replica is not None
            try:
                fn(replica)
            finally:
                replica.close()

        return go

    def listing(replica: Any) -> None:
        for rec in view.iter_records(replica):
            json.dumps(rec.as_json(), ensure_ascii=False, indent=2)

    out = {
        "show_op_s": timed(on_replica(lambda r: review.record_detail(r, target))),
        "conflicts_op_s": timed(on_replica(review.conflict_queue)),
        "records_op_s": timed(on_replica(listing), 1),
    }
    vol = ws.env(ws.cli_home)
    runs = []
    for _ in range(repeats):
        kit.fieldsync(
            "add", "picket", "--set", "place=One more square", "--set", "date=2026-12-05", env=vol
        )
        kit.fieldsync("sync", env=vol)
        started = time.perf_counter()
        _, got, _ = syncing.sync(prof, keyring.client_for(prof))
        runs.append(time.perf_counter() - started)
        assert got is not None and got.bundles == 1, got
    prof.save()
    out["sync_one_op_s"] = kit.median(runs)
    return out


def open_rates(ws: Workspace, count: int) -> dict[str, float]:
    """One core's `open_bundle` and `open_one` (what a worker does), then `open_one` on every
    core in the pull's process pool and in threads, over the same bundles in memory."""
    bundles = seal_range((str(ws.homes[0]), 10**7, 10**7 + count, count, 10**6, ZERO_HASH))
    prof, log = ws.admin, ws.admin.log()
    keys = Keys.of(log, prof.epoch_keys(), prof.tag_key)
    public = log.devices[bundles[0].device_id].sign_pub
    sample = bundles[: max(50, count // 10)]
    started = time.perf_counter()
    for b in sample:
        crypto.open_bundle(b, public, keys.epoch_keys, keys.tag_key)
    core_rate = len(sample) / (time.perf_counter() - started)
    started = time.perf_counter()
    for b in sample:
        open_one(b, keys)
    one_rate = len(sample) / (time.perf_counter() - started)
    with Opener(keys) as opener:
        opener.start(bundles[:100]).results()  # the pool starts
        started = time.perf_counter()
        opener.start(bundles).results()
        pool_rate = count / (time.perf_counter() - started)
    with ThreadPoolExecutor(kit.cores()) as threads:
        started = time.perf_counter()
        list(threads.map(lambda b: open_one(b, keys), bundles))
        thread_rate = count / (time.perf_counter() - started)
    return {"open_bundle_one_core_per_s": core_rate, "open_one_core_per_s": one_rate,
            "open_pool_per_s": pool_rate, "open_threads_per_s": thread_rate}  # fmt: skip


def run(quick: bool = False) -> dict[str, float]:
    sizes = QUICK_SIZES if quick else SIZES
    repeats = 1 if quick else 3
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="fieldsync-coordinator-") as tmp:
        ws = Workspace(Path(tmp))
        try:
            salt = os.urandom(16)
            started = time.perf_counter()
            for _ in range(3):
                derive_key(PASS, salt, DEFAULT_COST)
            out["argon2id_s"] = (time.perf_counter() - started) / 3
            for i, size in enumerate(sizes):
                ws.grow(size, sizes[-1])
                out[f"size_{i}"] = float(size)
                held = size + 2 * repeats * i  # and the single records of the stages before
                for key, value in measure_size(ws, size, held, Path(tmp), repeats).items():
                    out[f"{key}_{i}"] = value
            # Start-up last, the server idle: ten runs, the median and the fastest.
            helps = [kit.fieldsync("--help", env=ws.env(ws.cli_home)).wall for _ in range(10)]
            out["help_s"], out["help_min_s"] = kit.median(helps), min(helps)
            out.update(open_rates(ws, 400 if quick else 3000))
            assert "Traceback" not in ws.server.log_text()
        finally:
            ws.server.stop()
            shutil.rmtree(tmp, ignore_errors=True)
    last = len(sizes) - 1
    out["first_pull_per_s"] = out[f"size_{last}"] / out[f"first_sync_s_{last}"]
    out["first_pull_over_cores_open"] = out["first_pull_per_s"] / (
        kit.cores() * out["open_bundle_one_core_per_s"]
    )
    for cmd in ("sync_one", "show", "conflicts", "records"):
        # The command's own work, timed in-process (start-up and unlock excluded).
        out[f"{cmd}_growth_{last}"] = out[f"{cmd}_op_s_{last}"] / out[f"{cmd}_op_s_0"]
        if cmd == "records":  # per record printed
            out[f"{cmd}_growth_{last}"] *= sizes[0] / sizes[last]
    return out


COMMANDS = [
    ("first `sync` (pull, verify, open, merge everything)", "first_sync"),
    ("`sync` with one new record", "sync_one"),
    ("`records --format json` (every record)", "records"),
    ("`show ID`", "show"),
    ("`conflicts` (none open)", "conflicts"),
    ("fixed cost: a volunteer's `status` (start-up, Argon2id unlock)", "fixed"),
]


def tables(f: dict[str, float]) -> dict[str, str]:
    n = sum(1 for k in f if k.startswith("size_"))
    sizes = [int(f[f"size_{i}"]) for i in range(n)]
    last = n - 1
    head = ["coordinator's command", *(f"{s:,} records" for s in sizes)]
    wall, memory = [], []
    for label, key in COMMANDS:
        wall.append([label, *(f"{f[f'{key}_s_{i}']:.2f} s" for i in range(n))])
        memory.append([label, *(f"{f[f'{key}_peak_mib_{i}']:.0f} MiB" for i in range(n))])
    wall.append(["profile on disk", *(f"{f[f'profile_mib_{i}']:.1f} MiB" for i in range(n))])
    growth = [
        [
            label,
            f"{f[f'{key}_op_s_0'] * 1000:.1f} ms",
            f"{f[f'{key}_op_s_{last}'] * 1000:.1f} ms",
            f"{f[f'{key}_growth_{last}']:.2f} ×",
            aim,
        ]
        for label, key, aim in [
            ("`sync` with one new record", "sync_one", "≤ 1.2 ×"),
            ("`show ID`", "show", "≤ 1.2 ×"),
            ("`conflicts`", "conflicts", "≤ 1.2 ×"),
            ("`records` (all; the growth is per record printed)", "records", "≤ 1 ×"),
        ]
    ]
    cores = kit.cores()
    pull = [
        [f"first `sync` of {sizes[last]:,} records", kit.num(f["first_pull_per_s"])],
        ["`open_bundle`, one core", kit.num(f["open_bundle_one_core_per_s"])],
        [f"`open_bundle` × {cores} cores", kit.num(cores * f["open_bundle_one_core_per_s"])],
        ["a pull's worker per bundle (`open_one`: open, JSON, sort key, schema), one core",
         kit.num(f["open_one_core_per_s"])],
        [f"`open_one` in the pull's pool of {cores} processes", kit.num(f["open_pool_per_s"])],
        [f"`open_one` in {cores} threads (the GIL is not released)",
         kit.num(f["open_threads_per_s"])],
    ]  # fmt: skip
    startup = [
        ["`fieldsync --help` (median of 10; fastest)",
         f"{f['help_s']:.3f} s; {f['help_min_s']:.3f} s", "< 0.15 s"],
        ["Argon2id unlock (64 MiB, 3 passes), in-process", f"{f['argon2id_s']:.3f} s", ""],
        ["fixed cost of a command without the unlock (volunteer `status` − Argon2id)",
         f"{f[f'fixed_s_{last}'] - f['argon2id_s']:.3f} s", "< 0.3 s"],
    ]  # fmt: skip
    ratio = f["first_pull_over_cores_open"]
    return {
        "coordinator": kit.table(head, wall)
        + "\n\nPeak memory (the largest process of the command, its pool workers included):\n\n"
        + kit.table(head, memory)
        + "\n\nWhat each command does once unlocked (open the replica, work, close),"
        " timed in-process, and its growth:\n\n"
        + kit.table(
            [
                "command",
                f"{sizes[0]:,} records",
                f"{sizes[last]:,} records",
                "growth",
                "aim (issue 10)",
            ],
            growth,
        ),
        "first-pull": kit.table(["", "records (bundles)/s"], pull)
        + f"\n\nThe first pull reaches {ratio:.0%} of {cores} cores × one core's `open_bundle`"
        " (aim: 80 %).",
        "startup": kit.table(["", "this run", "aim"], startup),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    figures = run(args.quick)
    print(json.dumps(figures, indent=1))
    for text in tables(figures).values():
        print(text + "\n")


if __name__ == "__main__":
    main()
