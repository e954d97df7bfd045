"""A replica written by the sealed-file code (tests/fixtures/legacy_replica) is migrated on
first open: the new code reads from it exactly what the old code printed, the old file is
gone, nothing is readable at rest, and the migrated replica takes new writes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from clientkit import FAST_ENV, as_json, records

from client_sync.demo import Device, grep_dir

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "legacy_replica"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text(encoding="utf-8"))
MARKERS = ["Айгүл Демоқызы", "艾古丽", "Gate of the consulate", "Daulet Fake-uly", "person_name"]


def legacy_admin(tmp_path: Path) -> Device:
    home = tmp_path / "admin"
    home.mkdir(mode=0o700)
    for name in ("profile.vault", "replica.sealed"):
        shutil.copy(FIXTURE / name, home / name)
    return Device("admin", home, "passphrase of coordinator-dana", env=FAST_ENV)


def test_the_old_replica_reads_as_it_did(tmp_path: Path) -> None:
    admin = legacy_admin(tmp_path)
    assert records(admin) == EXPECTED["records"]
    assert sorted(p.name for p in admin.home.iterdir()) == [".lock", "profile.vault", "replica.db"]
    assert admin.run("records", "--format", "text").out == EXPECTED["records_table"]
    # What the old code printed, and now each value's device name (none in this fixture).
    assert as_json(admin.run("conflicts", "--format", "json")) == [
        {**c, "values": [{**v, "device_name": None} for v in c["values"]]}
        for c in EXPECTED["conflicts"]
    ]
    for name, old in EXPECTED["show"].items():
        new = as_json(admin.run("show", EXPECTED["ids"][name], "--format", "json"))
        # The history now names each cell's device too (no names in this fixture).
        assert [h.pop("device_name") for h in new["history"]] == [None] * len(new["history"])
        assert {k: new[k] for k in old} == old, name
    status: dict[str, Any] = as_json(admin.run("status", "--format", "json"))
    assert {k: status[k] for k in ("replica", "problems", "outbox")} == {
        k: EXPECTED["status"][k] for k in ("replica", "problems", "outbox")
    }
    assert grep_dir(admin.home, MARKERS) == {}


def test_the_migrated_replica_takes_new_writes(tmp_path: Path) -> None:
    admin = legacy_admin(tmp_path)
    picket = EXPECTED["ids"]["picket"]
    admin.run("resolve", picket, "attendance", "--keep", "1")
    assert as_json(admin.run("conflicts", "--format", "json")) == []
    fields = {r["id"]: r["fields"] for r in records(admin)}
    assert fields[picket]["attendance"] == 40
    assert as_json(admin.run("status", "--format", "json"))["outbox"] == 2
    assert not (admin.home / "replica.sealed").exists()


def test_a_cut_migration_is_finished_by_the_next_open(tmp_path: Path) -> None:
    admin = legacy_admin(tmp_path)
    # Cut before the rename: a half-built database under its temporary name.
    (admin.home / "replica.db.migrating").write_bytes(b"half a database")
    assert records(admin) == EXPECTED["records"]
    assert not (admin.home / "replica.db.migrating").exists()
    # Cut after the rename, before the old file was deleted: the new one is kept.
    admin.run("resolve", EXPECTED["ids"]["picket"], "attendance", "--keep", "1")
    shutil.copy(FIXTURE / "replica.sealed", admin.home / "replica.sealed")
    assert as_json(admin.run("conflicts", "--format", "json")) == []
    assert not (admin.home / "replica.sealed").exists()
