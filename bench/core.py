"""Benchmark of the pure core beside the primitives under it, measured in the same run.

    .venv/bin/python bench/core.py            # print the figures (`make bench` writes them)
    .venv/bin/python bench/core.py --quick    # a smoke run

Every figure is the median over `repeats` runs of `number` operations. The aims
(issue 2): sealing a 10-field record costs at most 2x one raw HPKE seal, and the
pure merge handles at least 2x the cells per second that SQLite can insert as
plain rows (file database, WAL, synchronous=FULL, one transaction, executemany).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.append(str(Path(__file__).resolve().parent))  # after the packages

import cryptography
import kit
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from protocol import crypto, hlc, keys
from protocol.encoding import b64e, labelled
from protocol.merge import CellMeta, merge
from protocol.model import ZERO_HASH, Bundle, CellInput
from protocol.padding import pad

NOW_MS = 1_795_600_000_000


@dataclass
class Setup:
    workspace: str
    device_key: Any
    device_public: bytes
    epoch: keys.HpkeKeyPair
    tag_key: bytes
    record: list[CellInput]
    bundle: Bundle


def record_cells(n_fields: int = 10, seed: bytes | None = None) -> list[CellInput]:
    """One picket as a volunteer types it: short texts and a few numbers. Invented values."""
    rid = b64e(seed or os.urandom(16))
    values: list[tuple[str, Any]] = [
        ("date", "2026-11-20"),
        ("date_precision", "exact"),
        ("place", "Test Square 7, by the east gate"),
        ("attendance", 23),
        ("police_action", "dispersed after twenty minutes; four detained"),
        ("outcome", "four taken to the district station"),
        ("description", "Relatives held photographs and read names aloud."),
        ("sources", "seen by the volunteer; two participants"),
        ("reliability", "high"),
        ("notes", "follow up with the families on Thursday"),
    ]
    while len(values) < n_fields:
        values.append((f"extra_{len(values)}", f"value {len(values)}"))
    stamp = hlc.pack(NOW_MS, 0)
    return [CellInput(rid, "picket", f, v, stamp + i) for i, (f, v) in enumerate(values[:n_fields])]


def make_setup(n_fields: int = 10) -> Setup:
    device_key = keys.signing_key(bytes(range(32)))
    epoch = keys.HpkeKeyPair.from_seed(bytes(range(96)))
    workspace = b64e(bytes(16))
    tag_key = bytes(32)
    record = record_cells(n_fields, b"bench record id!")
    bundle = seal(workspace, device_key, epoch, tag_key, record)
    return Setup(
        workspace, device_key, keys.public_bytes(device_key), epoch, tag_key, record, bundle
    )


def seal(
    workspace: str, device_key: Any, epoch: keys.HpkeKeyPair, tag_key: bytes, cells: Any
) -> Bundle:
    return crypto.seal_bundle(
        workspace=workspace,
        device_key=device_key,
        seq=1,
        prev=ZERO_HASH,
        epoch=1,
        epoch_public=epoch.public_bytes,
        tag_key=tag_key,
        cells=cells,
        random=os.urandom,
    )


def timed(fn: Callable[[], object], number: int, *, collect: bool = True) -> float:
    """Seconds per call of `fn` over one run of `number` calls.

    The heap that exists before the run (the benchmark's own inputs) is frozen, so
    the garbage collector charges `fn` for its own objects only; `collect=False`
    turns the collector off altogether, as `timeit` does.
    """
    gc.collect()
    gc.freeze()
    if not collect:
        gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        return (time.perf_counter() - start) / number
    finally:
        gc.enable()
        gc.unfreeze()


# Each benchmark returns a function that times one run and gives seconds per operation.
Bench = Callable[[], float]


# --- the core ---------------------------------------------------------------------


def bench_seal(s: Setup, number: int) -> Bench:
    return lambda: timed(
        lambda: seal(s.workspace, s.device_key, s.epoch, s.tag_key, s.record), number
    )


def bench_open(s: Setup, number: int) -> Bench:
    held = {1: s.epoch.private_bytes}
    return lambda: timed(
        lambda: crypto.open_bundle(s.bundle, s.device_public, held, s.tag_key), number
    )


def bench_verify(s: Setup, number: int) -> Bench:
    return lambda: timed(lambda: crypto.verify_bundle(s.bundle, s.device_public), number)


def merge_cells(n_cells: int) -> list[CellMeta]:
    """Cells as a server sees them: new 10-field records from 5 devices, and one cell in
    six an edit that supersedes the current head of an earlier register."""
    out: list[CellMeta] = []
    heads: list[tuple[str, str, str]] = []  # (record, tag, head cell id) of every register
    for i in range(n_cells):
        cid = b64e(i.to_bytes(32, "big"))
        device = b64e((i % 5).to_bytes(16, "big"))
        stamp = hlc.pack(NOW_MS, i)
        if i % 6 == 5 and heads:
            n = (i * 7919) % len(heads)
            record, tag, old = heads[n]
            heads[n] = (record, tag, cid)
            out.append(CellMeta(record, tag, cid, stamp, device, (old,), digest=cid))
            continue
        record = b64e((len(heads) // 10).to_bytes(16, "big"))
        tag = b64e(len(heads).to_bytes(16, "big"))
        heads.append((record, tag, cid))
        out.append(CellMeta(record, tag, cid, stamp, device, (), digest=cid))
    return out


def bench_merge(cells: list[CellMeta], *, collect: bool = True) -> Bench:
    """Per cell: fold all of `cells` into an empty state in one batch."""
    return lambda: timed(lambda: merge({}, cells), 1, collect=collect) / len(cells)


# --- the primitives under it ------------------------------------------------------


def bench_hpke_seal(s: Setup, number: int) -> Bench:
    public = keys.hpke_public_key(s.epoch.public_bytes)
    info = crypto.data_key_info(s.workspace, 1, s.bundle.bundle_id)
    return lambda: timed(lambda: keys.SUITE.encrypt(bytes(32), public, info=info), number)


def bench_hpke_open(s: Setup, number: int) -> Bench:
    private = keys.hpke_private_key(s.epoch.private_bytes)
    info = crypto.data_key_info(s.workspace, 1, s.bundle.bundle_id)
    sealed = keys.SUITE.encrypt(bytes(32), keys.hpke_public_key(s.epoch.public_bytes), info=info)
    return lambda: timed(lambda: keys.SUITE.decrypt(sealed, private, info=info), number)


def bench_aead_cell(s: Setup, number: int) -> Bench:
    encrypt = ChaCha20Poly1305(bytes(32)).encrypt
    plain = pad(crypto.encode_value("picket", "place", "Test Square 7, by the east gate"))
    ad, nonce = bytes(119), bytes(12)  # a cell's AD without supersedes is 119 bytes
    return lambda: timed(lambda: encrypt(nonce, plain, ad), number)


def bench_sign(s: Setup, number: int) -> Bench:
    message = labelled(crypto.L_BUNDLE_SIG, s.bundle.header())
    return lambda: timed(lambda: s.device_key.sign(message), number)


def bench_verify_sig(s: Setup, number: int) -> Bench:
    message = labelled(crypto.L_BUNDLE_SIG, s.bundle.header())
    sig = s.device_key.sign(message)
    public = s.device_key.public_key()
    return lambda: timed(lambda: public.verify(sig, message), number)


def bench_sqlite(cells: list[CellMeta], directory: Path) -> Bench:
    """Per row: insert `cells` as plain rows in one transaction and commit (fsync included)."""
    rows = [
        (c.record_id, c.field_tag, c.cell_id, c.hlc, c.device_id, ",".join(c.supersedes), c.digest)
        for c in cells
    ]
    runs = iter(range(1_000_000))

    def once() -> float:
        db = sqlite3.connect(directory / f"bench-{next(runs)}.db", isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute(
                "CREATE TABLE cells (record_id TEXT, field_tag TEXT, cell_id TEXT, hlc INTEGER,"
                " device_id TEXT, supersedes TEXT, digest TEXT)"
            )
            start = time.perf_counter()
            db.execute("BEGIN")
            db.executemany("INSERT INTO cells VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            db.execute("COMMIT")
            return (time.perf_counter() - start) / len(rows)
        finally:
            db.close()

    return once


# --- one run ---------------------------------------------------------------------


def measure(number: int, repeats: int, merge_size: int) -> dict[str, float]:
    """Seconds per operation (merge and SQLite: per cell), the median of `repeats` rounds.
    Each round times every benchmark once, so that a burst of load on a shared machine
    hits a figure and its baseline alike."""
    s = make_setup()
    cells = merge_cells(merge_size)
    with tempfile.TemporaryDirectory() as tmp:
        benches: dict[str, Bench] = {
            "seal": bench_seal(s, number),
            "hpke_seal": bench_hpke_seal(s, number),
            "open": bench_open(s, number),
            "hpke_open": bench_hpke_open(s, number),
            "verify": bench_verify(s, number),
            "aead_cell": bench_aead_cell(s, number * 10),
            "ed25519_sign": bench_sign(s, number),
            "ed25519_verify": bench_verify_sig(s, number),
            "merge_cell": bench_merge(cells),
            "merge_cell_nogc": bench_merge(cells, collect=False),
            "sqlite_row": bench_sqlite(cells, Path(tmp)),
        }
        for bench in benches.values():
            bench()  # warm up: parsed keys, caches, the page cache
        runs: dict[str, list[float]] = {name: [] for name in benches}
        for _ in range(repeats):
            for name, bench in benches.items():
                runs[name].append(bench())
    return {name: statistics.median(values) for name, values in runs.items()}


def run(
    quick: bool = False,
    *,
    number: int | None = None,
    repeats: int | None = None,
    merge_size: int | None = None,
) -> dict[str, float]:
    """The figures for `bench/run.py`: microseconds per operation (`*_us`) and the ratios
    to the baselines measured in the same rounds."""
    r = measure(
        number or (50 if quick else 2000),
        repeats or (2 if quick else 5),
        merge_size or (2000 if quick else 50_000),
    )
    out = {f"{name}_us": seconds * 1e6 for name, seconds in r.items()}
    out["seal_over_hpke_seal"] = r["seal"] / r["hpke_seal"]
    out["open_over_hpke_open"] = r["open"] / r["hpke_open"]
    out["merge_over_sqlite_insert"] = r["sqlite_row"] / r["merge_cell"]
    out["seal_beyond_primitives_us"] = (
        r["seal"] - r["hpke_seal"] - r["ed25519_sign"] - 10 * r["aead_cell"]
    ) * 1e6
    return out


ROWS = [
    ("`seal_bundle`, 10-field record", "seal", "records/s"),
    ("`open_bundle`, 10-field record", "open", "records/s"),
    ("`verify_bundle`, 10-field record", "verify", "records/s"),
    ("merge, pure (per cell)", "merge_cell", "cells/s"),
    ("merge, pure, garbage collector off", "merge_cell_nogc", "cells/s"),
    ("raw HPKE seal of 32 bytes (`keys.SUITE.encrypt`)", "hpke_seal", "seals/s"),
    ("raw HPKE open", "hpke_open", "opens/s"),
    ("ChaCha20-Poly1305 of one cell", "aead_cell", "cells/s"),
    ("Ed25519 sign", "ed25519_sign", "signatures/s"),
    ("Ed25519 verify", "ed25519_verify", "verifications/s"),
    ("SQLite insert of the same rows (WAL, `synchronous=FULL`, 1 transaction)", "sqlite_row",
     "rows/s"),
]  # fmt: skip


def tables(f: dict[str, float]) -> dict[str, str]:
    rows = [[name, kit.num(f[f"{key}_us"], 2), f"{kit.num(1e6 / f[f'{key}_us'])} {unit}"]
            for name, key, unit in ROWS]  # fmt: skip
    ratios = [
        ["seal ÷ raw HPKE seal", f"{f['seal_over_hpke_seal']:.2f} ×", "≤ 2 × (issue 2)"],
        ["open ÷ raw HPKE open", f"{f['open_over_hpke_open']:.2f} ×", ""],
        ["SQLite insert ÷ merge (per cell)", f"{f['merge_over_sqlite_insert']:.2f} ×",
         "≥ 2 × (issue 2)"],
        ["seal beyond its primitives (HPKE + sign + 10 AEAD)",
         f"{f['seal_beyond_primitives_us']:.0f} µs", ""],
    ]  # fmt: skip
    return {
        "core": kit.table(["operation", "µs each", "rate"], rows)
        + "\n\n"
        + kit.table(["ratio (same rounds)", "this run", "aim"], ratios)
    }


def report(figures: dict[str, float]) -> str:
    return tables(figures)["core"]


def environment() -> str:
    return (
        f"Python {platform.python_version()}, cryptography {cryptography.__version__}, "
        f"SQLite {sqlite3.sqlite_version}, {kit.cpu_model()}, {kit.cores()} cores"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--number", type=int, help="operations per timed run")
    parser.add_argument("--repeats", type=int, help="timed runs; the median is kept")
    parser.add_argument("--merge-size", type=int, help="cells per merge run")
    parser.add_argument("--quick", action="store_true", help="a few operations, for a smoke run")
    args = parser.parse_args(argv)
    print(environment())
    figures = run(args.quick, number=args.number, repeats=args.repeats, merge_size=args.merge_size)
    print(report(figures))


if __name__ == "__main__":
    main()
