"""Attachments survive a server that went back in time: chunks are in the backup and
put back by `restore`, and what the backup lacks the volunteer still keeps and sends
again by itself, chunks included."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from accesskit import backup
from clientkit import PICKET, Team, status
from test_delivery_restore import Operator, operator  # noqa: F401  (a fixture)

MIB = 1 << 20


def chunk_files(home: Path) -> list[str]:
    folder = home / "chunks"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_a_restored_server_gets_its_chunks_back(operator: Operator, tmp_path: Path) -> None:  # noqa: F811
    op = operator
    team = Team(op.server.url, op.server.workspace_code(), tmp_path)
    admin = team.found()
    vol = team.enroll(admin, "vol")
    first = tmp_path / "first.bin"
    first.write_bytes(os.urandom(MIB + 10))
    second = tmp_path / "second.bin"
    second.write_bytes(os.urandom(MIB + 20))
    rec1 = vol.run("add", "picket", *PICKET).last
    vol.run("attach", rec1, str(first))
    assert len(chunk_files(vol.home)) == 2
    vol.run("sync")
    assert len(chunk_files(vol.home)) == 2  # uploaded, kept until a coordinator's receipt
    admin.run("sync")
    vol.run("sync")
    assert chunk_files(vol.home) == []  # confirmed: the volunteer keeps nothing of it
    backup(op.server, tmp_path / "backup")
    assert len(list((tmp_path / "backup" / "chunks").rglob("*"))) >= 2
    rec2 = vol.run("add", "picket", *PICKET).last
    vol.run("attach", rec2, str(second))
    vol.run("sync")
    kept = chunk_files(vol.home)
    assert len(kept) == 2 and status(vol)["awaiting_receipt"] == 2
    op.stop()
    # The disk that held the chunks is lost: the backup has the first file's, the
    # volunteer still keeps the second's (no coordinator confirmed it yet).
    shutil.rmtree(op.data / "chunks")
    done = op.run("restore", str(tmp_path / "backup"), "--data-dir", str(op.data))
    assert done.returncode == 0, done.stderr
    assert "2 attachment chunk(s) put back" in done.stdout
    op.start()
    result = vol.run("sync")
    assert "sent again" in result.err
    assert "uploaded 2 attachment chunk(s)" in result.out
    admin.run("sync")
    for rec, f in ((rec1, first), (rec2, second)):
        out = tmp_path / "out" / rec
        admin.run("open", rec, "--out", str(out))
        assert (out / f.name).read_bytes() == f.read_bytes()
    vol.run("sync")
    assert chunk_files(vol.home) == []
