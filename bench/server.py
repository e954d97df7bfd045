"""Server benchmark: push and pull through a real gunicorn on loopback, beside plain SQLite.

    .venv/bin/python bench/server.py [--bundles 8000] [--clients 4] [--big-cells 1000000]

One record of 6 fields per bundle (as a volunteer's phone seals it at capture),
250 bundles per push request, 4 pushing devices at once; a coordinator then
pulls everything in pages of 1000. The baseline, measured in the same run, is
plain sqlite3 (WAL, synchronous=FULL) inserting the same rows in the same
batches with no validation, and reading them back with one range scan per page.

Page latency: two more workspaces are filled directly through
`server.store.bundles.insert` (one bundle sealed once, then synthetic copies with
fresh ids: the server serves pages without re-verifying) to 10,000 and
1,000,000 cells, and pages of 200 bundles are read from the middle of each.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
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
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from servergun import BIN, Gunicorn  # noqa: E402
from serverkit import HttpTransport, Kit, Member  # noqa: E402

from protocol.encoding import b64e  # noqa: E402
from protocol.model import Bundle, Cell  # noqa: E402
from server.store import Paths, connect, write  # noqa: E402
from server.store import bundles as stored  # noqa: E402

FIELDS = 6
PER_REQUEST = 250


def record(i: int) -> dict[str, Any]:
    return {
        "date": f"2026-11-{1 + i % 28:02d}",
        "place": f"Tereldy Square, gate {i % 7}",
        "attended": 10 + i % 40,
        "police": "dispersed after forty minutes; three detained",
        "outcome": "fined under article 488",
        "source": "witness on site, reliability B",
    }


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


def bench_push(kit: Kit, port: int, outboxes: dict[str, tuple[Member, list[Bundle]]]) -> float:
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
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - start
    if errors:
        raise errors[0]
    return took


def bench_pull(kit: Kit, port: int, coord: Member, total: int, page: int, first: int = 0) -> float:
    reqs = []
    for since in range(first, first + total, page):
        path = kit.path("changes", f"since={since}&limit={page}")
        reqs.append((path, signed(kit, coord, "GET", path, b"")))
    client = Client(port)
    start = time.perf_counter()
    got = 0
    for path, headers in reqs:
        got += len(client.send("GET", path, headers, b"")["bundles"])
    took = time.perf_counter() - start
    assert got == total, (got, total)
    return took


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


def fill(data_dir: Path, ws: str, template: Bundle, cells: int) -> None:
    """Synthetic copies of one sealed bundle with fresh ids, written by the store itself."""
    conn = connect(Paths(data_dir).workspace_db(ws))
    n_bundles = cells // len(template.cells)
    change = stored.next_change(conn)
    done = 0
    while done < n_bundles:
        batch = []
        for _ in range(min(5000, n_bundles - done)):
            done += 1
            copy_cells = tuple(
                Cell(
                    b64e(secrets.token_bytes(16)),
                    c.field_tag,
                    b64e(secrets.token_bytes(32)),
                    c.hlc,
                    (),
                    c.ct,
                )
                for c in template.cells
            )
            b = Bundle(
                workspace=ws, bundle_id=b64e(secrets.token_bytes(16)), device_id=template.device_id,
                seq=done, prev=template.prev, epoch=1, key_commit=template.key_commit,
                cells=copy_cells, key_epoch=1, sealed_key=template.sealed_key, sig=template.sig,
            )  # fmt: skip
            batch.append((change, b, template.prev, stored.served_size(change, b)))
            change += 1
        with write(conn):
            heads = {c.cell_id for _, b, _, _ in batch for c in b.cells}
            stored.insert(conn, batch, heads, (), ())
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def page_latencies(kit: Kit, port: int, coord: Member, ws_bundles: int, runs: int) -> list[float]:
    client = Client(port)
    mid = ws_bundles // 3
    lat = []
    for i in range(runs):
        path = kit.path("changes", f"since={mid + (i % 5) * 100}&limit=200")
        headers = signed(kit, coord, "GET", path, b"")
        s = time.perf_counter()
        out = client.send("GET", path, headers, b"")
        lat.append(time.perf_counter() - s)
        assert len(out["bundles"]) == 200
    return lat


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundles", type=int, default=8000, help="records pushed per round")
    ap.add_argument("--rounds", type=int, default=3, help="medians are over this many rounds")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--big-cells", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="fieldsync-bench-"))
    data = tmp / "data"
    server = Gunicorn(data, workers=args.workers, log_dir=tmp / "logs")
    push_rates, pull_rates, push_cpu, pull_cpu, push_idle = [], [], [], [], []
    client_cpu: list[float] = []
    server_cores: list[float] = []
    base_push, base_pull, base_page = [], [], []
    per = args.bundles // args.clients
    total = per * args.clients
    try:
        server.start()
        assert server.proc is not None
        master = server.proc.pid
        kit = Kit.create(HttpTransport(server.url), code(data), seed=7)
        coord = kit.member("coordinator")
        for r in range(args.rounds):
            members = [kit.member("volunteer") for _ in range(args.clients)]
            t = time.perf_counter()
            outboxes = {
                m.device_id: (m, [kit.seal(m, record(i)) for i in range(per)]) for m in members
            }
            print(
                f"round {r + 1}: sealed {total} bundles in {time.perf_counter() - t:.1f} s"
                " (not timed)"
            )
            cpu = server_cpu(master)
            idle = machine_idle()
            mine = time.process_time()
            took = bench_push(kit, server.port, outboxes)
            push_cpu.append((server_cpu(master) - cpu) / total)
            client_cpu.append((time.process_time() - mine) / total)
            idle_after = machine_idle()
            push_idle.append((idle_after[0] - idle[0]) / max(1, idle_after[1] - idle[1]))
            # Cores the server had: its CPU seconds over the wall time of the push.
            server_cores.append(push_cpu[-1] * total / took)
            push_rates.append(total / took)
            cpu = server_cpu(master)
            took = bench_pull(kit, server.port, coord, total, 1000, first=r * total)
            pull_cpu.append((server_cpu(master) - cpu) / total)
            pull_rates.append(total / took)
            all_bundles = [b for _, box in outboxes.values() for b in box]
            bp, bl, bg = baseline(tmp / f"baseline{r}.sqlite", all_bundles, 1000)
            base_push.append(total / bp)
            base_pull.append(total / bl)
            base_page.append(bg)
            print(f"  push {push_rates[-1]:.0f}/s (plain sqlite {base_push[-1]:.0f}/s,"
                  f" machine idle {push_idle[-1]:.0%} during the push),"
                  f" pull {pull_rates[-1]:.0f}/s (plain sqlite {base_pull[-1]:.0f}/s)")  # fmt: skip

        small = Kit.create(HttpTransport(server.url), code(data), seed=8)
        big = Kit.create(HttpTransport(server.url), code(data), seed=9)
        readers = {}
        for k, cells in ((small, 10_000), (big, args.big_cells)):
            readers[cells] = (k, k.member("coordinator"))
            v = k.member("volunteer")
            template = k.seal(v, record(0))
            t = time.perf_counter()
            fill(data, k.workspace, template, cells)
            print(f"filled {cells} cells in {time.perf_counter() - t:.1f} s")
        # Interleaved, a few pages at a time, so load from elsewhere hits both alike.
        samples: dict[int, list[float]] = {10_000: [], args.big_cells: []}
        for _ in range(12):
            for cells, (k, c) in readers.items():
                samples[cells] += page_latencies(k, server.port, c, cells // FIELDS, 5)
        lat = {cells: statistics.median(v) for cells, v in samples.items()}
        log = server.log_text()
        assert "database is locked" not in log and "Traceback" not in log
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    med = statistics.median
    rows = [
        ("push records/s", med(push_rates), med(base_push)),
        ("pull records/s", med(pull_rates), med(base_pull)),
        ("server CPU per pushed record (us)", med(push_cpu) * 1e6, None),
        ("server CPU per pulled record (us)", med(pull_cpu) * 1e6, None),
        ("bench client CPU per pushed record (us)", med(client_cpu) * 1e6, None),
        ("cores the server got during push", med(server_cores), None),
        ("machine idle during push (%)", med(push_idle) * 100, None),
        ("page of 200 bundles, 10k cells (ms)", lat[10_000] * 1000, med(base_page) * 1000),
        (f"page of 200 bundles, {args.big_cells:,} cells (ms)", lat[args.big_cells] * 1000, None),
    ]
    print(
        f"\n{total} records of {FIELDS} fields per round, {args.rounds} rounds (medians),"
        f" {args.clients} clients, {args.workers} workers"
    )
    print(f"{'':40} {'fieldsync':>10} {'plain sqlite':>13}")
    for label, ours, base in rows:
        b = f"{base:13.1f}" if base is not None else f"{'':>13}"
        print(f"{label:40} {ours:10.1f} {b}")
    print(
        f"page latency ratio {args.big_cells:,} / 10,000 cells:"
        f" {lat[args.big_cells] / lat[10_000]:.2f}"
    )


if __name__ == "__main__":
    main()
