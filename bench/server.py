"""Server benchmark: push and pull through a real gunicorn on loopback, beside plain SQLite.

    .venv/bin/python bench/server.py [--quick]      # print the figures (`make bench` writes them)

One record of 6 fields per bundle (as a volunteer's phone seals it at capture),
250 bundles per push request. For 1, 8 and 32 writers at once (each its own device
and keep-alive connection), 8,000 records are pushed; as many coordinators then pull
them at once, each its share of the pages (1,000 bundles a page). The baseline, in the
same round, is plain sqlite3 (WAL, synchronous=FULL) inserting the same rows in the
same batches with no validation (one writer: SQLite has one), and reading them back
with one range scan per page. Bytes on the wire are the request and answer bodies
with the signature headers. The server's CPU per record is that of the gunicorn
master and workers from /proc, during the push only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.append(str(ROOT / "bench"))  # after the packages: bench/server.py is no `server`

import kit as bench_kit  # noqa: E402
import pushstages  # noqa: E402
from servergun import BIN, Gunicorn  # noqa: E402
from serverkit import HttpTransport, Kit, Member  # noqa: E402

from protocol import crypto, keys  # noqa: E402
from protocol.encoding import b64e  # noqa: E402
from protocol.model import Bundle  # noqa: E402

# One record of 6 fields per bundle, 250 bundles a request: the same as the breakdown's.
PER_REQUEST, record = pushstages.PER_REQUEST, pushstages.record


class Client:
    """One keep-alive HTTP connection that sends pre-signed requests."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def send(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
        self.conn.request(method, path, body=body or None, headers=headers)
        resp = self.conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{resp.status}: {data[:300]!r}")
        return json.loads(data)


def signed(kit: Kit, member: Member, method: str, path: str, body: bytes) -> dict[str, str]:
    return kit.signed_headers(method, path, member, body, nonce=b64e(os.urandom(16)))


def bench_push(
    kit: Kit, port: int, outboxes: dict[str, tuple[Member, list[Bundle]]]
) -> tuple[float, int, float]:
    """Each device pushes its bundles on its own connection, all at once: (seconds, bytes
    of the request bodies and their signature headers, CPU seconds of this process, the
    clients, while they push: the requests are signed before)."""
    path = kit.path("push")
    plans: list[list[tuple[dict[str, str], bytes]]] = []
    for member, box in outboxes.values():
        reqs = []
        for i in range(0, len(box), PER_REQUEST):
            body = json.dumps({"bundles": [b.to_wire() for b in box[i : i + PER_REQUEST]]}).encode()
            reqs.append((signed(kit, member, "POST", path, body), body))
        plans.append(reqs)
    errors: list[BaseException] = []

    def run(reqs: list[tuple[dict[str, str], bytes]]) -> None:
        try:
            client = Client(port)
            for headers, body in reqs:
                out = client.send("POST", path, headers, body)
                assert {r["status"] for r in out["results"]} == {"accepted"}
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(p,)) for p in plans]
    sent = sum(
        len(body) + sum(len(k) + len(v) for k, v in h.items()) for p in plans for h, body in p
    )
    start, cpu = time.perf_counter(), time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took, cpu = time.perf_counter() - start, time.process_time() - cpu
    if errors:
        raise errors[0]
    return took, sent, cpu


BASE_DDL = """
CREATE TABLE bundles (change INTEGER PRIMARY KEY, bundle_id TEXT, device_id TEXT, seq INTEGER,
  prev TEXT, epoch INTEGER, key_epoch INTEGER, key_commit TEXT, sealed_key TEXT, sig TEXT);
CREATE TABLE cells (bundle_change INTEGER, idx INTEGER, cell_id TEXT, record_id TEXT,
  field_tag TEXT, hlc INTEGER, supersedes TEXT, ct TEXT, PRIMARY KEY (bundle_change, idx))
  WITHOUT ROWID;
"""


def baseline(path: Path, bundles: list[Bundle], page: int) -> tuple[float, float, float]:
    """Plain sqlite3: insert the same rows in the same batches, then page them back."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.executescript(BASE_DDL)
    start = time.perf_counter()
    change = 0
    for i in range(0, len(bundles), PER_REQUEST):
        db.execute("BEGIN IMMEDIATE")
        brows, crows = [], []
        for b in bundles[i : i + PER_REQUEST]:
            change += 1
            brows.append(
                (change, b.bundle_id, b.device_id, b.seq, b.prev, b.epoch, b.key_epoch,
                 b.key_commit, b.sealed_key, b.sig)
            )  # fmt: skip
            crows += [
                (change, j, c.cell_id, c.record_id, c.field_tag, c.hlc, "[]", c.ct)
                for j, c in enumerate(b.cells)
            ]
        db.executemany("INSERT INTO bundles VALUES (?,?,?,?,?,?,?,?,?,?)", brows)
        db.executemany("INSERT INTO cells VALUES (?,?,?,?,?,?,?,?)", crows)
        db.execute("COMMIT")
    push = time.perf_counter() - start
    start = time.perf_counter()
    for since in range(0, change, page):
        db.execute(
            "SELECT * FROM bundles WHERE change > ? ORDER BY change LIMIT ?", (since, page)
        ).fetchall()
        db.execute(
            "SELECT * FROM cells WHERE bundle_change > ? AND bundle_change <= ?",
            (since, since + page),
        ).fetchall()
    pull = time.perf_counter() - start
    mid = change // 2
    lat = []
    for _ in range(20):
        s = time.perf_counter()
        db.execute(
            "SELECT * FROM bundles WHERE change > ? ORDER BY change LIMIT 200", (mid,)
        ).fetchall()
        db.execute(
            "SELECT * FROM cells WHERE bundle_change > ? AND bundle_change <= ?", (mid, mid + 200)
        ).fetchall()
        lat.append(time.perf_counter() - s)
    db.close()
    return push, pull, statistics.median(lat)


def code(data_dir: Path) -> str:
    return subprocess.run(
        [str(BIN), "workspace-code", "--data-dir", str(data_dir)],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


def server_cpu(master: int) -> float:
    """CPU seconds (user + system) used so far by the gunicorn master and its workers."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(stat.parent.name), int(fields[1])
        if pid == master or ppid == master:
            total += int(fields[11]) + int(fields[12])
    return total / tick


def machine_idle() -> tuple[int, int]:
    """(idle, total) jiffies of the whole machine from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return fields[3] + fields[4], sum(fields)


def _pull_shares(
    kit: Kit, port: int, readers: list[Member], first: int, total: int
) -> tuple[float, int]:
    """`readers` coordinators pull the `total` bundles after change `first` at once, each
    a contiguous share, page after page as the server's cursor leads (pages of at most
    1,000 bundles; the server may send fewer): (seconds, bytes of answer bodies)."""
    bounds = [first + total * i // len(readers) for i in range(len(readers) + 1)]
    got, size, errors = [0], [0], []

    def read(member: Member, since: int, until: int) -> None:
        try:
            client = Client(port)
            while since < until:
                limit = min(1000, until - since)
                path = kit.path("changes", f"since={since}&limit={limit}")
                client.conn.request("GET", path, headers=signed(kit, member, "GET", path, b""))
                resp = client.conn.getresponse()
                data = resp.read()
                assert resp.status == 200, data[:200]
                page = json.loads(data)
                size[0] += len(data)
                got[0] += sum(1 for b in page["bundles"] if b["change"] <= until)
                if page["done"] or not page["bundles"]:
                    break
                since = page["next"]
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=read, args=(m, bounds[i], bounds[i + 1]))
        for i, m in enumerate(readers)
    ]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - start
    if errors:
        raise errors[0]
    assert got[0] == total, (got[0], total)
    return took, size[0]


WRITERS = (1, 8, 32)


def run(quick: bool = False) -> dict[str, float]:
    total = 800 if quick else 8000
    workers = 2 * bench_kit.cores()
    tmp = Path(tempfile.mkdtemp(prefix="fieldsync-bench-"))
    data = tmp / "data"
    server = Gunicorn(data, workers=workers, log_dir=tmp / "logs")
    out: dict[str, float] = {"server_workers": float(workers), "records_per_round": float(total)}
    # The machine is shared: its load beside the figures says how far to trust them.
    out["load_average_before"] = os.getloadavg()[0]
    first = 0
    try:
        server.start()
        assert server.proc is not None
        master = server.proc.pid
        kit = Kit.create(HttpTransport(server.url), code(data), seed=7)
        for w in WRITERS:
            members = [kit.member("volunteer") for _ in range(w)]
            readers = [kit.member("coordinator") for _ in range(w)]
            per = total // w
            outboxes = {
                m.device_id: (m, [kit.seal(m, record(i)) for i in range(per)]) for m in members
            }
            n = per * w
            cpu = server_cpu(master)
            took, sent, client = bench_push(kit, server.port, outboxes)
            out[f"push_{w}_writers_per_s"] = n / took
            out[f"push_{w}_writers_server_cpu_us"] = (server_cpu(master) - cpu) / n * 1e6
            out[f"push_{w}_writers_client_cpu_us"] = client / n * 1e6
            out[f"push_{w}_writers_bytes_per_record"] = sent / n
            took, size = _pull_shares(kit, server.port, readers, first, n)
            first += n
            out[f"pull_{w}_readers_per_s"] = n / took
            out[f"pull_{w}_readers_bytes_per_record"] = size / n
            bundles = [b for _, box in outboxes.values() for b in box]
            bp, bl, _ = baseline(tmp / f"baseline{w}.sqlite", bundles, 1000)
            out[f"sqlite_insert_{w}_per_s"] = n / bp
            out[f"sqlite_read_{w}_per_s"] = n / bl
        log = server.log_text()
        assert "database is locked" not in log and "Traceback" not in log
        sample = bundles[:200]
        public = {m.device_id: keys.public_bytes(m.key) for m, _ in outboxes.values()}
        started = time.perf_counter()
        for b in sample:
            crypto.verify_bundle(b, public[b.device_id])
        out["verify_bundle_us"] = (time.perf_counter() - started) / len(sample) * 1e6
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    out["load_average_after"] = os.getloadavg()[0]
    out.update(breakdown(quick))
    return out


def breakdown(quick: bool) -> dict[str, float]:
    """Where the push's CPU per record goes, in-process (bench/pushstages.py), beside raw
    Ed25519 verification of the same signatures in the same run."""
    f = pushstages.run(bundles=800 if quick else 4000, writers=8)
    out = {
        "inprocess_push_cpu_us": f["push_cpu_us_per_record"],
        "inprocess_timed_cpu_us": f["timed_cpu_us_per_record"],
        "raw_ed25519_verify_us": f["raw_ed25519_verify_us"],
        "inprocess_verify_bundle_us": f["verify_bundle_us"],
    }
    for group, us in pushstages.grouped(f["stages_us_per_record"]).items():
        out[f"stage_{group}_us"] = us
    return out


STAGE_ROWS = [
    ("ed25519", "Ed25519 verification of the bundle's signature (the floor)"),
    ("bundle_checks", "the rest of `verify_bundle` (cell ids: base64, SHA-256; header) and the"
     " bundle's hash, workspace, device, epoch and clock checks"),
    ("parse", "`parse_json` and the fast loader of the wire schema"),
    ("merge", "the merge (`fold`), cell metas, chain and quota checks"),
    ("sql", "SQL: stored bundles by id and seq, the merge's view, the inserts"),
    ("commit", "write lock, BEGIN IMMEDIATE, COMMIT (WAL, fsync, checkpoints)"),
    ("per_request", "per request (÷ 250): request signature, nonce, slot, body, digest, answer"),
    ("rest", "garbage collection, Flask, the timers"),
]  # fmt: skip


def tables(f: dict[str, float]) -> dict[str, str]:
    num = bench_kit.num
    rows = [
        [f"{w}", num(f[f"push_{w}_writers_per_s"]), num(f[f"sqlite_insert_{w}_per_s"]),
         num(f[f"push_{w}_writers_server_cpu_us"]), num(f[f"push_{w}_writers_client_cpu_us"]),
         num(f[f"pull_{w}_readers_per_s"]), num(f[f"sqlite_read_{w}_per_s"])]
        for w in WRITERS
    ]  # fmt: skip
    wire = [
        [f"{w}", num(f[f"push_{w}_writers_bytes_per_record"]),
         num(f[f"pull_{w}_readers_bytes_per_record"])]
        for w in WRITERS
    ]  # fmt: skip
    header = [
        "writers (and readers) at once",
        "push, records/s",
        "plain SQLite insert, rows/s",
        "server CPU per pushed record, µs",
        "the clients' CPU, µs",
        "pull, records/s",
        "plain SQLite read, rows/s",
    ]
    verify = f"`verify_bundle` of one such bundle, in one process: {f['verify_bundle_us']:.0f} µs."
    timed = f["inprocess_timed_cpu_us"]
    stages = [
        [label, num(f[f"stage_{key}_us"]), f"{f[f'stage_{key}_us'] / timed:.0%}"]
        for key, label in STAGE_ROWS
    ]
    stages.append(["total (timed; untimed: " + num(f["inprocess_push_cpu_us"]) + ")",
                   num(timed), "100%"])  # fmt: skip
    cpu8 = f["push_8_writers_server_cpu_us"] + f["push_8_writers_client_cpu_us"]
    load = (
        f"Load average of the machine (1 min) before and after the gunicorn rounds:"
        f" {f['load_average_before']:.1f}, {f['load_average_after']:.1f}"
        f" ({bench_kit.cores()} cores). With 8 writers the server and its clients spend"
        f" {cpu8:.0f} µs of CPU a record: {bench_kit.cores() * 1e6 / cpu8:,.0f} records/s"
        f" if they had the cores to themselves. Raw `Ed25519PublicKey.verify` in the same"
        f" run: {f['raw_ed25519_verify_us']:.0f} µs."
    )
    return {
        "server": bench_kit.table(header, rows)
        + "\n\n"
        + bench_kit.table(["writers", "bytes on the wire per record pushed", "pulled"], wire)
        + "\n\n"
        + verify
        + "\n\n"
        + bench_kit.table(
            ["server CPU per pushed record, in-process (8 devices)", "µs", "share"], stages, "lrr"
        )
        + "\n\n"
        + load
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    figures = run(args.quick)
    print(json.dumps(figures, indent=1))
    print(tables(figures)["server"])


if __name__ == "__main__":
    main()
