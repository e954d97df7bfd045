"""The picket day of `make demo`, done in the workbench alone, in a real browser.

Four people, each at their own `fieldsync ui` (a fresh profile directory: the
workbench opens on its setup page): Dana founds the workspace and invites the
others by QR code and invite text; Asel and Bolat join and capture (Asel's first
picket has an impossible date, corrected in place); Bolat adds his count of the
attendance to Asel's picket; Erlan joins as a coordinator and Dana approves him.
After the syncs Dana resolves the attendance conflict by clicking, marks a likely
duplicate, exports per-type CSV, revokes Bolat's phone and rotates the keys. No
page requests anything outside its own origin. Screenshots of the main pages go to
docs/images/ when FIELDSYNC_SCREENSHOTS is set (`make screenshots`).
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browserkit import Person, browser, wait_for_job  # noqa: F401  (browser: a fixture)
from clientkit import server  # noqa: F401  (a fixture)

from client_sync.demo import DETENTIONS, PICKET, RELATIVES, ServerProcess

PASS = "a passphrase of four words"
SHOTS = Path(__file__).resolve().parents[1] / "docs" / "images"


@pytest.fixture
def people(browser: Any, tmp_path: Path) -> Iterator[dict[str, Person]]:  # noqa: F811
    crowd: dict[str, Person] = {}

    def person(name: str) -> Person:
        crowd[name] = Person(name, tmp_path / name, PASS, browser).start()
        return crowd[name]

    yield crowd
    for p in crowd.values():
        p.stop()


def shot(person: Person, name: str) -> None:
    if os.environ.get("FIELDSYNC_SCREENSHOTS"):
        SHOTS.mkdir(parents=True, exist_ok=True)
        person.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def start(people: dict[str, Person], name: str, browser: Any, root: Path) -> Person:  # noqa: F811
    people[name] = Person(name, root / name, PASS, browser).start()
    return people[name]


def found(p: Person, url: str, code: str) -> None:
    page = p.page
    form = page.locator("form[action='/setup/init']")
    form.get_by_label("Server address").fill(url)
    form.get_by_label("Workspace name").fill("Zhelsiz Lane pickets")
    form.get_by_label("One-time code from the server's operator").fill(code)
    form.get_by_label("A name for this device").fill("Dana's laptop")
    form.get_by_label("Passphrase", exact=True).fill(PASS)
    form.get_by_label("The passphrase again").fill(PASS)
    form.get_by_role("button", name="Found the workspace").click()
    page.wait_for_selector("h1:has-text('Zhelsiz Lane pickets')")


def invite(admin: Person, role: str) -> str:
    page = admin.go("/devices")
    page.get_by_label("Role", exact=True).select_option(role)
    page.get_by_role("button", name="Make an invite").click()
    assert page.locator(".qr svg").count() == 1  # the QR code, drawn in the page
    text = page.locator(".qr + p code").inner_text().strip()
    assert text.startswith("fieldsync-invite:")
    return str(text)


def join(p: Person, invite_text: str, name: str) -> str:
    page = p.page
    form = page.locator("form[action='/setup/join']")
    form.get_by_label("Invite").fill(invite_text)
    form.get_by_label("A name for this device").fill(name)
    form.get_by_label("Passphrase", exact=True).fill(PASS)
    form.get_by_label("The passphrase again").fill(PASS)
    form.get_by_role("button", name="Join").click()
    page.wait_for_selector("h1:has-text('Zhelsiz Lane pickets')")
    return str(page.locator("[data-device-id]").get_attribute("data-device-id"))


def fill(page: Any, values: dict[str, str]) -> None:
    """Fill a capture form by its inputs' names (the schema's field names)."""
    for name, value in values.items():
        box = page.locator(f"[name='{name}']")
        if box.evaluate("e => e.tagName") == "SELECT":
            box.select_option(value)
        else:
            box.fill(value)


def capture(p: Person, record_type: str, values: dict[str, str], record: str | None = None) -> str:
    page = p.go(f"/capture/{record_type}" + (f"?record={record}" if record is not None else ""))
    fill(page, values)
    page.get_by_role("button", name="Seal and save").click()
    page.wait_for_selector("p.ok code")
    return str(page.locator("p.ok code").inner_text().strip())


def sync(p: Person) -> str:
    page = p.go("/outbox")
    page.get_by_role("button", name="Sync now").click()
    wait_for_job(page)
    assert page.locator("p.error").count() == 0, page.locator("p.error").all_inner_texts()
    return str(page.locator("main").inner_text())


def test_the_day_in_the_workbench_alone(
    browser: Any,  # noqa: F811
    server: ServerProcess,  # noqa: F811
    tmp_path: Path,
    people: dict[str, Person],
) -> None:
    dana = start(people, "dana", browser, tmp_path)
    shot(dana, "setup")
    found(dana, server.url, server.workspace_code())
    asel = start(people, "asel", browser, tmp_path)
    join(asel, invite(dana, "volunteer"), "Asel's phone")
    bolat = start(people, "bolat", browser, tmp_path)
    bolat_id = join(bolat, invite(dana, "volunteer"), "Bolat's phone")
    erlan = start(people, "erlan", browser, tmp_path)
    erlan_id = join(erlan, invite(dana, "coordinator"), "Erlan's laptop")
    page = dana.go("/devices")
    page.locator(f"tr:has(code:text-is('{erlan_id}'))").get_by_role(
        "button", name="Approve"
    ).click()
    shot(dana, "devices")

    # Asel's picket: an impossible date, refused beside its field, corrected in place.
    page = asel.go("/capture/picket")
    fill(page, {**PICKET, "date": "2026-02-30"})
    page.get_by_role("button", name="Seal and save").click()
    error = page.locator("#f-date-error")
    assert error.inner_text() == "No such day in the calendar."
    assert page.locator("[name='place']").input_value() == PICKET["place"]  # kept
    assert page.locator("[name='attendance']").input_value() == PICKET["attendance"]
    shot(asel, "capture-error")
    page.locator("[name='date']").fill(PICKET["date"])
    page.get_by_role("button", name="Seal and save").click()
    picket = str(page.locator("p.ok code").inner_text().strip())
    shot(asel, "capture")
    detentions = [
        capture(asel, "detention", {**DETENTIONS[0], "picket_id": picket}),
        capture(asel, "detention", {**DETENTIONS[1], "picket_id": picket}),
    ]
    fine = {k: v for k, v in DETENTIONS[2].items() if k != "fine_paid"}
    detentions.append(capture(bolat, "detention", {**fine, "picket_id": picket, "fine_paid": "no"}))
    for rel in RELATIVES:
        capture(bolat, "relative", rel)
    # Bolat counted 35: his value is added to Asel's picket by its id.
    capture(bolat, "picket", {"attendance": "35"}, record=picket)
    page = asel.go("/outbox")
    assert page.locator("tbody tr").count() == 4  # three captures and her device name
    shot(asel, "outbox")
    assert "Sent" in sync(asel)
    sync(bolat)
    capture(asel, "detention", {"released_at": "2026-12-04T19:45"}, record=detentions[0])
    sync(asel)

    # Dana pulls, resolves the attendance conflict by keeping Asel's count.
    sync(dana)
    page = dana.go("/conflicts")
    shot(dana, "conflicts")
    box = page.locator("section.conflict")
    assert box.count() == 1
    values = box.locator(".value > p:first-child").all_inner_texts()
    assert values[:2] == ["35", "40"]  # the winner (Bolat's later edit) first
    box.locator(".value", has_text="Asel's phone").get_by_role(
        "button", name="Keep this value"
    ).click()
    assert "No open conflicts." in dana.go("/conflicts").locator("main").inner_text()
    page = dana.go("/records?type=picket")
    shot(dana, "records")
    row = page.locator("tbody tr").first
    assert "40" in row.inner_text() and "conflict" not in row.inner_text()
    page = dana.go(f"/records/{picket}")
    assert page.locator("text=Linked records").count() == 1
    assert page.locator("a", has_text="Aigul Demokyzy").count() == 1
    shot(dana, "record")
    sync(dana)

    # Erlan sees the same day, resolved.
    sync(erlan)
    page = erlan.go(f"/records/{picket}")
    assert "40" in page.locator("table.fields").inner_text()
    history = page.locator("h2:has-text('History') + table").inner_text()
    assert "Bolat's phone" in history and "Asel's phone" in history

    # Exports of exactly a type, for spreadsheet programs.
    page = dana.go("/export")
    shot(dana, "export")
    with page.expect_download() as got:
        page.get_by_role("link", name="CSV").nth(1).click()  # detentions
    raw = Path(got.value.path()).read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert sorted(r["person_name"] for r in rows) == sorted(d["person_name"] for d in DETENTIONS)
    assert {r["picket_place"] for r in rows} == {PICKET["place"]}
    assert {r["recorded_by"] for r in rows} == {"Asel's phone", "Bolat's phone"}

    # Dana revokes Bolat's phone (a volunteer: no rotation needed), then rotates anyway.
    page = dana.go("/devices")
    page.locator(f"tr:has(code:text-is('{bolat_id}'))").get_by_role("link", name="Revoke…").click()
    assert "It can no longer sync" in page.locator("main").inner_text()
    page.get_by_role("button", name="Revoke this device").click()
    wait_for_job(page)
    assert "The device was revoked." in page.locator("main").inner_text()
    page = dana.go("/devices")
    page.get_by_role("button", name="Rotate and re-seal").click()
    wait_for_job(page)
    assert re.search(r"now epoch 2", page.locator("main").inner_text())
    listed = dana.cli("devices", "--format", "json")
    assert '"status": "revoked"' in listed.stdout, listed.stderr
    assert '"epoch": 2' in dana.cli("status", "--format", "json").stdout

    for person in people.values():
        assert person.outside_origin() == [], person.name
