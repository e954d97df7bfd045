"""Expected failures: one `error:` line on stderr, a documented exit code, no traceback."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from clientkit import (  # noqa: F401
    PASSPHRASE,
    PICKET,
    Team,
    assert_one_line_error,
    new_team,
    server,
    sets,
    status,
)
from lying_proxy import LyingProxy

from client_sync.demo import Device, ServerProcess
from client_sync.errors import GENERAL, INTEGRITY, NETWORK, NOT_ALLOWED, USAGE
from client_sync.vault import Vault
from protocol import keylog, keys, roster
from protocol.encoding import b64d


@pytest.fixture(scope="module")
def team(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Team:  # noqa: F811
    return new_team(server, tmp_path_factory.mktemp("errors"))


@pytest.fixture(scope="module")
def admin(team: Team) -> Device:
    return team.found()


@pytest.fixture(scope="module")
def volunteer(team: Team, admin: Device) -> Device:
    return team.enroll(admin, "volunteer")


@pytest.fixture(scope="module")
def record_id(admin: Device, volunteer: Device) -> str:
    rid = volunteer.run("add", "picket", *PICKET, *sets(date="2026-12-04", attendance=12)).last
    volunteer.run("sync")
    admin.run("sync")
    return rid


def test_bad_field_value(volunteer: Device) -> None:
    result = volunteer.run("add", "picket", *PICKET, "--set", "attendance=forty", check=False)
    assert_one_line_error(result, GENERAL)
    assert result.err == "error: picket.attendance: Not a whole number.\n"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["add", "picket", "--set", "crowd=12"], "picket.crowd: no such field"),
        (["add", "detention", "--set", "fine_currency=tenge"], "detention.fine_currency"),
        (["add", "picket", "--set", "date=2026-02-30"], "picket.date: No such day"),
        (["add", "relative", "--set", "status=missing"], "relative.status: Must be one of"),
    ],
)
def test_bad_values_name_the_field(volunteer: Device, args: list[str], fragment: str) -> None:
    assert_one_line_error(volunteer.run(*args, check=False), GENERAL, fragment)


def test_bad_json_file(volunteer: Device, tmp_path: Path) -> None:
    path = tmp_path / "values.json"
    path.write_text('{"attendance": "many"}')
    result = volunteer.run("add", "picket", "--json", str(path), check=False)
    assert_one_line_error(result, GENERAL, "picket.attendance: Not a whole number.")
    path.write_text("[1, 2]")
    result = volunteer.run("add", "picket", "--json", str(path), check=False)
    assert_one_line_error(result, USAGE, "one JSON object")


@pytest.mark.parametrize(
    "args",
    [
        ["records"],
        ["records", "--format", "json"],
        ["show", "AAAAAAAAAAAAAAAAAAAAAA"],
        ["conflicts"],
        ["resolve", "AAAAAAAAAAAAAAAAAAAAAA", "attendance", "--keep", "0"],
        ["export", "--format", "csv", "--out", "x.csv"],
    ],
)
def test_a_volunteer_cannot_read(volunteer: Device, args: list[str]) -> None:
    result = volunteer.run(*args, check=False)
    assert_one_line_error(result, NOT_ALLOWED, "volunteer", "cannot")


@pytest.mark.parametrize(
    "args",
    [
        ["invite"],
        ["approve", "AAAAAAAAAAAAAAAAAAAAAA"],
        ["revoke", "AAAAAAAAAAAAAAAAAAAAAA"],
        ["rotate"],
    ],
)
def test_a_volunteer_cannot_change_the_roster(volunteer: Device, args: list[str]) -> None:
    assert_one_line_error(volunteer.run(*args, check=False), NOT_ALLOWED, "admin")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["add"], "Missing argument 'TYPE'"),
        (["add", "arrest", "--set", "a=b"], "'arrest' is not one of"),
        (["add", "picket", "--set", "attendance"], "--set takes FIELD=VALUE"),
        (["add", "picket"], "nothing to record"),
        (["resolve", "AAAAAAAAAAAAAAAAAAAAAA", "attendance"], "exactly one of --value"),
        (["wipe"], "--yes"),
        (["edit", "not-an-id", "--set", "a=b"], "not a record id"),
        (["nonsense"], "No such command"),
        (["records", "--format", "xml"], "'xml' is not one of"),
    ],
)
def test_usage_errors(volunteer: Device, args: list[str], fragment: str) -> None:
    assert_one_line_error(volunteer.run(*args, check=False), USAGE, fragment)


def test_edit_of_a_record_made_elsewhere_needs_its_type(volunteer: Device, admin: Device) -> None:
    rid = admin.run("add", "picket", *PICKET, "--set", "attendance=3").last
    result = volunteer.run("edit", rid, "--set", "attendance=4", check=False)
    assert_one_line_error(result, USAGE, "--type")


def test_wrong_passphrase(volunteer: Device) -> None:
    result = volunteer.run("status", check=False)
    assert result.rc == 0
    wrong = Device("wrong", volunteer.home, "not the passphrase", env={"FIELDSYNC_KDF_FAST": "1"})
    assert_one_line_error(wrong.run("status", check=False), NOT_ALLOWED, "wrong passphrase")


def test_no_profile(team: Team) -> None:
    nobody = team.device("nobody")
    assert_one_line_error(nobody.run("status", check=False), GENERAL, "no fieldsync profile")


def test_coordinator_reading(admin: Device, record_id: str) -> None:
    unknown = "AAAAAAAAAAAAAAAAAAAAAA"
    assert_one_line_error(admin.run("show", unknown, check=False), GENERAL, "no record")
    result = admin.run("resolve", record_id, "attendance", "--keep", "0", check=False)
    assert_one_line_error(result, GENERAL, "no open conflict")
    result = admin.run("export", "--format", "csv", "--out", "/nonexistent/dir/x.csv", check=False)
    assert_one_line_error(result, GENERAL, "cannot write")


def test_server_down(proxied: tuple[Team, LyingProxy]) -> None:
    team, proxy = proxied
    admin = team.found()
    vol = team.enroll(admin, "vol")
    vol.run("add", "picket", *PICKET, "--set", "attendance=5")
    proxy.stop()
    started = time.monotonic()
    result = vol.run("sync", check=False)
    assert_one_line_error(result, NETWORK, "cannot reach the server", "rerun")
    assert time.monotonic() - started < 10
    assert status(vol)["outbox"] == 1  # nothing lost: the capture waits for the next sync
    assert (
        vol.run("add", "picket", *PICKET, "--set", "attendance=6").rc == 0
    )  # capture works offline


def _drop_last_event(status_code: int, body: Any) -> tuple[int, Any]:
    body["events"] = body["events"][:-1]
    body["length"] = len(body["events"])
    return status_code, body


def _forge_last_event(status_code: int, body: Any) -> tuple[int, Any]:
    body["events"][-1]["at"] += 1
    return status_code, body


def _unsigned_event(status_code: int, body: Any) -> tuple[int, Any]:
    body["events"][-1]["sig"] = "A" * 86
    return status_code, body


@pytest.mark.parametrize(
    ("rewrite", "fragment"),
    [
        (_drop_last_event, "rolled back"),
        (_forge_last_event, "does not verify"),
        (_unsigned_event, "does not verify"),
    ],
)
def test_a_lying_key_log_is_refused(
    proxied: tuple[Team, LyingProxy], rewrite: Any, fragment: str
) -> None:
    team, proxy = proxied
    admin = team.found()
    vol = team.enroll(admin, "vol")
    vol.run("sync")
    admin.run("sync")  # both have now seen the whole log, the enrollment included
    proxy.lie("GET", r"/log$", rewrite)
    for dev in (vol, admin):
        result = dev.run("sync", check=False)
        assert_one_line_error(result, INTEGRITY, fragment)
    assert_one_line_error(admin.run("safety-number", check=False), INTEGRITY, fragment)


def test_a_forked_key_log_is_refused(proxied: tuple[Team, LyingProxy]) -> None:
    """An operator who shows devices two different, validly signed histories is caught."""
    team, proxy = proxied
    admin = team.found()
    vol = team.enroll(admin, "vol")
    vol.run("sync")
    admin.run("sync")
    # The test plays a coerced admin key: it opens the admin's vault to sign an
    # alternative event at the position of the enrollment every device has seen.
    _, saved = Vault.open(admin.home / "profile.vault", PASSPHRASE)
    key = keys.signing_key(b64d(saved["device_seed"]))
    events = saved["log"]
    before = keylog.verify_log(events[:-1], saved["root"])
    now = int(time.time())
    other = roster.invite(before, key, keys.signing_key(bytes(32)), "volunteer", now + 60, now)

    def fork(status_code: int, body: Any) -> tuple[int, Any]:
        body["events"] = [*body["events"][: len(events) - 1], other]
        body["length"] = len(body["events"])
        return status_code, body

    proxy.lie("GET", r"/log$", fork)
    assert_one_line_error(vol.run("sync", check=False), INTEGRITY, "fork")
    # A device that never saw the enrollment cannot tell: this is why safety numbers
    # are compared aloud.


def test_a_used_or_expired_invite(admin: Device, team: Team) -> None:
    invite = admin.run("invite").last
    team.device("first").run("join", invite)
    result = team.device("second").run("join", invite, check=False)
    assert result.rc != 0
    assert_one_line_error(result, result.rc)
    assert not (team.root / "second" / "profile.vault").exists()

    # About five seconds: long enough to reach the server on a loaded machine (an invite
    # that expires before it is logged is refused), short enough to wait out.
    started = time.time()
    short = admin.run("invite", "--expires-in", "0.0015").last
    time.sleep(max(0.0, started + 6.5 - time.time()))
    result = team.device("late").run("join", short, check=False)
    assert result.rc != 0
    assert_one_line_error(result, result.rc)

    damaged = invite[:-6] + "AAAAAA"
    assert_one_line_error(
        team.device("damaged").run("join", damaged, check=False), GENERAL, "invite"
    )


def test_a_revoked_device(team: Team, admin: Device) -> None:
    gone = team.enroll(admin, "lost-phone")
    gone.run("add", "picket", *PICKET, "--set", "attendance=7")
    admin.run("revoke", team.ids["lost-phone"])
    result = gone.run("sync", check=False)
    assert_one_line_error(result, NOT_ALLOWED, "revoked", "1 sealed capture(s)", "destroyed")
    # It verified its revocation in the key log: it keeps nothing it can no longer deliver.
    st = status(gone)
    assert (st["status"], st["outbox"], st["awaiting_receipt"]) == ("revoked", 0, 0)
    refused = gone.run("add", "picket", *PICKET, check=False)
    assert_one_line_error(refused, NOT_ALLOWED, "revoked", "nothing was sealed")


@pytest.mark.parametrize(
    ("passphrase", "why"),
    [
        ("123456", "it is one of the most common passwords"),
        ("Пароль", "it is one of the most common passwords"),
        ("aaaaaaaaaaaaaaaa", "it repeats one or two characters"),
        ("20261204153045", "it is only digits"),
        ("short one", "it is shorter than 12 characters"),
        ("four random words here", None),
    ],
)
def test_weak_passphrases_are_named(passphrase: str, why: str | None) -> None:
    from client_sync.profile import passphrase_weakness

    assert passphrase_weakness(passphrase) == why


def test_a_weak_passphrase_is_warned_about_once_the_profile_exists(
    server: ServerProcess,  # noqa: F811
    tmp_path: Path,
) -> None:
    team = new_team(server, tmp_path)
    admin = team.found()
    weak = team.device("weak", passphrase="123456")
    result = weak.run("join", admin.run("invite").last)
    assert result.err == (
        "warning: this passphrase is weak (it is one of the most common passwords): whoever"
        " takes this device can guess it; four or five random words are stronger and easy to"
        " remember\n"
    )
