"""The coordinator's read commands over the read layer, offline, on the profile of
tests/fixtures/legacy_replica; and a command line that starts without loading what
its command does not need."""

from __future__ import annotations

import json
import subprocess
import sys

from clientkit import as_json, records
from test_replica_migration import EXPECTED, legacy_admin

from client_sync.cli.kit import RECORD_TYPE_NAMES
from schemas.records import RECORD_TYPES

IDS = EXPECTED["ids"]


def test_filters_sorts_and_pages(tmp_path: object) -> None:
    admin = legacy_admin(tmp_path)  # type: ignore[arg-type]
    assert [r["id"] for r in records(admin, "--search", "айгүл")] == [IDS["cyrillic"]]
    assert [r["id"] for r in records(admin, "--search", "古丽")] == [IDS["cyrillic"]]
    assert [r["id"] for r in records(admin, "--only", "conflicts")] == [IDS["picket"]]
    assert [r["id"] for r in records(admin, "--only", "duplicates")] == [IDS["dup1"], IDS["dup2"]]
    by_name = records(admin, "--type", "detention", "--sort", "person_name", "--desc")
    assert [r["fields"]["person_name"] for r in by_name] == [
        "Serik Samplebekov", "Marat Fictionuly", "Daulet Fakeuly", "Daulet Fake-uly",
        "Aigul Demokyzy",
    ]  # fmt: skip
    page = records(admin, "--type", "detention", "--sort", "person_name", "--limit", "2",
                   "--offset", "1")  # fmt: skip
    assert [r["id"] for r in page] == [by_name[3]["id"], by_name[2]["id"]]
    everyone = records(admin)
    assert records(admin, "--hide-deleted") == [r for r in everyone if not r["deleted"]]
    csv_text = admin.run("records", "--format", "csv", "--only", "conflicts").out
    assert (
        csv_text.splitlines()[0].startswith("id,type,recorded_by,recorded_at,")
        and len(csv_text.splitlines()) == 2
    )
    usage = admin.run("records", "--sort", "date", check=False)
    assert usage.rc == 2 and "--sort and --desc need --type" in usage.err


def test_show_links_both_ways(tmp_path: object) -> None:
    admin = legacy_admin(tmp_path)  # type: ignore[arg-type]
    picket = as_json(admin.run("show", IDS["picket"], "--format", "json"))
    assert picket["links"] == {
        "out": [],
        "in": [
            {"field": "picket_id", "id": IDS[name], "type": "detention"}
            for name in ("detention1", "detention2", "detention3", "dup1")
        ],
    }
    detention = as_json(admin.run("show", IDS["detention1"], "--format", "json"))
    assert detention["links"] == {
        "out": [{"field": "picket_id", "id": IDS["picket"], "type": "picket"}],
        "in": [],
    }
    assert detention["invalid"] == {}
    text = admin.run("show", IDS["detention1"]).out
    assert f"picket_id -> picket {IDS['picket']}" in text


def test_the_names_the_command_line_keeps_are_the_cores() -> None:
    """The command line names a few of the core's values so that `--help` loads no core."""
    from client_sync import enrol, rekey, sync
    from client_sync.cli import device, roster
    from client_sync.cli import enrol as cli_enrol

    assert RECORD_TYPE_NAMES == list(RECORD_TYPES)
    assert device.PUSH_BATCH == sync.PUSH_BATCH
    assert cli_enrol.INVITE_HOURS == enrol.INVITE_HOURS
    assert roster.REKEY_PAGE == rekey.PAGE


def test_help_loads_no_core_no_schemas_no_replica() -> None:
    """`fieldsync --help` imports the command line and click only (counted in modules,
    not timed: the figure is in docs/BENCHMARKS.md)."""
    code = (
        "import sys, client_sync.cli as c\n"
        "try:\n    c.cli.main(['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('cryptography', 'marshmallow', 'sqlcipher3', 'protocol',"
        " 'schemas', 'client_sync.replica', 'client_sync.profile') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.splitlines()[-1].replace("'", '"')) == []
