"""What a lying server holds back is named, and what it forges drops nothing.

The operator sits in `tests/lying_proxy.py`: it withholds the last bundle of a chain
(no gap shows), hides the device's signed head, and serves forged receipts.
"""

from __future__ import annotations

import json
from typing import Any

from accesskit import profile, vault_state
from clientkit import (  # noqa: F401  (server: a fixture)
    PICKET,
    Team,
    as_json,
    records,
    server,
    sets,
    status,
)
from lying_proxy import LyingProxy

from client_sync.demo import Device
from protocol import keys, receipts

LATER = str(49 * 3600)  # FIELDSYNC_TEST_CLOCK_SHIFT: two days and an hour on
GONE = {"error": {"code": "unknown_bundle", "message": "no such bundle"}}


def later(team: Team, name: str) -> Device:
    """The same device, run as if 49 hours had passed (the receipt warning's clock only)."""
    return team.device(name, FIELDSYNC_TEST_CLOCK_SHIFT=LATER)


def withheld_warning(vol: Device, n: int) -> str:
    dates = sorted(
        note["at"][:10]
        for bid, note in vault_state(vol)["notes"].items()
        if bid in {e["bundle"]["bundle_id"] for e in vault_state(vol)["sent"]}
    )
    span = dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}"
    return (
        f"{n} capture(s) from {span} have not reached a coordinator; the server may be"
        " holding them back"
    )


def _without(device: str, seq: int) -> Any:
    def rewrite(status_code: int, body: Any) -> tuple[int, Any]:
        body["bundles"] = [
            b for b in body["bundles"] if (b["device_id"], b["seq"]) != (device, seq)
        ]
        return status_code, body

    return rewrite


def _no_head_of(device: str) -> Any:
    def rewrite(status_code: int, body: Any) -> tuple[int, Any]:
        body["heads"] = [h for h in body["heads"] if h["device_id"] != device]
        return status_code, body

    return rewrite


def test_the_last_bundle_withheld_is_named_and_heals(proxied: tuple[Team, LyingProxy]) -> None:
    team, proxy = proxied
    admin = team.found()
    vol = team.enroll(admin, "vol")
    vol_id = team.ids["vol"]
    ids = [vol.run("add", "picket", *PICKET, *sets(attendance=n)).last for n in range(3)]
    vol.run("sync")
    # The operator holds back bundle 3, the last of the chain: no gap shows. First it also
    # hides the volunteer's signed head (it cannot forge one): the coordinator sees
    # nothing amiss, and the volunteer's own warning is what fires.
    proxy.lie("GET", r"/changes$", _without(vol_id, 3))
    proxy.lie("GET", rf"/bundles/{vol_id}/3$", lambda _s, _b: (404, GONE))
    proxy.lie("GET", r"/heads$", _no_head_of(vol_id))
    result = admin.run("sync")
    assert (result.err, status(admin)["warnings"]) == ("", [])
    assert [r["id"] for r in records(admin)] == ids[:2]
    assert status(vol)["warnings"] == []  # not yet 48 hours
    result = later(team, "vol").run("sync")
    assert "a coordinator confirmed 2 capture(s)" in result.out
    warning = withheld_warning(vol, 1)
    assert result.err == f"warning: {warning}\n"
    assert status(later(team, "vol"))["warnings"] == [warning]
    listed = as_json(vol.run("outbox", "--format", "json"))
    assert [(i["seq"], i["state"], i["discardable"]) for i in listed] == [(3, "sent", False)]

    # The head served again: the coordinator names what the server holds back. (A head
    # it sees for the first time may be a push that landed after its pull: it reads the
    # feed on once, and asks for the bundle by number only from its next sync.)
    proxy.clear()
    proxy.lie("GET", r"/changes$", _without(vol_id, 3))
    named = (
        f"device {vol_id} published bundle 3; this replica holds its chain to 2:"
        " the server may be withholding 3"
    )
    result = admin.run("sync")
    assert result.err == f"warning: {named}\n"
    assert status(admin)["warnings"] == [named]
    assert admin.run("status").err == f"warning: {named}\n"

    assert "fetched" not in result.out
    # The operator stops lying: the next syncs heal, by device and number (the changes
    # feed has moved past the bundle).
    proxy.clear()
    result = admin.run("sync")
    assert result.err == ""
    assert result.out.splitlines()[-2:] == [
        "fetched 1 missing bundle(s) by device and number",
        "pulled 0 new bundle(s), 0 cell(s)",
    ]
    assert [r["id"] for r in records(admin)] == ids
    assert status(admin)["warnings"] == []
    result = later(team, "vol").run("sync")
    assert (result.err, status(later(team, "vol"))["warnings"]) == ("", [])
    assert "a coordinator confirmed 1 capture(s)" in result.out
    assert status(vol)["awaiting_receipt"] == 0


def _forge(key: Any, ws: str, vol: Device, vol_id: str, seq: int, hash_of: int) -> Any:
    sent = {e["bundle"]["seq"]: e["hash"] for e in vault_state(vol)["sent"]}
    return receipts.sign_receipt(
        key, workspace=ws, device_id=vol_id, seq=seq, hash=sent[hash_of], at=1_795_600_000
    )


def test_forged_receipts_are_refused_and_drop_nothing(proxied: tuple[Team, LyingProxy]) -> None:
    team, proxy = proxied
    admin = team.found()
    leaving = team.enroll(admin, "leaving", "coordinator")
    vol, other = team.enroll(admin, "vol"), team.enroll(admin, "other")
    ws, vol_id = status(admin)["workspace_id"], team.ids["vol"]
    ids = [vol.run("add", "picket", *PICKET, *sets(attendance=n)).last for n in range(2)]
    vol.run("sync")
    # A coordinator pulls, signs a genuine receipt, and is then revoked (a seized laptop):
    # the honest server stops serving its receipts; a lying one serves them on.
    leaving.run("sync")
    kept = json.loads(json.dumps(receipts_served_to(vol)))
    assert [r["signer"] for r in kept] == [team.ids["leaving"]]
    admin.run("revoke", team.ids["leaving"])
    assert receipts_served_to(vol) == []
    outsider = keys.signing_key(bytes(range(32)))
    forged = {
        "revoked signer": (kept[0], "signer_revoked"),
        "a volunteer's key": (
            _forge(profile(other).device_key, ws, vol, vol_id, 2, 2),
            "not_keyholder",
        ),
        "a key not in the log": (_forge(outsider, ws, vol, vol_id, 2, 2), "unknown_signer"),
        "more than was sent": (
            _forge(profile(admin).device_key, ws, vol, vol_id, 5, 2),
            "beyond_sent",
        ),
        "another bundle's hash": (
            _forge(profile(admin).device_key, ws, vol, vol_id, 2, 1),
            "hash_mismatch",
        ),
        "no receipt at all": ({"seq": 2, "signer": "?"}, "malformed"),
    }
    served = {"receipts": [r for r, _ in forged.values()]}
    proxy.lie("GET", r"/receipts$", lambda s, _b: (s, served))
    result = vol.run("sync")
    refused = sorted(line for line in result.err.splitlines())
    assert refused == sorted(
        f"warning: a receipt signed by {r['signer']} for bundle {r['seq']} was refused:"
        f" {code}: {reason}; nothing was dropped"
        for r, code in forged.values()
        for reason in [_reason(r, code, vol)]
    )
    assert "confirmed" not in result.out
    assert status(vol)["awaiting_receipt"] == 2
    assert [e["bundle"]["seq"] for e in vault_state(vol)["sent"]] == [1, 2]

    # The genuine keyholder's receipt, once the server is honest, drops what it covers.
    proxy.clear()
    admin.run("sync")
    result = vol.run("sync")
    assert result.err == ""
    assert "a coordinator confirmed 2 capture(s)" in result.out
    assert status(vol)["awaiting_receipt"] == 0
    assert [r["id"] for r in records(admin)] == ids


def receipts_served_to(dev: Device) -> list[Any]:
    from client_sync import keyring

    prof = profile(dev)
    answer = keyring.client_for(prof).get(f"/v1/w/{prof.workspace_id}/receipts")
    return list(answer["receipts"])


def _reason(r: dict[str, Any], code: str, vol: Device) -> str:
    return {
        "signer_revoked": "its signer was revoked",
        "not_keyholder": "its signer is not an active keyholder",
        "unknown_signer": "its signer is not in the key log",
        "beyond_sent": f"it covers bundle {r['seq']}, but this device sent 2",
        "hash_mismatch": f"its hash is not this device's bundle {r['seq']}",
        "malformed": "the fields must be exactly"
        " ['at', 'device_id', 'hash', 'seq', 'sig', 'signer', 'v', 'workspace']",
    }[code]


def test_what_is_kept_is_bounded_and_dropped_aloud(proxied: tuple[Team, LyingProxy]) -> None:
    team, _proxy = proxied
    admin = team.found()
    vol = team.enroll(admin, "vol")
    ids = [vol.run("add", "picket", *PICKET, *sets(attendance=n)).last for n in range(3)]
    vol.run("sync")
    listed = vol.run("outbox").out.splitlines()
    assert [line.split()[-6:] for line in listed[:3]] == [
        ["(sent,", "waiting", "for", "a", "coordinator's", "receipt)"]
    ] * 3
    assert listed[3:] == [
        "3 sent capture(s) are kept, sealed, until a coordinator confirms it holds them"
    ]
    sent_id = as_json(vol.run("outbox", "--format", "json"))[0]["bundle_id"]
    taken = vol.run("outbox", "--discard", sent_id, check=False)
    assert (taken.rc, taken.err) == (
        1,
        f"error: capture {sent_id} was sent already: it is kept, sealed, until a coordinator"
        " confirms it holds it, and cannot be taken back\n",
    )
    # No coordinator syncs for 61 days: past FIELDSYNC_KEEP_DAYS (60) the device lets them go,
    # and says so, at the sync and in every status after.
    dates = sorted(n["at"][:10] for n in vault_state(vol)["notes"].values())
    span = dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}"
    aged = team.device("vol", FIELDSYNC_TEST_CLOCK_SHIFT=str(61 * 86400))
    result = aged.run("sync")
    assert result.err == (
        f"warning: 3 sent capture(s) from {span} were dropped from this device without a"
        " coordinator's receipt (kept at most 60 days and 20 MB: FIELDSYNC_KEEP_DAYS,"
        " FIELDSYNC_KEEP_MB); if no coordinator received them, they are lost\n"
    )
    assert (status(vol)["awaiting_receipt"], vault_state(vol)["sent"]) == (0, [])
    assert status(vol)["warnings"] == [
        f"3 sent capture(s) from {span} were dropped from this device without a coordinator's"
        " receipt; if no coordinator received them, they are lost"
    ]
    # A keyholder had them after all: its receipt clears the warning.
    admin.run("sync")
    assert vol.run("sync").err == ""
    assert status(vol)["warnings"] == []
    assert [r["id"] for r in records(admin)] == ids
    # The size bound: with room for one bundle, the oldest two go at once.
    vol.run("add", "picket", *PICKET)
    vol.run("add", "picket", *PICKET)
    vol.run("add", "picket", *PICKET)
    small = team.device("vol", FIELDSYNC_KEEP_MB="0.004")
    result = small.run("sync")
    assert result.err.startswith("warning: 2 sent capture(s) from ")
    assert [e["bundle"]["seq"] for e in vault_state(vol)["sent"]] == [6]


def test_a_server_that_says_revoked_without_proof_destroys_nothing(
    proxied: tuple[Team, LyingProxy],
) -> None:
    team, proxy = proxied
    admin = team.found()
    vol = team.enroll(admin, "vol")
    vol.run("add", "picket", *PICKET)
    revoked = {"error": {"code": "revoked_device", "message": "this device was revoked"}}
    proxy.lie("GET", r"/log$", lambda _s, _b: (403, revoked))
    result = vol.run("sync", check=False)
    assert (result.rc, result.err) == (
        5,
        "error: the server refuses this device as revoked but does not show a revocation in"
        " its key log; nothing was destroyed; do not trust this server\n",
    )
    st = status(vol)
    assert (st["status"], st["outbox"]) == ("active", 1)
    proxy.clear()
    assert "1 accepted" in vol.run("sync").out


def test_a_push_landing_between_pull_and_heads_is_no_alarm(
    proxied: tuple[Team, LyingProxy],
) -> None:
    """A volunteer syncs just after the coordinator's last changes page and before it reads
    the heads: the new head is ahead of what it pulled, but the server holds nothing back.
    The coordinator reads the feed on once and says nothing."""
    team, proxy = proxied
    admin = team.found()
    vol = team.enroll(admin, "vol")
    ids = [vol.run("add", "picket", *PICKET).last]
    vol.run("sync")
    ids.append(vol.run("add", "picket", *PICKET).last)

    def push_meanwhile(status_code: int, _body: Any) -> tuple[int, Any]:
        vol.run("sync")  # lands now, after the coordinator's pull
        prof = profile(vol)
        seq, h = vault_state(vol)["sent_head"]
        fresh = receipts.sign_chain_head(
            prof.device_key, workspace=prof.workspace_id, seq=seq, hash=h, at=1_795_600_000
        )
        return status_code, {"heads": [fresh]}

    proxy.lie("GET", r"/heads$", push_meanwhile, times=1)
    result = admin.run("sync")
    assert result.err == ""
    assert result.out.splitlines()[-1] == "pulled 2 new bundle(s), 4 cell(s)"
    assert [r["id"] for r in records(admin)] == ids
    assert status(admin)["warnings"] == []
