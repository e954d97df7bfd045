"""A replica written by the sealed-file code (tests/fixtures/legacy_replica) is migrated on
first open: the new code reads from it exactly what the old code printed, the old file is
gone, nothing is readable at rest, and the migrated replica takes new writes. A replica
of schema 2 (tests/fixtures/replica_v2: cells keyed by record id) is upgraded in one
transaction, or not at all."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from clientkit import FAST_ENV, as_json, records

from client_sync.demo import Device, grep_dir
from client_sync.errors import CliError
from client_sync.profile import Profile
from client_sync.replica import store

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "legacy_replica"
SCHEMA_2 = Path(__file__).resolve().parent / "fixtures" / "replica_v2"
PASSPHRASE = "passphrase of coordinator-dana"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text(encoding="utf-8"))
MARKERS = ["Айгүл Демоқызы", "艾古丽", "Gate of the consulate", "Daulet Fake-uly", "person_name"]


def legacy_admin(tmp_path: Path) -> Device:
    home = tmp_path / "admin"
    home.mkdir(mode=0o700)
    for name in ("profile.vault", "replica.sealed"):
        shutil.copy(FIXTURE / name, home / name)
    return Device("admin", home, PASSPHRASE, env=FAST_ENV)


def schema_2_admin(tmp_path: Path) -> Device:
    home = tmp_path / "admin"
    home.mkdir(mode=0o700)
    shutil.copy(FIXTURE / "profile.vault", home / "profile.vault")
    shutil.copy(SCHEMA_2 / "replica.db", home / "replica.db")
    return Device("admin", home, PASSPHRASE, env=FAST_ENV)


def test_the_old_replica_reads_as_it_did(tmp_path: Path) -> None:
    reads_as_it_did(legacy_admin(tmp_path))


def test_a_replica_of_schema_2_reads_as_it_did(tmp_path: Path) -> None:
    admin = schema_2_admin(tmp_path)
    reads_as_it_did(admin)
    db = store.connect(admin.home / "replica.db", replica_key(admin))
    try:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("3",)
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"cells", "namings"} <= tables and not {"cells_2", "namings_2"} & tables
    finally:
        db.close()
    takes_new_writes(admin)


def test_a_failed_upgrade_of_schema_2_changes_nothing(tmp_path: Path) -> None:
    """A cell whose record row is missing (a damaged replica): the upgrade refuses and the
    replica stays as it was, schema 2, every cell in place."""
    admin = schema_2_admin(tmp_path)
    key = replica_key(admin)
    raw = store.sqlcipher().connect(str(admin.home / "replica.db"), isolation_level=None)
    raw.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
    raw.execute("DELETE FROM records WHERE record_id = ?", (EXPECTED["ids"]["picket"],))
    before = raw.execute("SELECT * FROM cells ORDER BY 1, 2, 3").fetchall()
    raw.close()
    with pytest.raises(CliError, match="could not be upgraded"):
        store.connect(admin.home / "replica.db", key).close()
    raw = store.sqlcipher().connect(str(admin.home / "replica.db"), isolation_level=None)
    raw.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
    try:
        assert raw.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("2",)
        assert raw.execute("SELECT * FROM cells ORDER BY 1, 2, 3").fetchall() == before
    finally:
        raw.close()


def replica_key(admin: Device) -> bytes:
    from protocol.encoding import b64d

    return b64d(Profile.open(admin.home, PASSPHRASE).state["replica_key"], length=32)


def reads_as_it_did(admin: Device) -> None:
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
    takes_new_writes(legacy_admin(tmp_path))


def takes_new_writes(admin: Device) -> None:
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
