"""Re-key: 10,000 stored bundles re-sealed to a new epoch end to end, beside the raw HPKE
open + seal rate measured in the same run.

    .venv/bin/python bench/rekey.py                  # 10,000 bundles, 3 rounds
    .venv/bin/python bench/rekey.py --bundles 500    # a quick look
    make bench                                       # writes docs/BENCHMARKS.md

A real `fieldsync-server run` on loopback (4 gunicorn workers). The workspace is
founded with the client's own code (`client_sync.enrol.init`); its founder, an
admin coordinator, is the device of every bundle. The bundles (one picket record of
four fields each, one bundle per record, as captured) are sealed with the core to
epoch 1 and, to save the time of pushing them, stored through the server's own
push judgement (`server.ingest.push` in this process, on the workspace file: the
signature, chain and merge checks a push runs, without HTTP).

Each round the admin rotates (`keyring.rotate`) and then the timed part runs:
`client_sync.rekey.rekey`, the code of `fieldsync rotate --rekey`, which pages
through `GET /rekey`, opens each data key with the old epoch key and seals it to
the new one, and posts each page (one server transaction per page) while it
re-seals the next. The baseline, in the
same round: `protocol.keys.SUITE` (ML-KEM-768 + X25519) decrypt then encrypt of a
32-byte key, the HPKE work a re-key cannot avoid. Medians over the rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.append(str(ROOT / "bench"))  # after the packages: bench/server.py is no `server`

import kit  # noqa: E402
from servergun import Gunicorn  # noqa: E402

from client_sync import enrol, keyring  # noqa: E402
from client_sync import rekey as rekeying  # noqa: E402
from client_sync.profile import Profile  # noqa: E402
from client_sync.transport import Client  # noqa: E402
from protocol import crypto, hlc, keys  # noqa: E402
from protocol.encoding import b64e  # noqa: E402
from protocol.model import ZERO_HASH, Bundle, CellInput  # noqa: E402
from server import ingest  # noqa: E402
from server.store import Paths, connect, server_db  # noqa: E402
from server.store import keylog as stored_log  # noqa: E402

PASS = "bench passphrase"
BATCH = 500


def found(home: Path, url: str, data_dir: Path) -> tuple[Profile, Client]:
    """A new workspace on the server at `url`, founded by the client's own code."""
    code = server_db.new_code(Paths(data_dir), int(time.time()))
    home.mkdir(mode=0o700, parents=True)
    prof = enrol.init(home, PASS, url, "Re-key bench", code)
    return prof, keyring.client_for(prof)


def seal(prof: Profile, count: int) -> list[Bundle]:
    """`count` one-record captures by the profile's device, chained, sealed to its epoch."""
    log = prof.log()
    prev, stamp, out = ZERO_HASH, 0, []
    for n in range(count):
        stamp = hlc.tick(stamp, int(time.time() * 1000))
        record_id = b64e(os.urandom(16))
        values = {"date": "2026-12-04", "place": f"Invented Gate {n}", "attendance": 10 + n % 90,
                  "reliability": "high"}  # fmt: skip
        bundle = crypto.seal_bundle(
            workspace=prof.workspace_id, device_key=prof.device_key, seq=n + 1, prev=prev,
            epoch=log.current_epoch, epoch_public=log.current_epoch_public, tag_key=prof.tag_key,
            cells=[CellInput(record_id, "picket", f, v, stamp) for f, v in values.items()],
            random=os.urandom,
        )  # fmt: skip
        prev = crypto.bundle_hash(bundle)
        out.append(bundle)
    return out


def store(data_dir: Path, prof: Profile, bundles: list[Bundle]) -> None:
    """Store bundles through the server's push judgement, in this process."""
    path = Paths(data_dir).workspace_db(prof.workspace_id)
    conn = connect(path, create=False)
    try:
        state = stored_log.state(conn, str(path))
        signer = state.devices[prof.device_id]
        for i in range(0, len(bundles), BATCH):
            outcome = ingest.push(
                conn, bundles[i : i + BATCH], signer, state,
                now_ms=int(time.time() * 1000), max_skew_ms=300_000,
            )  # fmt: skip
            bad = [r for r in outcome.results if not isinstance(r, tuple)]
            if bad:
                raise SystemExit(f"a bundle was refused: {bad[0]}")
    finally:
        conn.close()


def key_epochs(data_dir: Path, ws: str) -> list[int]:
    conn = connect(Paths(data_dir).workspace_db(ws), create=False)
    try:
        return [r[0] for r in conn.execute("SELECT key_epoch FROM bundles ORDER BY change")]
    finally:
        conn.close()


def rekey_round(prof: Profile, client: Client) -> tuple[int, float]:
    """Rotate, then re-key every stored bundle: (bundles re-keyed, seconds of the re-key)."""
    keyring.rotate(prof, client)
    prof.save()
    started = time.perf_counter()
    n = rekeying.rekey(prof, client)
    seconds = time.perf_counter() - started
    prof.save()
    return n, seconds


def raw_rate(count: int) -> float:
    """HPKE open + seal of a 32-byte data key per second: the floor of a re-key's work."""
    old = keys.HpkeKeyPair.from_seed(os.urandom(keys.HPKE_PRIV_LEN))
    new = keys.HpkeKeyPair.from_seed(os.urandom(keys.HPKE_PRIV_LEN))
    priv, pub = keys.hpke_private_key(old.private_bytes), keys.hpke_public_key(new.public_bytes)
    infos = [crypto.data_key_info(b64e(os.urandom(16)), 1, b64e(os.urandom(16))) for _ in range(8)]
    sealed = [keys.SUITE.encrypt(os.urandom(32), keys.hpke_public_key(old.public_bytes), info=i)
              for i in infos]  # fmt: skip
    started = time.perf_counter()
    for n in range(count):
        data_key = keys.SUITE.decrypt(sealed[n % 8], priv, info=infos[n % 8])
        keys.SUITE.encrypt(data_key, pub, info=infos[n % 8])
    return count / (time.perf_counter() - started)


def measure(bundles: int, rounds: int, workers: int = 4) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fieldsync-rekey-") as tmp:
        root = Path(tmp)
        data_dir = root / "data"
        Paths(data_dir).ensure()
        with Gunicorn(data_dir, workers=workers, log_dir=root / "logs") as server:
            prof, client = found(root / "admin", server.url, data_dir)
            print(f"sealing {bundles:,} bundles …", flush=True)
            started = time.perf_counter()
            sealed = seal(prof, bundles)
            store(data_dir, prof, sealed)
            print(f"  sealed and stored in {time.perf_counter() - started:.1f} s", flush=True)
            rates, raws, counts = [], [], []
            for r in range(rounds):
                n, seconds = rekey_round(prof, client)
                raw = raw_rate(min(bundles, 2000))
                counts.append(n)
                rates.append(n / seconds)
                raws.append(raw)
                print(f"  round {r + 1}: {n / seconds:,.0f}/s, raw {raw:,.0f}/s", flush=True)
            epoch = prof.log().current_epoch
            final = key_epochs(data_dir, prof.workspace_id)
            log_text = server.log_text()
    if final != [epoch] * bundles or counts != [bundles] * rounds:
        raise SystemExit(f"the re-key left bundles behind: {counts}, {set(final)} vs {epoch}")
    if "Traceback" in log_text:
        raise SystemExit(f"the server logged a traceback:\n{log_text}")
    rate, raw = statistics.median(rates), statistics.median(raws)
    return {"bundles": bundles, "rounds": rounds, "workers": workers, "rate": rate, "raw": raw,
            "ratio": rate / raw, "rates": rates, "raws": raws}  # fmt: skip


def run(quick: bool = False) -> dict[str, float]:
    """The figures for `bench/run.py`."""
    r = measure(500 if quick else 10_000, 1 if quick else 3)
    return {
        "bundles": float(r["bundles"]),
        "rekey_per_s": r["rate"],
        "hpke_open_seal_per_s": r["raw"],
        "rekey_over_hpke": r["ratio"],
    }


def tables(f: dict[str, float]) -> dict[str, str]:
    rows = [
        ["re-key, end to end (`fieldsync rotate --rekey`'s code, over HTTP)",
         kit.num(f["rekey_per_s"])],
        ["raw HPKE open + seal of a 32-byte data key, one core",
         kit.num(f["hpke_open_seal_per_s"])],
        ["ratio", f"{f['rekey_over_hpke']:.2f} (aim: at least 0.5)"],
    ]  # fmt: skip
    return {"rekey": kit.table(["", "bundles/s"], rows)}


def report(r: dict[str, Any]) -> str:
    spread = ", ".join(f"{x:,.0f}" for x in r["rates"])
    return (
        tables(
            {
                "rekey_per_s": r["rate"],
                "hpke_open_seal_per_s": r["raw"],
                "rekey_over_hpke": r["ratio"],
            }
        )["rekey"]
        + f"\n\nRounds: {spread} bundles/s."
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bundles", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workers", type=int, default=4)
    args = p.parse_args()
    print(report(measure(args.bundles, args.rounds, args.workers)))


if __name__ == "__main__":
    main()
