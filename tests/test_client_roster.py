"""The roster through the command line: QR invites, revocation, rotation and re-key,
safety numbers, deletion and duplicates."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from clientkit import PASSPHRASE, PICKET, as_json, new_team, records, server, sets, status  # noqa: F401

from client_sync.demo import ServerProcess, client_command


def test_invite_qr_code(server: ServerProcess, tmp_path: Path) -> None:  # noqa: F811
    team = new_team(server, tmp_path)
    admin = team.found()
    qr = tmp_path / "invite.png"
    result = admin.run("invite", "--role", "coordinator", "--qr", str(qr))
    assert result.last.startswith("fieldsync-invite:")
    assert qr.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The invite is the last line, whatever hints come before it.
    coord = team.device("coord")
    device_id = coord.run("join", result.last).last
    assert as_json(coord.run("devices", "--format", "json"))[-1] == {
        "device_id": device_id,
        "name": None,
        "role": "coordinator",
        "status": "pending",
    }
    assert status(coord)["status"] == "pending"
    assert "not approved yet" in coord.run("sync").err
    admin.run("approve", device_id)
    assert "pulled 0 new bundle(s)" in coord.run("sync").out


def test_revoke_rotate_and_rekey(server: ServerProcess, tmp_path: Path) -> None:  # noqa: F811
    team = new_team(server, tmp_path)
    admin = team.found()
    vol = team.enroll(admin, "vol")
    leaving = team.enroll(admin, "leaving", "coordinator")
    first = vol.run("add", "relative", *sets(full_name="Ainur Inventedkyzy", status="camp")).last
    vol.run("sync")
    leaving.run("sync")
    assert len(records(leaving)) == 1

    # A coordinator leaves: revoking a keyholder rotates the epoch key at once.
    result = admin.run("revoke", team.ids["leaving"], "--rekey")
    assert "rotated the epoch key: now epoch 2" in result.out
    assert "re-keyed 1 stored bundle(s)" in result.out
    assert as_json(admin.run("devices", "--format", "json")) == [
        {"device_id": team.ids["admin"], "name": None, "role": "admin", "status": "active"},
        {"device_id": team.ids["vol"], "name": None, "role": "volunteer", "status": "active"},
        {
            "device_id": team.ids["leaving"],
            "name": None,
            "role": "coordinator",
            "status": "revoked",
        },
    ]
    assert leaving.run("sync", check=False).rc == 3

    # The volunteer learns the new epoch at its next sync and seals to it.
    vol.run("sync")
    assert status(vol)["epoch"] == 2
    second = vol.run("add", "relative", *sets(full_name="Berik Madeupov", status="prison")).last
    vol.run("sync")

    # A plain rotation, then a re-key of everything stored: a coordinator who joins
    # afterwards reads old and new records alike.
    assert "now epoch 3" in admin.run("rotate").out
    assert "re-keyed 2 stored bundle(s)" in admin.run("rotate", "--rekey", "--resume").out
    assert "re-keyed 0 stored bundle(s)" in admin.run("rotate", "--rekey", "--resume").out
    newcomer = team.enroll(admin, "newcomer", "coordinator")
    newcomer.run("sync")
    assert [r["id"] for r in records(newcomer)] == [first, second]
    assert status(newcomer)["epoch"] == 3

    numbers = {d.run("safety-number").out for d in (admin, vol, newcomer)}
    assert len(numbers) == 1


def test_delete_rule(server: ServerProcess, tmp_path: Path) -> None:  # noqa: F811
    team = new_team(server, tmp_path)
    admin = team.found()
    vol_a = team.enroll(admin, "a")
    vol_b = team.enroll(admin, "b")
    gone = vol_a.run("add", "picket", *PICKET, *sets(place="Invented Square", attendance=3)).last
    kept = vol_a.run("add", "picket", *PICKET, *sets(place="Made-up Park", attendance=9)).last
    vol_a.run("delete", gone)
    vol_a.run("delete", kept)
    # After Asel's delete, Bolat (who had not seen it) corrects the attendance: a
    # later write keeps the record, so no testimony is lost by accident.
    vol_b.run("edit", kept, "--type", "picket", "--set", "attendance=10")
    vol_a.run("sync")
    vol_b.run("sync")
    admin.run("sync")
    got = {r["id"]: r for r in records(admin)}
    assert got[gone]["deleted"] is True
    assert got[kept]["deleted"] is False
    assert got[kept]["fields"] == {"attendance": 10, "date": "2026-12-04", "place": "Made-up Park"}
    assert got[kept]["conflicts"] == {"attendance": [10, 9]}
    # A coordinator's delete supersedes every head.
    admin.run("delete", kept)
    assert {r["id"]: r["deleted"] for r in records(admin)} == {gone: True, kept: True}


def test_likely_duplicates(server: ServerProcess, tmp_path: Path) -> None:  # noqa: F811
    team = new_team(server, tmp_path)
    admin = team.found()
    vol = team.enroll(admin, "vol")
    one = vol.run(
        "add", "detention", *sets(person_name="Daulet Fakeuly", detained_at="2026-12-04T11:20")
    ).last
    two = vol.run(
        "add", "detention", *sets(person_name="Daulet Fake-uly", detained_at="2026-12-04T11:35")
    ).last
    other = vol.run(
        "add", "detention", *sets(person_name="Zarina Otherova", detained_at="2026-12-04T11:20")
    ).last
    vol.run("sync")
    admin.run("sync")
    text = admin.run("records", "--format", "text").out
    assert f"likely duplicate of {two}" in text and f"likely duplicate of {one}" in text
    assert f"likely duplicate of {other}" not in text
    table = admin.run("records", "--type", "detention").out.splitlines()
    assert table[0].split() == ["id", "person_name", "detained_at", "held_at", "fine_amount"]
    marks = {line[:22]: line[24:28] for line in table[2:-1]}
    assert marks == {one: " D  ", two: " D  ", other: "    "}
    assert table[-1].startswith("3 record(s); C open conflict, D likely duplicate")
    assert as_json(admin.run("show", one, "--format", "json"))["duplicates"] == [two]
    assert f"likely duplicate of {one}" in admin.run("show", two).out


def test_init_output_and_piped_passphrase(server: ServerProcess, tmp_path: Path) -> None:  # noqa: F811
    team = new_team(server, tmp_path)
    admin = team.device("admin")
    out = admin.run(
        "init", "--server", server.url, "--workspace", "Test pickets", "--code", team.code
    ).out
    ws = re.search(r"^workspace id: ([A-Za-z0-9_-]{22})$", out, re.M)
    number = re.search(r"^safety number: ((?:\d{5} ){4}\d{5})$", out, re.M)
    assert ws and number
    st = status(admin)
    assert st["workspace_id"] == ws.group(1)
    assert admin.run("safety-number").out.strip() == number.group(1)
    assert st["last_sync"] is None

    env = {k: v for k, v in admin.env.items() if k != "FIELDSYNC_PASSPHRASE"}
    piped = subprocess.run(
        [*client_command(), "status", "--format", "json"],
        env=env, input=PASSPHRASE + "\n", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert piped.returncode == 0 and json.loads(piped.stdout)["workspace_id"] == ws.group(1)
    missing = subprocess.run(
        [*client_command(), "status"],
        env=env, input="", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert missing.returncode == 3
    assert missing.stderr.startswith("error: no passphrase") and missing.stderr.count("\n") == 1
