"""A crash loop: the server killed with SIGKILL (master and workers at once, as a power
cut) while a volunteer pushes and a coordinator pulls, round after round. At the end
every capture made is at the coordinator exactly once, and nothing says the server
went back in time: a restart is not a restore.

Where the kill lands is chosen by counting requests, not by time: the devices talk
through a proxy that counts what it forwards, and each round the server dies right
after the k-th request of that round (k drawn with a fixed seed, so a failure can be
replayed), whichever it is: the key log, a push, a head, a changes page, receipts.
"""

from __future__ import annotations

import random
import subprocess
import time
from pathlib import Path

from accesskit import stored_bundles, vault_state
from clientkit import PICKET, Team, records, sets, status
from lying_proxy import LyingProxy
from servergun import Gunicorn

from client_sync.demo import Device, client_command
from server.store import Paths, server_db

ROUNDS = 20


def _start_sync(dev: Device) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*client_command(), "sync"],
        env=dev.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _until_clean(dev: Device) -> str:
    """Sync until a run succeeds (one may meet the last restart still coming up)."""
    for _ in range(3):
        result = dev.run("sync", check=False)
        if result.rc == 0:
            return result.err
    raise AssertionError(f"sync kept failing: {result.err}")


def test_kill_9_during_pushes_and_pulls(tmp_path: Path) -> None:
    data = tmp_path / "data"
    gun = Gunicorn(data, workers=2, log_dir=tmp_path / "logs").start()
    proxy = LyingProxy("127.0.0.1", gun.port).start()
    try:
        code = server_db.new_code(Paths(data), int(time.time()))
        team = Team(proxy.url, code, tmp_path)
        admin = team.found()
        vol = team.enroll(admin, "vol")
        ws, vol_id = status(admin)["workspace_id"], team.ids["vol"]
        rng = random.Random(20261204)
        made: list[str] = []
        outcomes: list[tuple[int, int]] = []
        for n in range(ROUNDS):
            made.append(vol.run("add", "picket", *PICKET, *sets(attendance=n)).last)
            before, k = len(proxy.seen), rng.randint(1, 14)
            pushing, pulling = _start_sync(vol), _start_sync(admin)
            while len(proxy.seen) - before < k and None in (pushing.poll(), pulling.poll()):
                time.sleep(0.005)
            gun.kill9()
            for proc in (pushing, pulling):
                proc.communicate(timeout=120)
            outcomes.append((pushing.returncode, pulling.returncode))
            gun.start()
        # Some rounds were cut (exit 4: network), some finished; neither kind is an error.
        assert {rc for pair in outcomes for rc in pair} <= {0, 4}
        warnings = [_until_clean(vol), _until_clean(admin), _until_clean(vol)]
        assert warnings == ["", "", ""]  # no notice: a restart is not a restore
        assert [r["id"] for r in records(admin)] == made
        assert status(admin)["replica"]["bundles"] == ROUNDS
        assert status(admin)["problems"] == []
        mine = [b.seq for b in stored_bundles(_Served(data), ws) if b.device_id == vol_id]
        assert mine == list(range(1, ROUNDS + 1))
        st = status(vol)
        assert (st["outbox"], st["awaiting_receipt"], vault_state(vol)["acked"]) == (0, 0, ROUNDS)
    finally:
        proxy.stop()
        gun.stop()


class _Served:
    """What accesskit.stored_bundles needs of a server: its data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
