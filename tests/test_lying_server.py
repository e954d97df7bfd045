"""A server that lies is caught, each lie with its own message, never silently.

The fixture is a coerced operator: `tests/lying_proxy.py` sits between every device
and the real server and edits what the server answers. One test per lie: an epoch
key no admin signed, a rolled-back log, a forged event, an altered event, a bundle
dropped from a device's chain, a bundle or cell made up or changed, a bundle
replayed (which must change nothing and alarm no one).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from accesskit import epoch_keys, log_length, stored_bundles, vault_state
from clientkit import (  # noqa: F401
    PICKET,
    Team,
    assert_one_line_error,
    new_team,
    records,
    server,
    sets,
    status,
)
from lying_proxy import LyingProxy

from client_sync.demo import Device, ServerProcess
from client_sync.errors import INTEGRITY
from protocol import crypto, keylog, keys, roster
from protocol.encoding import b64e
from protocol.errors import InvalidBundle
from protocol.model import Bundle, CellInput

# The operator's own keys: everything it could sign with.
OPERATOR = keys.signing_key(bytes(range(32)))
OPERATOR_EPOCH = keys.HpkeKeyPair.from_seed(bytes(range(96)))


@pytest.fixture(scope="module")
def proxy(server: ServerProcess) -> Iterator[LyingProxy]:  # noqa: F811
    p = LyingProxy("127.0.0.1", server.port).start()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture(autouse=True)
def honest_again(proxy: LyingProxy) -> Iterator[None]:
    yield
    proxy.clear()


@pytest.fixture(scope="module")
def team(
    server: ServerProcess,  # noqa: F811
    proxy: LyingProxy,
    tmp_path_factory: pytest.TempPathFactory,
) -> Team:
    return new_team(server, tmp_path_factory.mktemp("lies"), url=proxy.url)


@pytest.fixture(scope="module")
def admin(team: Team) -> Device:
    return team.found()


@pytest.fixture(scope="module")
def coord(team: Team, admin: Device) -> Device:
    dev = team.enroll(admin, "coord", "coordinator")
    dev.run("sync")
    return dev


@pytest.fixture(scope="module")
def ws(admin: Device) -> str:
    return str(status(admin)["workspace_id"])


def _volunteer(team: Team, admin: Device, name: str) -> tuple[Device, str]:
    dev = team.enroll(admin, name)
    return dev, team.ids[name]


def _log_event(body: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(e for e in reversed(body["events"]) if e["kind"] == kind)


# --- the key log ------------------------------------------------------------------------


def test_an_epoch_key_no_admin_signed_is_never_sealed_to(
    team: Team,
    admin: Device,
    proxy: LyingProxy,
    server: ServerProcess,  # noqa: F811
    ws: str,
) -> None:
    """The operator swaps the key of a real rotation for its own: refused, nothing sealed."""
    vol, vol_id = _volunteer(team, admin, "vol-epoch")
    vol.run("sync")
    invite = admin.run("invite").last  # for a device that joins during the lie
    epoch = int(admin.run("rotate").out.split()[-1])
    length = log_length(server, ws)
    fake = b64e(OPERATOR_EPOCH.public_bytes)

    def swap_key(status_code: int, body: Any) -> tuple[int, Any]:
        for event in body["events"]:
            if event["kind"] == "rotate" and event["body"]["epoch"] == epoch:
                event["body"]["pub"] = fake
        return status_code, body

    proxy.lie("GET", r"/log$", swap_key)
    message = (
        f"error: the server's key log does not verify: event {length - 1} (rotate) carries"
        f" an epoch key that no admin signed; nothing was sealed to it; do not trust this server\n"
    )
    rid = vol.run(
        "add", "picket", *PICKET, *sets(attendance=21)
    ).last  # offline: the last verified key
    result = vol.run("sync", check=False)
    assert (result.rc, result.err) == (INTEGRITY, message)
    # A device joining through the lying server is refused the same way and keeps nothing.
    late = team.device("late")
    joined = late.run("join", invite, check=False)
    assert (joined.rc, joined.err) == (INTEGRITY, message)
    assert not (late.home / "profile.vault").exists()
    assert log_length(server, ws) == length

    # What the volunteer keeps (its cached state) never took the operator's key: its
    # log stops before the rotation, and its capture is sealed to the real key of the
    # epoch before, which the operator's key does not open.
    st = status(vol)
    assert (st["epoch"], st["outbox"]) == (epoch - 1, 1)
    saved = vault_state(vol)
    assert len(saved["log"]) == length - 2  # the invite and the rotation are not in it
    assert fake not in str(saved["log"])
    bundle = Bundle.from_wire(saved["outbox"][0])
    assert (bundle.epoch, bundle.key_epoch) == (epoch - 1, epoch - 1)
    real_key = epoch_keys(admin)[epoch - 1]
    data_key = crypto.open_data_key(bundle.sealed_key, real_key, ws, epoch - 1, bundle.bundle_id)
    assert crypto.key_commitment(data_key) == bundle.key_commit
    for n in (epoch - 1, epoch):
        with pytest.raises(InvalidBundle):
            crypto.open_data_key(
                bundle.sealed_key, OPERATOR_EPOCH.private_bytes, ws, n, bundle.bundle_id
            )
    assert [b.device_id for b in stored_bundles(server, ws)].count(vol_id) == 0

    # Once the server answers honestly the capture is delivered, nothing recorded is lost,
    # and the volunteer seals to the real new key.
    proxy.clear()
    vol.run("sync")
    vol.run("add", "picket", *PICKET, *sets(attendance=22))
    vol.run("sync")
    mine = [b for b in stored_bundles(server, ws) if b.device_id == vol_id]
    assert [(b.bundle_id, b.epoch) for b in mine] == [
        (bundle.bundle_id, epoch - 1),
        (mine[1].bundle_id, epoch),
    ]
    admin.run("sync")
    assert rid in {r["id"] for r in records(admin)}


def test_a_rolled_back_log_is_refused(
    team: Team,
    admin: Device,
    proxy: LyingProxy,
    server: ServerProcess,  # noqa: F811
    ws: str,
) -> None:
    """Rolling the log back to before a rotation would have volunteers seal to a key a
    departed coordinator still holds: a device that saw the rotation refuses."""
    vol, vol_id = _volunteer(team, admin, "vol-rollback")
    epoch = int(admin.run("rotate").out.split()[-1])
    vol.run("sync")
    length = log_length(server, ws)

    def roll_back(status_code: int, body: Any) -> tuple[int, Any]:
        body["events"] = body["events"][: length - 1]
        body["length"] = length - 1
        return status_code, body

    proxy.lie("GET", r"/log$", roll_back)
    vol.run("add", "picket", *PICKET, *sets(attendance=31))
    result = vol.run("sync", check=False)
    assert (result.rc, result.err) == (
        INTEGRITY,
        f"error: the server's key log was rolled back (the log has {length - 1} events but"
        f" this device saw {length}: rolled back); do not trust this server\n",
    )
    assert vault_state(vol)["seen"][0] == length
    assert Bundle.from_wire(vault_state(vol)["outbox"][0]).epoch == epoch
    assert vol_id not in {b.device_id for b in stored_bundles(server, ws)}


def _forged_invite(state: keylog.KeyLogState) -> dict[str, Any]:
    # The operator signs an invite of its own, naming itself as the admin.
    signer = keys.device_id_for(keys.public_bytes(OPERATOR))
    body = {
        "invite_key": b64e(keys.public_bytes(OPERATOR)),
        "role": "coordinator",
        "expires": int(time.time()) + 3600,
    }
    return keylog.sign_event(
        seq=state.length, prev=state.head, kind="invite", at=int(time.time()),
        signer=signer, body=body, key=OPERATOR,
    )  # fmt: skip


def _forged_enroll(state: keylog.KeyLogState) -> dict[str, Any]:
    # The operator enrolls a coordinator of its own with an invite that was never issued.
    hpke = OPERATOR_EPOCH.public_bytes
    return roster.enroll(state, OPERATOR, OPERATOR, "coordinator", hpke, int(time.time()))


@pytest.mark.parametrize(
    ("forge", "reason"),
    [
        (_forged_invite, "(invite): signed by a key that is not enrolled in this log"),
        (_forged_enroll, "(enroll): no invite in the log has this id"),
    ],
)
def test_a_forged_event_is_refused(
    team: Team,
    admin: Device,
    proxy: LyingProxy,
    server: ServerProcess,  # noqa: F811
    ws: str,
    forge: Any,
    reason: str,
) -> None:
    vol, _ = _volunteer(team, admin, f"vol-forged-{forge.__name__}")
    vol.run("sync")
    saved = vault_state(vol)
    state = keylog.verify_log(saved["log"], saved["root"])
    forged = forge(state)

    def append(status_code: int, body: Any) -> tuple[int, Any]:
        body["events"].append(forged)
        body["length"] += 1
        return status_code, body

    proxy.lie("GET", r"/log$", append)
    for dev in (vol, admin):
        result = dev.run("sync", check=False)
        assert (result.rc, result.err) == (
            INTEGRITY,
            f"error: the server's key log does not verify: a forged event: event"
            f" {state.length} {reason}; do not trust this server\n",
        )
    assert vault_state(vol)["log"] == saved["log"]


def test_an_altered_event_is_refused(
    team: Team,
    admin: Device,
    proxy: LyingProxy,
    server: ServerProcess,  # noqa: F811
    ws: str,
) -> None:
    """The operator turns a volunteer invite the devices saw into a coordinator invite."""
    vol, _ = _volunteer(team, admin, "vol-altered")
    vol.run("sync")
    seq = next(e["seq"] for e in reversed(vault_state(vol)["log"]) if e["kind"] == "invite")

    def alter(status_code: int, body: Any) -> tuple[int, Any]:
        body["events"][seq]["body"]["role"] = "coordinator"
        return status_code, body

    proxy.lie("GET", r"/log$", alter)
    for dev in (vol, admin):
        result = dev.run("sync", check=False)
        assert (result.rc, result.err) == (
            INTEGRITY,
            f"error: the server's key log does not verify: an altered event: event {seq}"
            " (invite) differs from the copy this device verified; do not trust this server\n",
        )


# --- bundles ----------------------------------------------------------------------------


def _bundle_lie(device: str, edit: Any) -> Any:
    def rewrite(status_code: int, body: Any) -> tuple[int, Any]:
        kept = []
        for bundle in body["bundles"]:
            if bundle["device_id"] == device:
                bundle = edit(bundle)
            if bundle is not None:
                kept.append(bundle)
        body["bundles"] = kept
        return status_code, body

    return rewrite


def _warnings(result: Any) -> list[str]:
    return result.err.strip().splitlines() if result.err.strip() else []


def test_a_dropped_bundle_is_reported_as_a_gap(
    team: Team, admin: Device, coord: Device, proxy: LyingProxy
) -> None:
    vol, vol_id = _volunteer(team, admin, "vol-gap")
    coord.run("sync")
    ids = [vol.run("add", "picket", *PICKET, *sets(attendance=40 + n)).last for n in range(3)]
    vol.run("sync")
    proxy.lie("GET", r"/changes$", _bundle_lie(vol_id, lambda b: None if b["seq"] == 2 else b))
    # The gap is asked for at once by device and number: withheld there too, it stays a gap.
    proxy.lie("GET", rf"/bundles/{vol_id}/2$", lambda _s, _b: (404, _NOT_STORED))
    result = coord.run("sync")
    assert result.out.splitlines()[-1] == "pulled 2 new bundle(s), 6 cell(s)"
    assert _warnings(result) == [f"warning: device {vol_id}: bundle 2 missing between 1 and 3"]
    got = {r["id"] for r in records(coord)}
    assert (ids[0] in got, ids[1] in got, ids[2] in got) == (True, False, True)
    assert [p for p in status(coord)["problems"] if vol_id in p] == [
        f"device {vol_id}: bundle 2 missing between 1 and 3"
    ]
    # Served by number (the feed still leaves it out, and has moved past it): healed.
    proxy.clear()
    proxy.lie("GET", r"/changes$", _bundle_lie(vol_id, lambda b: None if b["seq"] == 2 else b))
    result = coord.run("sync")
    assert result.out.splitlines()[-2:] == [
        "fetched 1 missing bundle(s) by device and number",
        "pulled 0 new bundle(s), 0 cell(s)",
    ]
    assert _warnings(result) == [
        f"warning: device {vol_id}: bundle 2 was left out of the changes feed;"
        " fetched by device and number"
    ]
    assert {r["id"] for r in records(coord)} >= set(ids)
    assert [p for p in status(coord)["problems"] if vol_id in p] == []


_NOT_STORED = {"error": {"code": "unknown_bundle", "message": "no bundle 2 of this device"}}


def _invented_cell(bundle: dict[str, Any], record_id: str) -> dict[str, Any]:
    """A cell the operator adds to a real bundle, with an id that matches its content:
    only the device's signature over the bundle's cell ids can catch it."""
    b = Bundle.from_wire({k: v for k, v in bundle.items() if k != "change"})
    prefix = crypto.bundle_ad_prefix(b.workspace, b.bundle_id, b.device_id, b.epoch)
    tag, hlc, ct = b64e(os.urandom(16)), b.cells[0].hlc, os.urandom(40)
    ad = crypto.cell_ad(prefix, len(b.cells), record_id, tag, hlc, ())
    cell_id = crypto.compute_cell_id(ad, ct)
    return {"record_id": record_id, "field_tag": tag, "cell_id": cell_id, "hlc": hlc,
            "supersedes": [], "ct": b64e(ct)}  # fmt: skip


def test_made_up_and_changed_bundles_are_reported_not_merged(
    team: Team,
    admin: Device,
    coord: Device,
    proxy: LyingProxy,
    server: ServerProcess,  # noqa: F811
    ws: str,
) -> None:
    vol, vol_id = _volunteer(team, admin, "vol-madeup")
    coord.run("sync")
    ids = [vol.run("add", "picket", *PICKET, *sets(attendance=50 + n)).last for n in range(3)]
    vol.run("sync")
    real = [b.bundle_id for b in stored_bundles(server, ws) if b.device_id == vol_id]
    # A whole bundle the operator made up, signed by a device key of its own.
    log = keylog.verify_log(vault_state(coord)["log"], vault_state(coord)["root"])
    made_up = crypto.seal_bundle(
        workspace=ws, device_key=OPERATOR, seq=1, prev="A" * 43, epoch=log.current_epoch,
        epoch_public=log.current_epoch_public, tag_key=os.urandom(32),
        cells=[CellInput(b64e(os.urandom(16)), "picket", "attendance", 999, 1 << 40)],
        random=os.urandom,
    )  # fmt: skip

    def edit(bundle: dict[str, Any]) -> dict[str, Any]:
        if bundle["seq"] == 1:  # a cell the operator invented, in a real bundle
            bundle["cells"].append(_invented_cell(bundle, ids[0]))
        elif bundle["seq"] == 2:  # a real cell changed
            ct = bundle["cells"][0]["ct"]
            bundle["cells"][0]["ct"] = ("B" if ct[0] == "A" else "A") + ct[1:]
        return bundle

    genuine: list[Any] = []

    def lie(status_code: int, body: Any) -> tuple[int, Any]:
        genuine.append(json.loads(json.dumps(body)))
        status_code, body = _bundle_lie(vol_id, edit)(status_code, body)
        # Slipped in under the number of the page's last change.
        body["bundles"].append({**made_up.to_wire(), "change": body["next"]})
        return status_code, body

    proxy.lie("GET", r"/changes$", lie)
    proxy.lie("GET", rf"/bundles/{vol_id}/\d+$", lambda _s, _b: (404, _NOT_STORED))
    result = coord.run("sync")
    assert result.out.splitlines()[-1] == "pulled 4 new bundle(s), 3 cell(s)"
    assert _warnings(result) == [
        f"warning: device {vol_id}: bundle 1 ({real[0]}) failed verification and was not"
        " merged: signature: the bundle signature does not verify",
        f"warning: device {vol_id}: bundle 2 ({real[1]}) failed verification and was not"
        " merged: cell_id: cell 0: its id does not match its content",
        f"warning: device {made_up.device_id}: bundle 1 ({made_up.bundle_id}) failed"
        " verification and was not merged: unknown_device: its device is not in the key log",
        f"warning: device {vol_id}: bundles 1-2 missing before 3",
        "warning: 3 bundle(s) failed verification and were not merged",
    ]
    got = {r["id"] for r in records(coord)}
    assert (ids[0] in got, ids[1] in got, ids[2] in got) == (False, False, True)
    assert made_up.cells[0].record_id not in got

    # Served again as the volunteer signed them, the two are merged and the gap closes.
    proxy.clear()
    proxy.lie("GET", r"/changes$", lambda status_code, _: (status_code, genuine[0]), times=1)
    result = coord.run("sync")
    assert (result.err, result.out.splitlines()[-1]) == ("", "pulled 2 new bundle(s), 6 cell(s)")
    got = {r["id"] for r in records(coord)}
    assert (ids[0] in got, ids[1] in got, ids[2] in got) == (True, True, True)
    assert [p for p in status(coord)["problems"] if vol_id in p] == []


def test_a_replayed_bundle_changes_nothing(
    team: Team, admin: Device, coord: Device, proxy: LyingProxy
) -> None:
    vol, _ = _volunteer(team, admin, "vol-replay")
    ids = [vol.run("add", "picket", *PICKET, *sets(attendance=60 + n)).last for n in range(2)]
    vol.run("sync")
    pages: list[Any] = []

    def keep(status_code: int, body: Any) -> tuple[int, Any]:
        pages.append(json.loads(json.dumps(body)))
        return status_code, body

    proxy.lie("GET", r"/changes$", keep)
    coord.run("sync")
    proxy.clear()
    seen_ids = {b["bundle_id"] for b in pages[0]["bundles"]}
    before = records(coord)
    problems = status(coord)["problems"]
    assert {ids[0], ids[1]} <= {r["id"] for r in before}

    # Every bundle of a page served twice.
    third = vol.run("add", "picket", *PICKET, *sets(attendance=62)).last
    vol.run("sync")

    def twice(status_code: int, body: Any) -> tuple[int, Any]:
        body["bundles"] = [b for b in body["bundles"] for _ in range(2)]
        return status_code, body

    proxy.lie("GET", r"/changes$", twice)
    result = coord.run("sync")
    assert (result.err, result.out.splitlines()[-1]) == ("", "pulled 1 new bundle(s), 3 cell(s)")
    after = records(coord)
    assert after == [*before, next(r for r in after if r["id"] == third)]
    proxy.clear()

    # An old page served again, in place of the next one: its `last` is below the cursor,
    # as after a restore, so the feed is read again from 0, which changes nothing.
    proxy.lie("GET", r"/changes$", lambda status_code, _: (status_code, pages[0]))
    result = coord.run("sync")
    assert result.rc == 0
    assert re.fullmatch(
        rf"warning: the server's change feed went back in time \(it has {pages[0]['last']}"
        r" changes; this replica had read \d+\): pulling again from the start; bundles held"
        r" here change nothing\n",
        result.err,
    ), result.err
    assert result.out.splitlines()[-1] == "pulled 0 new bundle(s), 0 cell(s)"
    assert records(coord) == after
    assert status(coord)["problems"] == problems
    proxy.clear()

    # Served again with other content: the copy verified before is kept, and it is said.
    changed = json.loads(json.dumps(pages[0]))
    victim = next(b for b in changed["bundles"] if b["cells"] and b["bundle_id"] in seen_ids)
    ct = victim["cells"][0]["ct"]
    victim["cells"][0]["ct"] = ("B" if ct[0] == "A" else "A") + ct[1:]
    proxy.lie("GET", r"/changes$", lambda status_code, _: (status_code, changed))
    result = coord.run("sync")
    message = (
        f"device {victim['device_id']}: bundle {victim['seq']} ({victim['bundle_id']}) was served"
        " again with other content; the copy verified before is kept"
    )
    assert _warnings(result) == [
        f"warning: {message}",
        "warning: 1 bundle(s) failed verification and were not merged",
    ]
    assert records(coord) == after
    assert sorted(status(coord)["problems"]) == sorted([*problems, message])
