"""A server that went back in time loses nothing: a backup restored, a workspace file lost.

Real servers on their own data directories (stopped and started again on the same
port, as an operator would), real devices through the command line.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from accesskit import backup, stored_bundles, vault_state
from clientkit import PICKET, Team, records, sets, status

from client_sync.demo import ServerProcess, server_command, start_server

NOTICE = (
    "warning: the server's database was restored or recreated (a new incarnation): pulling"
    " again from the start; bundles held here change nothing\n"
)


def resent(n: int) -> str:
    return (
        f"warning: the server had lost {n} capture(s) this device sent (restored or recreated):"
        " they were sent again\n"
    )


class Operator:
    """One server on its own data directory, which can be stopped and started again."""

    def __init__(self, root: Path) -> None:
        self.data = root / "data"
        self.data.mkdir(parents=True)
        self.server: ServerProcess = start_server(self.data)
        self.port = self.server.port

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        self.server = start_server(self.data, port=self.port)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*server_command(), *args], capture_output=True, text=True, timeout=60, check=False
        )


@pytest.fixture
def operator(tmp_path: Path) -> Iterator[Operator]:
    op = Operator(tmp_path / "server")
    try:
        yield op
    finally:
        op.stop()


def _seqs(op: Operator, ws: str, device: str) -> list[int]:
    return [b.seq for b in stored_bundles(op.server, ws) if b.device_id == device]


def test_a_restored_backup_loses_nothing(operator: Operator, tmp_path: Path) -> None:
    op = operator
    team = Team(op.server.url, op.server.workspace_code(), tmp_path)
    admin = team.found()
    vol = team.enroll(admin, "vol")
    ws, vol_id = status(admin)["workspace_id"], team.ids["vol"]

    # 1. Delivered and confirmed: the volunteer keeps nothing of it.
    ids = [vol.run("add", "picket", *PICKET, *sets(attendance=1)).last]
    vol.run("sync")
    admin.run("sync")
    assert "a coordinator confirmed 1 capture(s)" in vol.run("sync").out
    assert status(vol)["awaiting_receipt"] == 0
    # 2. The operator backs up.
    backup(op.server, tmp_path / "backup")
    # 3. After the backup: one capture the coordinator pulls (and confirms), one it does not.
    ids.append(vol.run("add", "picket", *PICKET, *sets(attendance=2)).last)
    vol.run("sync")
    admin.run("sync")
    ids.append(vol.run("add", "picket", *PICKET, *sets(attendance=3)).last)
    vol.run("sync")
    assert (status(vol)["awaiting_receipt"], _seqs(op, ws, vol_id)) == (1, [1, 2, 3])

    # 4. The restore: refused while the server runs, then done by the deploy/README steps.
    refused = op.run("restore", str(tmp_path / "backup"), "--data-dir", str(op.data))
    assert (refused.returncode, refused.stderr) == (
        1,
        f"fieldsync-server: a fieldsync-server runs on {op.data.resolve()}: stop it first;"
        " nothing was restored\n",
    )
    op.stop()
    done = op.run("restore", str(tmp_path / "backup"), "--data-dir", str(op.data))
    assert done.returncode == 0, done.stderr
    assert [line.split(":")[0] for line in done.stdout.splitlines()[:-1]] == [
        "server.sqlite",
        f"workspaces/{ws}.sqlite",
    ]
    assert not list(op.data.glob("workspaces/*-wal")) + list(op.data.glob("workspaces/*-shm"))
    op.start()
    assert _seqs(op, ws, vol_id) == [1]  # bundles 2 and 3 are gone from the server

    # 5. Push again: the volunteer re-sends bundle 3 by itself (2 was confirmed: it holds
    # nothing of it; the coordinator does), then its new capture.
    ids.append(vol.run("add", "picket", *PICKET, *sets(attendance=4)).last)
    result = vol.run("sync")
    assert result.err == resent(1)
    assert _seqs(op, ws, vol_id) == [1, 3, 4]
    # 6. The coordinator's cursor was past the restored change numbers: it says so in one
    # line, pulls again from 0, and holds every record.
    result = admin.run("sync")
    assert result.err == NOTICE
    assert [r["id"] for r in records(admin)] == ids
    assert status(admin)["problems"] == []
    result = vol.run("sync")
    assert (result.err, status(vol)["awaiting_receipt"]) == ("", 0)
    assert "a coordinator confirmed 2 capture(s)" in result.out
    assert admin.run("sync").err == ""  # the notice comes once


def test_a_lost_workspace_file_is_recreated(operator: Operator, tmp_path: Path) -> None:
    op = operator
    team = Team(op.server.url, op.server.workspace_code(), tmp_path)
    admin = team.found()
    asel, bolat = team.enroll(admin, "asel"), team.enroll(admin, "bolat")
    ws = status(admin)["workspace_id"]
    ids = [asel.run("add", "picket", *PICKET, *sets(attendance=1)).last]
    asel.run("sync")
    admin.run("sync")
    asel.run("sync")  # confirmed: asel keeps nothing
    ids.append(asel.run("add", "picket", *PICKET, *sets(attendance=2)).last)
    ids.append(bolat.run("add", "detention", *sets(person_name="Erlan Notrealov")).last)
    asel.run("sync")
    bolat.run("sync")  # on the server; no coordinator has them yet

    op.stop()
    for leftover in (op.data / "workspaces").glob(f"{ws}.sqlite*"):
        leftover.unlink()
    op.start()
    gone = asel.run("sync", check=False)
    assert (gone.rc, gone.err) == (
        1,
        "error: the server has no such workspace: it was deleted or this is the wrong server\n",
    )
    result = admin.run("recreate", "--code", op.server.workspace_code())
    assert result.out == (
        f"recreated workspace {ws} from this device's key log"
        f" ({len(vault_state(admin)['log'])} events); devices re-send what they keep at their"
        " next sync: run `fieldsync sync`\n"
    )
    # Every volunteer's next sync re-sends what it keeps; the coordinator pulls them again.
    assert asel.run("sync").err == resent(1)
    assert bolat.run("sync").err == resent(1)
    assert admin.run("sync").err == NOTICE
    assert [r["id"] for r in records(admin)] == ids
    for dev in (asel, bolat):
        assert dev.run("sync").err == ""
        assert status(dev)["awaiting_receipt"] == 0


def test_restore_checks_the_backup_first_and_changes_nothing_when_it_fails(
    operator: Operator, tmp_path: Path
) -> None:
    op = operator
    team = Team(op.server.url, op.server.workspace_code(), tmp_path)
    admin = team.found()
    ws = status(admin)["workspace_id"]
    backup(op.server, tmp_path / "backup")
    op.stop()
    live = op.data / "workspaces" / f"{ws}.sqlite"
    before = live.read_bytes()
    damaged = tmp_path / "damaged"
    shutil.copytree(tmp_path / "backup", damaged)
    target = damaged / "workspaces" / f"{ws}.sqlite"
    raw = bytearray(target.read_bytes())
    raw[100:4096] = bytes(len(raw[100:4096]))  # the schema page zeroed
    target.write_bytes(bytes(raw))
    result = op.run("restore", str(damaged), "--data-dir", str(op.data))
    assert result.returncode == 1
    assert result.stderr.startswith(f"fieldsync-server: {ws}.sqlite: ")
    assert result.stderr.endswith("; nothing was restored\n")
    assert live.read_bytes() == before
    assert not list(op.data.rglob(".restore-*"))
    empty = op.run("restore", str(tmp_path / "nowhere"), "--data-dir", str(op.data))
    assert (empty.returncode, empty.stderr) == (
        1,
        f"fieldsync-server: {tmp_path / 'nowhere'} is not a directory; nothing was restored\n",
    )
    op.start()
