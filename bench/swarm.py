"""After a picket: 20 volunteers with 30 captures each sync at once, while a coordinator
syncs until it holds all of them.

    .venv/bin/python bench/swarm.py [--quick]   # print (`make bench` writes them)

A real `fieldsync-server run` (gunicorn, 2 workers per core) on loopback; a founder
and the volunteers enrolled with the client's own code (real Argon2id), each
volunteer's captures sealed into its outbox beforehand (as `fieldsync add` does).
The timed part: every volunteer's `fieldsync sync` started at the same moment, each
its own process, and the founder's `fieldsync sync` run again and again until it
has pulled every capture. The baseline, in the same run: one volunteer with as many
captures syncing alone, then the founder pulling them (two commands, one after the
other).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.append(str(ROOT / "bench"))  # after the packages: bench/server.py is no `server`

import kit  # noqa: E402
from servergun import Gunicorn  # noqa: E402

from client_sync import enrol, keyring, outbox  # noqa: E402
from client_sync.profile import Profile  # noqa: E402
from server.store import Paths, server_db  # noqa: E402

PASS = "bench passphrase"


def capture(prof: Profile, n: int) -> None:
    outbox.add(
        prof,
        "detention",
        {
            "person_name": f"Invented Person {n}",
            "detained_at": "2026-12-04T11:20",
            "held_at": "Station 7",
            "sources": "seen by the volunteer",
        },
        None,
    )


def volunteer(admin: Profile, root: Path, name: str, captures: int) -> Path:
    text = enrol.make_invite(admin, keyring.client_for(admin), "volunteer", 1)
    admin.save()
    home = root / name
    home.mkdir(mode=0o700)
    prof = enrol.join(home, PASS, text)
    for n in range(captures):
        capture(prof, n)
    prof.save()
    return home


def env(home: Path) -> dict[str, str]:
    return {**os.environ, "FIELDSYNC_HOME": str(home), "FIELDSYNC_PASSPHRASE": PASS}


def pulled(ran: kit.Ran) -> int:
    return int(re.search(rb"pulled (\d+) new bundle", ran.out).group(1))  # type: ignore[union-attr]


def run(quick: bool = False) -> dict[str, float]:
    count, each = (5, 6) if quick else (20, 30)
    with tempfile.TemporaryDirectory(prefix="fieldsync-swarm-") as tmp:
        root = Path(tmp)
        data = root / "data"
        Paths(data).ensure()
        with Gunicorn(data, workers=2 * kit.cores(), log_dir=root / "logs") as server:
            code = server_db.new_code(Paths(data), int(time.time()))
            (root / "admin").mkdir(mode=0o700)
            admin = enrol.init(root / "admin", PASS, server.url, "Swarm", code)
            homes = [volunteer(admin, root, f"v{i}", each) for i in range(count)]
            alone = volunteer(admin, root, "alone", count * each)
            admin_env = env(root / "admin")
            started = time.perf_counter()
            procs = [
                subprocess.Popen(
                    [str(kit.BIN / "fieldsync"), "sync"],
                    env=env(h),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
                for h in homes
            ]
            held, syncs = 0, 0
            while held < count * each:
                held += pulled(kit.fieldsync("sync", env=admin_env))
                syncs += 1
                if time.perf_counter() - started > 600:
                    raise RuntimeError(f"the coordinator holds {held} of {count * each}")
            swarm = time.perf_counter() - started
            for p in procs:
                _, err = p.communicate(timeout=600)
                assert p.returncode == 0, err
            push = kit.fieldsync("sync", env=env(alone))
            pull = kit.fieldsync("sync", env=admin_env)
            assert pulled(pull) == count * each
            assert "Traceback" not in server.log_text()
    return {
        "volunteers": float(count),
        "captures_each": float(each),
        "swarm_s": swarm,
        "coordinator_syncs": float(syncs),
        "alone_push_s": push.wall,
        "alone_pull_s": pull.wall,
        "baseline_s": push.wall + pull.wall,
    }


def tables(f: dict[str, float]) -> dict[str, str]:
    n, each = int(f["volunteers"]), int(f["captures_each"])
    rows = [
        [f"{n} volunteers × {each} captures syncing at once, until the coordinator holds all",
         f"{f['swarm_s']:.1f} s", f"{f['coordinator_syncs']:.0f} coordinator syncs"],
        [f"baseline: one volunteer with {n * each} captures syncing alone",
         f"{f['alone_push_s']:.1f} s", ""],
        ["then the coordinator pulling them", f"{f['alone_pull_s']:.1f} s", ""],
    ]  # fmt: skip
    return {"swarm": kit.table(["", "wall", ""], rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    figures = run(ap.parse_args().quick)
    print(json.dumps(figures, indent=1))
    print(tables(figures)["swarm"])


if __name__ == "__main__":
    main()
