"""Access keys (issue 5) through the command line: invites, joining, revocation, rotation,
re-key and safety numbers, each checked against what the server then holds.

Every test drives the real `fieldsync` and a real `fieldsync-server run` (two
gunicorn workers); what the server holds is read from its files, as whoever seizes
them would, and what a device holds from its vault, as its owner could.
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from accesskit import (
    backup,
    dump_bundles,
    epoch_keys,
    invite_fields,
    log_length,
    profile,
    reencode_invite,
    stored_bundles,
    vault_state,
)
from clientkit import (
    PICKET,
    PICKET_REQUIRED,
    Team,
    as_json,
    new_team,
    records,
    server,  # noqa: F401  (a fixture)
    sets,
    status,
)
from lying_proxy import LyingProxy
from serverkit import Kit

from client_sync import enrol, keyring, outbox
from client_sync.demo import Device, ServerProcess, client_command
from client_sync.errors import GENERAL, NETWORK, NOT_ALLOWED, ServerError
from protocol import crypto, keys, roster
from protocol.errors import InvalidBundle
from server import ingest
from server.store import Paths, connect, write
from server.store import keylog as stored_log


@pytest.fixture(scope="module")
def team(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Team:  # noqa: F811
    return new_team(server, tmp_path_factory.mktemp("access"))


@pytest.fixture(scope="module")
def admin(team: Team) -> Device:
    return team.found()


@pytest.fixture(scope="module")
def ws(admin: Device) -> str:
    return str(status(admin)["workspace_id"])


def _no_profile(dev: Device) -> bool:
    return not (dev.home / "profile.vault").exists()


# --- safety numbers ---------------------------------------------------------------------


def test_every_device_prints_the_same_safety_number_and_it_follows_the_roster(
    team: Team, admin: Device
) -> None:
    vol = team.enroll(admin, "sn-vol")
    coord = team.enroll(admin, "sn-coord", "coordinator")
    numbers = {d.run("safety-number").out for d in (admin, vol, coord)}
    assert len(numbers) == 1
    (number,) = numbers
    assert re.fullmatch(r"(\d{5} ){4}\d{5}\n", number)
    admin.run("revoke", team.ids["sn-vol"])
    after = {d.run("safety-number").out for d in (admin, coord)}
    assert len(after) == 1 and number not in after


# --- invites ----------------------------------------------------------------------------


def test_an_invite_works_once(
    team: Team,
    admin: Device,
    server: ServerProcess,  # noqa: F811
    ws: str,
) -> None:
    invite = admin.run("invite").last
    team.device("once-first").run("join", invite)
    length = log_length(server, ws)
    second = team.device("once-second")
    result = second.run("join", invite, check=False)
    assert (result.rc, result.err) == (
        NOT_ALLOWED,
        "error: this invite cannot be used: this invite was already used: ask for a new one\n",
    )
    assert _no_profile(second)
    assert log_length(server, ws) == length


def test_an_expired_invite_is_refused(
    team: Team,
    admin: Device,
    server: ServerProcess,  # noqa: F811
    ws: str,
) -> None:
    invite = admin.run("invite", "--expires-in", "0.0003").last  # about one second
    length = log_length(server, ws)
    time.sleep(max(0.0, invite_fields(invite)["expires"] + 1.1 - time.time()))
    expired = "error: this invite cannot be used: this invite has expired: ask for a new one\n"
    late = team.device("late")
    result = late.run("join", invite, check=False)
    assert (result.rc, result.err) == (NOT_ALLOWED, expired)
    # Moving the expiry later does not help: the server holds the logged one.
    later = reencode_invite(invite, expires=int(time.time()) + 3600)
    assert late.run("join", later, check=False).err == expired
    assert _no_profile(late)
    assert log_length(server, ws) == length


def test_a_tampered_invite_is_refused(
    team: Team,
    admin: Device,
    server: ServerProcess,  # noqa: F811
    ws: str,
) -> None:
    invite = admin.run("invite").last
    length = log_length(server, ws)
    dev = team.device("tampered")
    flipped = invite[:-1] + "A"  # the last character carries the closing brace
    result = dev.run("join", flipped, check=False)
    assert (result.rc, result.err) == (
        GENERAL,
        "error: this invite cannot be used: the invite is damaged: copy it again\n",
    )
    # Someone who holds the invite points it at their own server (a proxy that passes
    # everything on), or raises its role, and re-encodes it without the admin's key.
    proxy = LyingProxy("127.0.0.1", server.port).start()
    try:
        fields = invite_fields(invite)
        rerouted = fields["server"].replace(server.url, proxy.url)
        assert rerouted != fields["server"]
        altered = (
            "error: this invite cannot be used: the invite was altered after the admin signed it\n"
        )
        for changed in (
            reencode_invite(invite, server=rerouted),
            reencode_invite(invite, role="coordinator"),
        ):
            result = dev.run("join", changed, check=False)
            assert (result.rc, result.err) == (GENERAL, altered)
    finally:
        proxy.stop()
    assert _no_profile(dev)
    assert log_length(server, ws) == length
    team.device("untampered").run("join", invite)  # the invite itself is still good


def test_an_invite_for_another_workspace_is_refused(
    team: Team,
    admin: Device,
    server: ServerProcess,  # noqa: F811
    ws: str,
    tmp_path: Path,
) -> None:
    other = new_team(server, tmp_path)
    other_admin = other.found(workspace="Other pickets")
    other_ws = str(status(other_admin)["workspace_id"])
    theirs = other_admin.run("invite").last
    member = team.enroll(admin, "member-of-one")
    lengths = (log_length(server, ws), log_length(server, other_ws))

    # A device of this workspace is handed the other workspace's invite.
    result = member.run("join", theirs, check=False)
    assert (result.rc, result.err) == (
        GENERAL,
        f"error: a fieldsync profile already exists in {member.home}: set FIELDSYNC_HOME to"
        " another directory, or `fieldsync wipe --yes` first\n",
    )
    # An invite whose workspace and root do not belong together.
    dev = team.device("mismatch")
    mine = invite_fields(admin.run("invite").last)
    lengths = (lengths[0] + 1, lengths[1])  # that invite
    result = dev.run("join", reencode_invite(theirs, workspace=ws), check=False)
    assert (result.rc, result.err) == (
        NOT_ALLOWED,
        "error: this invite cannot be used: the signature does not verify with a device or"
        " live invite key of this workspace\n",
    )
    result = dev.run("join", reencode_invite(theirs, root=mine["root"]), check=False)
    assert (result.rc, result.err) == (
        GENERAL,
        "error: this invite cannot be used: the invite is for another workspace\n",
    )
    assert _no_profile(dev)
    assert (log_length(server, ws), log_length(server, other_ws)) == lengths


# --- joining ----------------------------------------------------------------------------


def test_a_volunteer_joins_alone_a_coordinator_reads_once_approved(
    team: Team, admin: Device, ws: str
) -> None:
    vol = team.device("joiner-vol")
    vol_id = vol.run("join", admin.run("invite").last).last
    rid = vol.run("add", "picket", *PICKET, *sets(attendance=7)).last
    assert "1 accepted" in vol.run("sync").out  # no approval needed

    coord = team.device("joiner-coord")
    coord_id = coord.run("join", admin.run("invite", "--role", "coordinator").last).last
    assert status(coord)["status"] == "pending"
    result = coord.run("records", check=False)
    assert (result.rc, result.err) == (
        NOT_ALLOWED,
        f"error: this coordinator is not approved yet: ask an admin to run `fieldsync approve"
        f" {coord_id}`, then `fieldsync sync`\n",
    )
    with pytest.raises(ServerError) as refused:
        keyring.client_for(profile(coord)).get(f"/v1/w/{ws}/changes", {"since": 0})
    assert (refused.value.status, refused.value.code) == (403, "not_approved")
    assert profile(coord).epoch_keys() == {}

    epoch = int(admin.run("rotate").out.split()[-1])  # approve seals every epoch, this one too
    admin.run("approve", coord_id)
    coord.run("sync")
    assert profile(coord).epoch_keys() == epoch_keys(admin)
    assert sorted(epoch_keys(admin)) == list(range(1, epoch + 1))
    assert rid in {r["id"] for r in records(coord)}
    roster_now = as_json(admin.run("devices", "--format", "json"))
    assert {
        d["device_id"]: d["status"] for d in roster_now if d["device_id"] in (vol_id, coord_id)
    } == {vol_id: "active", coord_id: "active"}


# --- revocation -------------------------------------------------------------------------

REVOKED = "error: this device was revoked by a coordinator; it can no longer sync\n"


def test_a_revoked_volunteer_is_refused_and_nothing_it_sends_is_stored(
    team: Team,
    admin: Device,
    server: ServerProcess,  # noqa: F811
    ws: str,
) -> None:
    vol = team.enroll(admin, "seized-phone")
    vol_id = team.ids["seized-phone"]
    kept = vol.run("add", "detention", *sets(person_name="Erlan Notrealov")).last
    vol.run("sync")
    client = keyring.client_for(profile(vol))
    for _ in range(6):  # every worker now holds the log with the volunteer in it
        client.get(f"/v1/w/{ws}/log", {"since": 0})

    assert admin.run("revoke", vol_id).out == f"revoked {vol_id}\n"
    lost = vol.run("add", "detention", *sets(person_name="Saule Unrealova")).last
    pending = vault_state(vol)["outbox"]
    result = vol.run("sync", check=False)
    # Its first capture (sent, not yet confirmed) and the unsent one: it can deliver
    # neither any more, so it keeps neither.
    assert (result.rc, result.err) == (
        NOT_ALLOWED,
        REVOKED.rstrip("\n") + "; the 2 sealed capture(s) it still kept were destroyed,"
        " as it can no longer deliver them\n",
    )
    assert (status(vol)["outbox"], status(vol)["awaiting_receipt"]) == (0, 0)
    # Sent by hand, past the client's own check, to every worker: each refuses.
    for _ in range(8):
        for call in (
            lambda: client.post(f"/v1/w/{ws}/push", {"bundles": pending}),
            lambda: client.get(f"/v1/w/{ws}/log", {"since": 0}),
        ):
            with pytest.raises(ServerError) as refused:
                call()
            assert (refused.value.status, refused.value.code) == (403, "revoked_device")
    mine = [b.bundle_id for b in stored_bundles(server, ws) if b.device_id == vol_id]
    assert len(mine) == 1 and mine[0] != pending[0]["bundle_id"]
    admin.run("sync")
    got = {r["id"] for r in records(admin)}
    assert (kept in got, lost in got) == (True, False)


def test_a_revoked_coordinator_can_no_longer_pull(team: Team, admin: Device, ws: str) -> None:
    coord = team.enroll(admin, "leaving-coord", "coordinator")
    coord_id = team.ids["leaving-coord"]
    coord.run("sync")
    epoch = status(admin)["epoch"]
    assert admin.run("revoke", coord_id).out == (
        f"revoked {coord_id}\nrotated the epoch key: now epoch {epoch + 1}\n"
    )
    result = coord.run("sync", check=False)
    assert (result.rc, result.err) == (NOT_ALLOWED, REVOKED)
    with pytest.raises(ServerError) as refused:
        keyring.client_for(profile(coord)).get(f"/v1/w/{ws}/changes", {"since": 0})
    assert (refused.value.status, refused.value.code) == (403, "revoked_device")
    # The new epoch key is sealed to the remaining keyholders only.
    log = profile(admin).log()
    assert sorted(dev for n, dev in log.sealed if n == epoch + 1) == log.active_keyholders()
    assert coord_id not in log.active_keyholders()


def test_a_push_that_commits_after_its_device_was_revoked_stores_nothing(
    kit: Kit, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The revoke lands between the push's signature check and its write transaction
    (another worker, another admin): the push is refused inside the transaction."""
    vol = kit.member("volunteer")
    bundle = kit.seal(vol, {"place": "Invented Gate"})
    path = Paths(Path(app.config["DATA_DIR"])).workspace_db(kit.workspace)
    judge = ingest.check_alone

    def revoke_meanwhile(*args: Any) -> Any:
        event = roster.revoke(kit.state, kit.founder.key, vol.device_id, kit.now())
        conn = connect(path, create=False)
        try:
            with write(conn):
                stored_log.append(conn, str(path), event, kit.now())
        finally:
            conn.close()
        monkeypatch.setattr(ingest, "check_alone", judge)
        return judge(*args)

    monkeypatch.setattr(ingest, "check_alone", revoke_meanwhile)
    resp = kit.push(vol, [bundle])
    assert (resp.status, resp.code) == (403, "revoked_device")
    conn = connect(path, create=False)
    try:
        assert conn.execute("SELECT count(*) FROM bundles").fetchone()[0] == 0
    finally:
        conn.close()


# --- rotation and re-key ----------------------------------------------------------------


def _opens(bundle: Any, epoch_private: dict[int, bytes], ws: str) -> bool:
    """Does any of these epoch keys open the bundle's stored data key?"""
    for n, priv in epoch_private.items():
        for info_epoch in {n, bundle.key_epoch}:
            try:
                crypto.open_data_key(bundle.sealed_key, priv, ws, info_epoch, bundle.bundle_id)
            except InvalidBundle:
                continue
            return True
    return False


def test_records_before_and_after_a_rotation_all_decrypt(
    server: ServerProcess,  # noqa: F811
    tmp_path: Path,
) -> None:
    team = new_team(server, tmp_path)
    admin = team.found()
    ws = str(status(admin)["workspace_id"])
    vol = team.enroll(admin, "vol")
    coord = team.enroll(admin, "coord", "coordinator")
    before = vol.run("add", "picket", *PICKET, *sets(attendance=1)).last
    vol.run("sync")
    assert admin.run("rotate").out == "rotated the epoch key: now epoch 2\n"
    # Sealed offline to epoch 1 after the rotation, delivered later: still accepted.
    offline = vol.run("add", "picket", *PICKET, *sets(attendance=2)).last
    vol.run("sync")
    assert status(vol)["epoch"] == 2
    after = vol.run("add", "picket", *PICKET, *sets(attendance=3)).last
    vol.run("sync")
    assert [(b.epoch, b.key_epoch) for b in stored_bundles(server, ws)] == [
        (1, 1),
        (1, 1),
        (2, 2),
    ]
    coord.run("sync")
    expected = [
        (before, {**PICKET_REQUIRED, "attendance": 1}),
        (offline, {**PICKET_REQUIRED, "attendance": 2}),
        (after, {**PICKET_REQUIRED, "attendance": 3}),
    ]
    assert [(r["id"], r["fields"]) for r in records(coord)] == expected
    newcomer = team.enroll(admin, "newcomer", "coordinator")  # approved after the rotation
    newcomer.run("sync")
    assert [(r["id"], r["fields"]) for r in records(newcomer)] == expected


def test_after_revoke_and_rekey_a_departed_coordinator_opens_nothing_on_the_server(
    server: ServerProcess,  # noqa: F811
    tmp_path: Path,
) -> None:
    team = new_team(server, tmp_path)
    admin = team.found()
    ws = str(status(admin)["workspace_id"])
    vol = team.enroll(admin, "vol")
    leaving = team.enroll(admin, "leaving", "coordinator")
    staying = team.enroll(admin, "staying", "coordinator")
    ids = [vol.run("add", "picket", *PICKET, *sets(attendance=10)).last]
    vol.run("sync")
    admin.run("rotate")
    leaving.run("sync")  # it now holds the keys of epochs 1 and 2
    ids.append(vol.run("add", "picket", *PICKET, *sets(attendance=11)).last)  # offline: epoch 1
    vol.run("sync")
    ids.append(vol.run("add", "picket", *PICKET, *sets(attendance=12)).last)  # epoch 2
    vol.run("sync")
    taken = epoch_keys(leaving)
    assert sorted(taken) == [1, 2]

    assert admin.run("revoke", team.ids["leaving"]).out.endswith("now epoch 3\n")
    vol.run("sync")
    ids.append(vol.run("add", "picket", *PICKET, *sets(attendance=13)).last)  # epoch 3
    vol.run("sync")
    assert admin.run("rotate", "--rekey").out == (
        "rotated the epoch key: now epoch 4\nre-keyed 4 stored bundle(s)\n"
    )
    backup(server, tmp_path / "seized")
    dump = dump_bundles(tmp_path / "seized" / "workspaces" / f"{ws}.sqlite", ws)
    assert [(b.epoch, b.key_epoch) for b in dump] == [(1, 4), (1, 4), (2, 4), (3, 4)]
    assert [_opens(b, taken, ws) for b in dump] == [False] * 4
    current = epoch_keys(admin)
    assert [_opens(b, {n: current[n] for n in (1, 2, 3)}, ws) for b in dump] == [False] * 4
    staying.run("sync")
    assert epoch_keys(staying) == current
    log = profile(admin).log()
    tag_key = profile(admin).tag_key
    opened = [
        crypto.open_bundle(b, log.devices[b.device_id].sign_pub, {4: current[4]}, tag_key)
        for b in dump
    ]
    assert [[(c.field, c.value) for c in cells if c.field == "attendance"] for cells in opened] == [
        [("attendance", 10 + i)] for i in range(len(ids))
    ]
    assert [{c.record_id for c in cells} for cells in opened] == [{rid} for rid in ids]
    assert [r["id"] for r in records(staying)] == ids

    # An offline capture sealed to epoch 3 arrives after the re-key: stored as sealed
    # (nothing recorded offline is lost), so the admin's sync says it is exposed.
    exposed = (
        "warning: 1 stored bundle(s) are still sealed to an older epoch key that a revoked"
        " coordinator held: run `fieldsync rotate --rekey --resume`\n"
    )
    assert admin.run("sync").err == ""
    ids.append(vol.run("add", "picket", *PICKET, *sets(attendance=14)).last)
    vol.run("sync")
    assert admin.run("sync").err == exposed
    assert admin.run("rotate", "--rekey", "--resume").out == "re-keyed 1 stored bundle(s)\n"
    assert admin.run("sync").err == ""
    staying.run("sync")
    assert [r["id"] for r in records(staying)] == ids


def _in_terminal(dev: Device, *args: str, timeout: float = 60) -> tuple[int, str, str]:
    """Run a command with its stderr on a terminal: (exit code, stdout, what the terminal got)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [*client_command(), *args],
        env=dev.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
            elif proc.poll() is not None:
                break
        out = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))[0]
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out.decode(), seen.decode(errors="replace")


def test_an_interrupted_rekey_resumes_and_every_bundle_stays_readable(
    proxied: tuple[Team, LyingProxy],
    server: ServerProcess,  # noqa: F811
) -> None:
    team, proxy = proxied
    admin = team.found()
    ws = str(status(admin)["workspace_id"])
    vol = team.enroll(admin, "vol")
    prof = profile(vol)  # ten captures through the client's own code, in this process
    ids = [
        outbox.add(prof, "picket", {**PICKET_REQUIRED, "attendance": str(n)}, None)
        for n in range(10)
    ]
    prof.save()
    vol.run("sync")
    admin.run("rotate")
    # Pages of four: the first goes through; the second reaches the server and is
    # committed, but its answer is cut (on the retry too); the third is never sent.
    proxy.lie("POST", r"/rekey$", lambda status_code, body: (status_code, body), times=1)
    proxy.cut("POST", r"/rekey$", times=None)
    result = admin.run("rotate", "--rekey", "--resume", "--batch-size", "4", check=False)
    assert result.rc == NETWORK
    assert re.fullmatch(
        r"error: the re-key stopped \((cannot reach|the connection to) (the server at )?"
        r"127\.0\.0\.1:\d+ .*rerun.*\): finish it with `fieldsync rotate --rekey --resume`\n",
        result.err,
    ), result.err
    assert [b.key_epoch for b in stored_bundles(server, ws)] == [2] * 8 + [1] * 2
    proxy.clear()

    # A server that ignores `after` and serves the same page again is left, not looped on.
    first: list[Any] = []

    def same_page(status_code: int, body: Any) -> tuple[int, Any]:
        first.append(first[0] if first else body)
        return status_code, first[-1]

    proxy.lie("GET", r"/rekey$", same_page)
    result = admin.run("rotate", "--rekey", "--resume", "--batch-size", "1", check=False)
    assert (result.rc, result.err) == (
        GENERAL,
        "error: the re-key stopped (the server serves the bundles it was just given again:"
        " try later): finish it with `fieldsync rotate --rekey --resume`\n",
    )
    assert [b.key_epoch for b in stored_bundles(server, ws)] == [2] * 9 + [1]
    proxy.clear()

    rc, out, terminal = _in_terminal(admin, "rotate", "--rekey", "--resume", "--batch-size", "4")
    assert (rc, out) == (0, "re-keyed 1 stored bundle(s)\n")
    assert "re-keying [" in terminal and "1/1" in terminal  # a progress bar, on a terminal only
    assert [b.key_epoch for b in stored_bundles(server, ws)] == [2] * 10
    again = admin.run("rotate", "--rekey", "--resume")
    assert (again.out, again.err) == ("re-keyed 0 stored bundle(s)\n", "")  # no bar on a pipe
    admin.run("sync")
    assert [(r["id"], r["fields"]) for r in records(admin)] == [
        (rid, {**PICKET_REQUIRED, "attendance": n}) for n, rid in enumerate(ids)
    ]


def test_rekey_pages_after_a_given_bundle(kit: Kit) -> None:
    vol = kit.member("volunteer")
    old = [kit.seal(vol, {"place": f"Invented Yard {i}"}) for i in range(3)]
    kit.push(vol, old)
    n = kit.rotate()
    page = kit.request("GET", kit.path("rekey", f"limit=1&after={old[0].bundle_id}"), kit.founder)
    assert page.body == {
        "target_epoch": n,
        "bundles": [
            {
                "bundle_id": old[1].bundle_id,
                "workspace": kit.workspace,
                "key_epoch": 1,
                "sealed_key": old[1].sealed_key,
                "key_commit": old[1].key_commit,
            }
        ],
        "remaining": 3,
    }
    last = kit.request("GET", kit.path("rekey", f"after={old[2].bundle_id}"), kit.founder)
    assert last.body == {"target_epoch": n, "bundles": [], "remaining": 3}
    ghost = kit.request("GET", kit.path("rekey", f"after={kit.record_id()}"), kit.founder)
    assert (ghost.status, ghost.code) == (404, "unknown_bundle")
    bad = kit.request("GET", kit.path("rekey", "after=not-an-id"), kit.founder)
    assert (bad.status, bad.code) == (400, "invalid_request")


def test_a_new_device_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """Device ids are typed after `approve` and `revoke`, where "-…" would read as an option."""
    dashed = next(
        seed
        for seed in (i.to_bytes(32, "big") for i in range(10_000))
        if keys.device_id_for(keys.public_bytes(keys.signing_key(seed))).startswith("-")
    )
    draws = iter([dashed, bytes(32), bytes(keys.HPKE_PRIV_LEN)])
    monkeypatch.setattr(enrol.os, "urandom", lambda n: next(draws))
    key, seed, hpke = enrol._new_device("volunteer")
    assert (seed, hpke) == (bytes(32), None)
    assert not keys.device_id_for(keys.public_bytes(key)).startswith("-")
