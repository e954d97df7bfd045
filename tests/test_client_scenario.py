"""The day of `make demo`, end to end, with whole-value asserts on every JSON output."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

from clientkit import FAST_ENV, as_json, records, server, status  # noqa: F401

from client_sync.demo import (
    PICKET,
    RELEASED_AT,
    ServerProcess,
    grep_dir,
    plaintext_markers,
    play_day,
)
from client_sync.view import export_columns


def _hlcs(conflicts: list[dict[str, Any]]) -> list[int]:
    """Take out the HLCs (times of the run) after checking their type; return them."""
    out = []
    for item in conflicts:
        for value in item["values"]:
            assert type(value["hlc"]) is int
            out.append(value.pop("hlc"))
    return out


def test_the_day(server: ServerProcess, tmp_path: Path) -> None:  # noqa: F811
    day = play_day(server, tmp_path, env=FAST_ENV)
    ids, devs = day.ids, day.devices
    admin = day.admin
    # Eight captures, and the two volunteers' names (sealed like records).
    assert "pulled 10 new bundle(s), 50 cell(s)" in admin.run("sync").out

    picket = {
        "id": ids["picket"],
        "type": "picket",
        "fields": {
            "attendance": 35,
            "date": "2026-12-04",
            "date_precision": "exact",
            "place": "Gate of the consulate, Zhelsiz Lane (invented)",
            "police_action": "Dispersed the picket after twenty minutes",
            "reliability": "high",
            "sources": "Volunteer Asel, present at the gate",
        },
        "conflicts": {"attendance": [35, 40]},
        "deleted": False,
    }
    station = "Police station No. 7 of Kokterek district (invented)"
    detentions = [
        {
            "id": ids["detention1"],
            "type": "detention",
            "fields": {
                "charges": "Art. 488 Administrative Code",
                "detained_at": "2026-12-04T11:20",
                "held_at": station,
                "person_name": "Aigul Demokyzy",
                "picket_id": ids["picket"],
                "released_at": RELEASED_AT,
                "sources": "Volunteer Asel saw the arrest",
            },
            "conflicts": {},
            "deleted": False,
        },
        {
            "id": ids["detention2"],
            "type": "detention",
            "fields": {
                "charges": "Art. 488 Administrative Code",
                "detained_at": "2026-12-04T11:25",
                "held_at": station,
                "person_name": "Serik Samplebekov",
                "picket_id": ids["picket"],
                "sources": "Volunteer Asel saw the arrest",
            },
            "conflicts": {},
            "deleted": False,
        },
        {
            "id": ids["detention3"],
            "type": "detention",
            "fields": {
                "charges": "Art. 488 Administrative Code",
                "court": "Specialised administrative court No. 3 (invented)",
                "court_date": "2026-12-05",
                "detained_at": "2026-12-04T11:40",
                "fine_amount": 69000,
                "fine_currency": "KZT",
                "fine_paid": False,
                "held_at": "Temporary holding centre Birlik (invented)",
                "person_name": "Marat Fictionuly",
                "picket_id": ids["picket"],
                "sources": "Volunteer Bolat, from the court hearing",
            },
            "conflicts": {},
            "deleted": False,
        },
    ]
    relatives = [
        {
            "id": ids["relative1"],
            "type": "relative",
            "fields": {
                "date_precision": "unknown_day",
                "detained_since": "2018-03",
                "full_name": "Nurlan Placeholderuly",
                "name_latin": "Nurlan Placeholderuly",
                "petitioner": "Aigul Demokyzy",
                "relation": "brother",
                "sources": "Aigul Demokyzy, interviewed by volunteer Bolat",
                "status": "camp",
                "whereabouts": "not_disclosed",
            },
            "conflicts": {},
            "deleted": False,
        },
        {
            "id": ids["relative2"],
            "type": "relative",
            "fields": {
                "full_name": "Gulnara Inventova",
                "petitioner": "Serik Samplebekov",
                "relation": "mother",
                "sentence": "Fourteen years, per a letter from relatives",
                "sources": "Serik Samplebekov, interviewed by volunteer Bolat",
                "status": "prison",
                "whereabouts": "acknowledged",
            },
            "conflicts": {},
            "deleted": False,
        },
    ]
    assert records(admin) == [picket, *detentions, *relatives]
    assert records(admin, "--type", "detention") == detentions

    conflicts = as_json(admin.run("conflicts", "--format", "json"))
    hlc_b, hlc_a = _hlcs(conflicts)
    assert hlc_b > hlc_a  # Bolat's edit came later, so it is the winner (index 0)
    assert conflicts == [
        {
            "record_id": ids["picket"],
            "type": "picket",
            "field": "attendance",
            "values": [
                {"value": 35, "device_id": devs["volunteer_b"], "device_name": "Bolat's phone"},
                {"value": 40, "device_id": devs["volunteer_a"], "device_name": "Asel's phone"},
            ],
        }
    ]
    # Names are sealed: Erlan's arrives with his first sync; a volunteer reads only its own.
    roster = [
        ("admin", "admin", "Dana's laptop"),
        ("volunteer_a", "volunteer", "Asel's phone"),
        ("volunteer_b", "volunteer", "Bolat's phone"),
        ("coordinator", "coordinator", None),
    ]
    expected = [
        {"device_id": devs[who], "name": name, "role": role, "status": "active"}
        for who, role, name in roster
    ]
    assert as_json(admin.run("devices", "--format", "json")) == expected
    assert as_json(day.volunteer_a.run("devices", "--format", "json")) == [
        {**d, "name": d["name"] if d["device_id"] == devs["volunteer_a"] else None}
        for d in expected
    ]

    # Resolve by keeping Asel's count; both coordinators then see the same records.
    admin.run("resolve", ids["picket"], "attendance", "--keep", "1")
    assert as_json(admin.run("conflicts", "--format", "json")) == []
    resolved = {**picket, "fields": {**picket["fields"], "attendance": 40}, "conflicts": {}}
    assert records(admin) == [resolved, *detentions, *relatives]
    assert "pushed 1 bundle(s): 1 accepted" in admin.run("sync").out
    day.coordinator.run("sync")
    assert records(day.coordinator) == [resolved, *detentions, *relatives]
    admin.run("sync")
    assert [d["name"] for d in as_json(admin.run("devices", "--format", "json"))] == [
        name for _, _, name in roster[:3]
    ] + ["Erlan's laptop"]

    shown = as_json(day.coordinator.run("show", ids["picket"], "--format", "json"))
    assert [
        (h["field"], h["value"], h["head"]) for h in shown["history"] if h["field"] == "attendance"
    ] == [
        ("attendance", 40, False),
        ("attendance", 35, False),
        ("attendance", 40, True),
    ]
    assert {k: shown[k] for k in ("id", "type", "fields", "conflicts", "deleted")} == resolved
    assert shown["duplicates"] == []

    # Exports: JSON is the records list; CSV one sheet (of a type, or of all), with
    # who recorded each record, a byte-order mark for spreadsheet programs.
    admin.run("export", "--format", "json", "--out", str(tmp_path / "out.json"))
    assert json.loads((tmp_path / "out.json").read_text()) == [resolved, *detentions, *relatives]
    admin.run("export", "--format", "csv", "--out", str(tmp_path / "out.csv"))
    raw = (tmp_path / "out.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    fields = [
        c for name in export_columns()[3:]
        for c in ([name, "picket_date", "picket_place"] if name == "picket_id" else [name])
    ]  # fmt: skip
    assert list(rows[0]) == ["id", "type", "recorded_by", "recorded_at", *fields, "conflicts"]
    assert [(r["id"], r["type"], r["conflicts"]) for r in rows] == [
        (rec["id"], rec["type"], "") for rec in [resolved, *detentions, *relatives]
    ]
    assert [r["recorded_by"] for r in rows] == ["Asel's phone"] * 3 + ["Bolat's phone"] * 3
    assert rows[0]["attendance"] == "40"
    assert rows[3]["fine_amount"] == "69000" and rows[3]["fine_paid"] == "false"
    assert as_json(admin.run("records", "--format", "json")) == json.loads(
        (tmp_path / "out.json").read_text()
    )
    csv_out = admin.run("records", "--format", "csv", "--hide-deleted").out
    assert csv_out == raw.decode("utf-8-sig")
    admin.run("export", "--format", "csv", "--type", "detention", "--out", str(tmp_path / "d.csv"))
    sheet = list(csv.reader(io.StringIO((tmp_path / "d.csv").read_text(encoding="utf-8-sig"))))
    assert sheet[0] == [
        "id", "recorded_by", "recorded_at", "person_name", "picket_id", "picket_date",
        "picket_place", "detained_at", "held_at", "released_at", "charges", "court",
        "court_date", "sentence_days", "fine_amount", "fine_currency", "fine_paid", "sources",
        "reliability", "notes", "same_as", "conflicts",
    ]  # fmt: skip
    assert [(r[0], r[5], r[6]) for r in sheet[1:]] == [
        (d["id"], "2026-12-04", PICKET["place"]) for d in detentions
    ]

    # Status of each kind of device.
    st = status(admin)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", st["last_sync"])
    assert {k: st[k] for k in ("role", "workspace", "device_id", "epoch", "outbox")} == {
        "role": "admin",
        "workspace": "Zhelsiz Lane pickets",
        "device_id": devs["admin"],
        "epoch": 1,
        "outbox": 0,
    }
    vst = status(day.volunteer_b)
    assert {k: vst[k] for k in ("role", "workspace", "workspace_id", "device_id", "outbox")} == {
        "role": "volunteer",
        "workspace": "Zhelsiz Lane pickets",  # carried by the invite
        "workspace_id": st["workspace_id"],
        "device_id": devs["volunteer_b"],
        "outbox": 0,
    }

    # Every device of the workspace prints the same safety number.
    numbers = {d.run("safety-number").out for d in (admin, day.volunteer_a, day.coordinator)}
    assert len(numbers) == 1 and re.fullmatch(r"(\d{5} ){4}\d{5}\n", numbers.pop())

    # The server never saw a value, a field name or a type name.
    assert grep_dir(server.data_dir, plaintext_markers()) == {}
