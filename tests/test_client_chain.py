"""A server that withholds or alters a bundle is caught by the coordinator; a rejected
bundle is reported and kept aside; a wiped device holds nothing."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from clientkit import PICKET, Team, as_json, new_team, records, server, status  # noqa: F401
from lying_proxy import LyingProxy

from client_sync.demo import ServerProcess


def test_withheld_and_altered_bundles_are_reported(proxied: tuple[Team, LyingProxy]) -> None:
    team, proxy = proxied
    admin = team.found()
    vol = team.enroll(admin, "vol")
    ids = [vol.run("add", "picket", *PICKET, "--set", f"attendance={n}").last for n in range(5)]
    vol.run("sync")
    device = team.ids["vol"]

    def withhold_and_alter(status_code: int, body: Any) -> tuple[int, Any]:
        kept = []
        for bundle in body["bundles"]:
            if bundle["device_id"] == device and bundle["seq"] == 2:
                continue  # the operator drops bundle 2
            if bundle["device_id"] == device and bundle["seq"] == 4:
                cell = bundle["cells"][0]
                cell["ct"] = ("B" if cell["ct"][0] == "A" else "A") + cell["ct"][1:]
            kept.append(bundle)
        body["bundles"] = kept
        return status_code, body

    def alter_one(status_code: int, bundle: Any) -> tuple[int, Any]:
        status_code, body = withhold_and_alter(status_code, {"bundles": [bundle]})
        return status_code, body["bundles"][0]

    proxy.lie("GET", r"/changes$", withhold_and_alter)
    # The same lies where a missing bundle is asked for by device and number.
    gone = {"error": {"code": "unknown_bundle", "message": "no such bundle"}}
    proxy.lie("GET", rf"/bundles/{device}/2$", lambda _s, _b: (404, gone))
    proxy.lie("GET", rf"/bundles/{device}/4$", alter_one)
    result = admin.run("sync")
    warnings = result.err.strip().splitlines()
    assert f"warning: device {device}: bundle 2 missing between 1 and 3" in warnings
    assert any(
        w.startswith(f"warning: device {device}: bundle 4 (") and "failed verification" in w
        for w in warnings
    ), warnings
    # The altered bundle counts as missing too: its claims are not signed.
    assert f"warning: device {device}: bundle 4 missing between 3 and 5" in warnings
    assert "warning: 1 bundle(s) failed verification and were not merged" in warnings
    # Neither the dropped nor the altered record is merged; the others are.
    assert [r["id"] for r in records(admin)] == [ids[0], ids[2], ids[4]]
    problems = status(admin)["problems"]
    assert any("bundle 2 missing between 1 and 3" in p for p in problems)
    assert any("failed verification" in p for p in problems)


def test_a_rejected_bundle_is_kept_aside(server: ServerProcess, tmp_path: Path) -> None:  # noqa: F811
    """A phone restored from a backup reuses its bundle numbers: the server refuses the fork."""
    team = new_team(server, tmp_path)
    admin = team.found()
    vol = team.enroll(admin, "vol")
    clone = team.device("clone")
    shutil.copytree(vol.home, clone.home)
    vol.run("add", "picket", *PICKET, "--set", "attendance=1")
    vol.run("sync")
    clone.run("add", "picket", *PICKET, "--set", "attendance=2")
    result = clone.run("sync")
    assert "1 rejected" in result.out
    assert "was rejected: fork:" in result.err
    st = status(clone)
    assert st["outbox"] == 0
    assert [(r["seq"], r["code"]) for r in st["rejected"]] == [(1, "fork")]
    assert "fork" in clone.run("status").err


def test_wipe(server: ServerProcess, tmp_path: Path) -> None:  # noqa: F811
    team = new_team(server, tmp_path)
    admin = team.found()
    vol = team.enroll(admin, "vol")
    record_id = vol.run("add", "picket", *PICKET, "--set", "attendance=3").last
    photo = tmp_path / "van.jpg"
    photo.write_bytes(b"\xff\xd8 a photo not sent yet")
    vol.run("attach", record_id, str(photo))  # its sealed chunk waits in the profile
    assert len(list((vol.home / "chunks").iterdir())) == 1
    assert vol.run("wipe", check=False).rc == 2
    assert vol.run("wipe", "--yes").out == "wiped this device's fieldsync profile\n"
    assert not vol.home.exists()
    assert vol.run("status", check=False).rc == 1
    # A wiped coordinator can join again with a new invite; its old device is revoked.
    assert as_json(admin.run("devices", "--format", "json"))[1]["status"] == "active"
    admin.run("revoke", team.ids["vol"])
    assert as_json(admin.run("devices", "--format", "json"))[1]["status"] == "revoked"
