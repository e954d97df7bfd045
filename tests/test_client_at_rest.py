"""Nothing readable at rest: a profile directory holds none of the values it captured."""

from __future__ import annotations

import os
from pathlib import Path

from clientkit import PICKET, new_team, records, server, sets, status  # noqa: F401

from client_sync.demo import ServerProcess, grep_dir

MARKERS = {
    "place": "Qyzylzhar-Unique-Square-7731",
    "police_action": "Marker-Dispersal-Zephyrine-4410",
    "sources": "Witness-Marker-Oktyabrina-9902",
}
NAME = "Person-Marker-Zhanbolatova-5581"


EVERYTHING = [*MARKERS.values(), NAME, "released_at", "person_name", "police_action"]


def test_nothing_readable_on_devices_or_server(server: ServerProcess, tmp_path: Path) -> None:  # noqa: F811
    team = new_team(server, tmp_path)
    admin = team.found()
    vol = team.enroll(admin, "vol")
    coord = team.enroll(admin, "coord", "coordinator")

    picket = vol.run("add", "picket", *PICKET, *sets(attendance=31, **MARKERS)).last
    det = vol.run("add", "detention", *sets(picket_id=picket, person_name=NAME)).last
    vol.run("edit", det, "--set", "released_at=2026-12-04T20:05")
    markers = EVERYTHING
    # Sealed at capture: before any sync the volunteer's directory holds no value...
    assert grep_dir(vol.home, markers) == {}
    vol.run("sync")
    # ... nor after it, and the server holds none either.
    assert grep_dir(vol.home, markers) == {}
    assert grep_dir(server.data_dir, markers) == {}

    # A coordinator decrypts into a replica that is sealed at rest as well.
    coord.run("sync")
    assert [r["fields"].get("place") for r in records(coord)] == [MARKERS["place"], None]
    assert grep_dir(coord.home, markers) == {}
    assert grep_dir(admin.home, markers) == {}
    admin.run("sync")
    admin.run("edit", picket, "--set", "outcome=Marker-Outcome-Tulpar-1204")
    assert grep_dir(admin.home, [*markers, "Marker-Outcome-Tulpar-1204"]) == {}
    # Only the profile's own files are there, owner-only.
    for path in vol.home.iterdir():
        assert path.name in {"profile.vault", ".lock"}, path
        assert os.stat(path).st_mode & 0o077 == 0, path
    assert {p.name for p in coord.home.iterdir()} == {"profile.vault", "replica.db", ".lock"}


def test_real_key_derivation_cost(server: ServerProcess, tmp_path: Path) -> None:  # noqa: F811
    """Without the test-only switch a vault uses Argon2id at 64 MiB and 3 passes."""
    team = new_team(server, tmp_path)
    admin = team.found()
    real = team.device("real", FIELDSYNC_KDF_FAST="0")
    real.run("join", admin.run("invite").last)
    assert status(real)["kdf"] == "argon2id m=65536KiB t=3 p=4"
    assert "for tests only" in status(admin)["kdf"]
