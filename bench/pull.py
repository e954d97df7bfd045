"""How long a coordinator takes to pull and decrypt 100,000 records, beside the raw rate
of the primitives it uses, measured in the same run.

    .venv/bin/python bench/pull.py                 # 100,000 records, prints the table
    .venv/bin/python bench/pull.py --write         # also fills docs/BENCHMARKS.md
    .venv/bin/python bench/pull.py --records 5000  # a quick look

A real `fieldsync-server run` on loopback; a workspace founded and four volunteers
enrolled through the real `fieldsync` command line; each volunteer's 25,000 records
(a picket of four fields each, one bundle per record, as captured) sealed with the
core and pushed through the server in batches of 500. Then the timed part:
`fieldsync sync` of the founding coordinator, a fresh process with an empty replica,
which pulls every change, verifies and opens every bundle, merges every cell and
seals the replica to disk. `records --format json` over the result is timed too.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305  # noqa: E402

from client_sync.demo import Device, start_server  # noqa: E402
from client_sync.profile import Profile  # noqa: E402
from client_sync.transport import Client  # noqa: E402
from protocol import crypto, hlc, keys  # noqa: E402
from protocol.encoding import b64d, b64e  # noqa: E402
from protocol.model import ZERO_HASH, CellInput  # noqa: E402
from protocol.padding import pad  # noqa: E402

PASS = "bench passphrase"
BATCH = 500


def seal_and_push(args: tuple[str, int, int]) -> float:
    """One volunteer: seal `count` records as a chain of bundles and push them."""
    home, count, offset = args
    prof = Profile.open(Path(home), PASS)
    log = prof.log()
    client = Client(prof.server, prof.workspace_id, prof.device_key, prof.device_id)
    key, tag_key = prof.device_key, prof.tag_key
    epoch, epoch_pub = log.current_epoch, log.current_epoch_public
    prev, stamp = ZERO_HASH, 0
    batch: list[dict[str, Any]] = []
    started = time.perf_counter()
    for n in range(count):
        record_id = b64e(os.urandom(16))
        stamp = hlc.tick(stamp, int(time.time() * 1000))
        values = {
            "date": f"2026-{1 + n % 12:02d}-{1 + n % 28:02d}",
            "place": f"Invented Square No. {offset + n}",
            "attendance": 10 + n % 90,
            "reliability": "high",
        }
        cells = [CellInput(record_id, "picket", f, v, stamp) for f, v in values.items()]
        bundle = crypto.seal_bundle(
            workspace=prof.workspace_id,
            device_key=key,
            seq=n + 1,
            prev=prev,
            epoch=epoch,
            epoch_public=epoch_pub,
            tag_key=tag_key,
            cells=cells,
            random=os.urandom,
        )
        prev = crypto.bundle_hash(bundle)
        batch.append(bundle.to_wire())
        if len(batch) == BATCH or n == count - 1:
            answer = client.post(f"/v1/w/{prof.workspace_id}/push", {"bundles": batch}, retry=True)
            bad = [r for r in answer["results"] if r["status"] == "rejected"]
            if bad:
                raise SystemExit(f"push rejected: {bad[0]}")
            batch = []
    return time.perf_counter() - started


def _rate(fn: Any, seconds: float = 1.0) -> float:
    """Operations per second of `fn`, the median of five runs of about `seconds` / 5."""
    runs = []
    for _ in range(5):
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 5:
            for _ in range(50):
                fn()
            n += 50
        runs.append(n / (time.perf_counter() - start))
    return statistics.median(runs)


def primitive_rates() -> dict[str, float]:
    epoch = keys.HpkeKeyPair.from_seed(os.urandom(keys.HPKE_PRIV_LEN))
    ws, bid = b64e(os.urandom(16)), b64e(os.urandom(16))
    sealed = b64d(crypto.seal_data_key(os.urandom(32), epoch.public_bytes, ws, 1, bid))
    info = crypto.data_key_info(ws, 1, bid)
    priv = keys.hpke_private_key(epoch.private_bytes)
    aead = ChaCha20Poly1305(os.urandom(32))
    nonce, ad = bytes(12), os.urandom(90)
    cell = aead.encrypt(nonce, pad(b'{"field":"place","type":"picket","value":"Invented"}'), ad)
    signer = keys.signing_key(os.urandom(32))
    public, message = keys.public_bytes(signer), os.urandom(200)
    signature = signer.sign(message)
    tag_key = os.urandom(32)
    stamp = hlc.pack(int(time.time() * 1000), 0)
    rid = b64e(os.urandom(16))
    cells = [
        CellInput(rid, "picket", f, v, stamp)
        for f, v in {"date": "2026-12-04", "place": "Invented Square No. 1", "attendance": 40,
                     "reliability": "high"}.items()
    ]  # fmt: skip
    bundle = crypto.seal_bundle(
        workspace=ws, device_key=signer, seq=1, prev=ZERO_HASH, epoch=1,
        epoch_public=epoch.public_bytes, tag_key=tag_key, cells=cells, random=os.urandom,
    )  # fmt: skip
    return {
        "HPKE open (ML-KEM-768+X25519, one data key)": _rate(
            lambda: keys.SUITE.decrypt(sealed, priv, info=info)
        ),
        "ChaCha20-Poly1305 open (one 64-byte cell)": _rate(lambda: aead.decrypt(nonce, cell, ad)),
        "Ed25519 verify (one bundle signature)": _rate(
            lambda: keys.verify_signature(public, signature, message)
        ),
        "crypto.open_bundle (4 cells: all of the above, checked)": _rate(
            lambda: crypto.open_bundle(bundle, public, {1: epoch.private_bytes}, tag_key)
        ),
    }


def run(records: int, devices: int) -> dict[str, Any]:
    env = {"FIELDSYNC_RETRIES": "6"}
    with tempfile.TemporaryDirectory(prefix="fieldsync-bench-") as tmp:
        root = Path(tmp)
        (root / "data").mkdir()
        server = start_server(root / "data", workers=2)
        try:
            admin = Device("admin", root / "admin", PASS, env=env)
            admin.run("init", "--server", server.url, "--workspace", "Bench",
                      "--code", server.workspace_code())  # fmt: skip
            homes = []
            for d in range(devices):
                vol = Device(f"v{d}", root / f"v{d}", PASS, env=env)
                vol.run("join", admin.run("invite").last)
                homes.append(str(vol.home))
            per = records // devices
            print(f"sealing and pushing {per * devices:,} records from {devices} devices …")
            started = time.perf_counter()
            with multiprocessing.get_context("fork").Pool(min(devices, 2)) as pool:
                pool.map(seal_and_push, [(h, per, d * per) for d, h in enumerate(homes)])
            build = time.perf_counter() - started
            print(f"  built in {build:.1f} s; now the coordinator pulls …")
            started = time.perf_counter()
            out = admin.run("sync", timeout=3600).out
            pull = time.perf_counter() - started
            pulled = int(re.search(r"pulled (\d+) new bundle", out).group(1))  # type: ignore[union-attr]
            started = time.perf_counter()
            listed = json.loads(admin.run("records", "--format", "json", timeout=3600).out)
            listing = time.perf_counter() - started
            replica_mb = (root / "admin" / "replica.sealed").stat().st_size / 2**20
        finally:
            server.stop()
    assert pulled == per * devices and len(listed) == pulled, (pulled, len(listed))
    return {
        "records": pulled,
        "build": build,
        "pull": pull,
        "listing": listing,
        "replica_mb": replica_mb,
        "primitives": primitive_rates(),
    }


def report(r: dict[str, Any]) -> str:
    n = r["records"]
    prim = r["primitives"]
    lines = [
        "Reproduce: `.venv/bin/python bench/pull.py --write` (a real server on loopback,",
        f"{n:,} records of four fields each, one bundle per record, from four volunteers).",
        "",
        "| what | time | rate |",
        "|---|---|---|",
        f"| `fieldsync sync`: pull, verify, open, merge {n:,} records, seal the replica"
        f" | {r['pull']:.1f} s | {n / r['pull']:,.0f} records/s |",
        f"| `fieldsync records --format json` over them | {r['listing']:.1f} s"
        f" | {n / r['listing']:,.0f} records/s |",
        f"| building them (seal with the core, push through the server, 2 processes)"
        f" | {r['build']:.1f} s | {n / r['build']:,.0f} records/s |",
        "",
        "Baseline, the primitives of one record in the same run (one core):",
        "",
        "| primitive | rate |",
        "|---|---|",
    ]
    for name, rate in prim.items():
        lines.append(f"| {name} | {rate:,.0f}/s |")
    bound = prim["crypto.open_bundle (4 cells: all of the above, checked)"]
    lines += [
        "",
        f"The pull runs at {n / r['pull'] / bound:.0%} of the core's own `open_bundle` rate:"
        " the rest is the HTTP pages, JSON, the merge and the SQLite replica"
        f" ({r['replica_mb']:.0f} MiB sealed on disk).",
    ]
    return "\n".join(lines) + "\n"


def write_section(text: str) -> None:
    path = ROOT / "docs" / "BENCHMARKS.md"
    doc = path.read_text(encoding="utf-8")
    heading = "## Coordinator pull"
    start = doc.index(heading)
    nl = doc.index("\n", start)
    nxt = doc.find("\n## ", nl)
    end = len(doc) if nxt == -1 else nxt + 1
    rest = doc[end:]
    new = doc[: nl + 1] + "\n" + text + ("\n" if rest else "") + rest
    path.write_text(new, encoding="utf-8")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--records", type=int, default=100_000)
    p.add_argument("--devices", type=int, default=4)
    p.add_argument("--write", action="store_true", help="fill docs/BENCHMARKS.md")
    args = p.parse_args()
    result = run(args.records, args.devices)
    text = report(result)
    print(text)
    if args.write:
        write_section(text)
        print("docs/BENCHMARKS.md updated")


if __name__ == "__main__":
    main()
