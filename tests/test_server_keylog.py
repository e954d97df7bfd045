"""Key log, enroll and re-key routes through the Flask app."""

from __future__ import annotations

from typing import Any

from serverkit import Kit, db_state, wire_with_change

from protocol import crypto, keys, roster
from protocol.model import Bundle


def test_log_reads_from_since(kit: Kit) -> None:
    vol = kit.member("volunteer")
    resp = kit.request("GET", kit.path("log", "since=2"), vol)
    assert resp.body == {"events": kit.events[2:], "length": len(kit.events)}
    assert kit.request("GET", kit.path("log"), vol).body["events"] == kit.events


def test_append_answers_length_and_head(kit: Kit) -> None:
    event = roster.invite(
        kit.state,
        kit.founder.key,
        keys.signing_key(b"\x05" * 32),
        "volunteer",
        kit.now() + 60,
        kit.now(),
    )
    resp = kit.post_event(event)
    assert (resp.status, resp.body) == (201, {"length": kit.state.length, "head": kit.state.head})


def test_log_conflict_and_invalid_event(kit: Kit, app: Any) -> None:
    stale_state = kit.state
    kit.invite("volunteer")
    late = roster.invite(
        stale_state,
        kit.founder.key,
        keys.signing_key(b"\x06" * 32),
        "admin",
        kit.now() + 60,
        kit.now(),
    )
    before = db_state(app.config["DATA_DIR"], nonces=False)
    resp = kit.request("POST", kit.path("log"), kit.founder, {"event": late})
    assert (resp.status, resp.code) == (409, "log_conflict")
    forged = {**roster.revoke(kit.state, kit.founder.key, kit.founder.device_id, kit.now())}
    resp = kit.request("POST", kit.path("log"), kit.founder, {"event": forged})
    assert (resp.status, resp.code) == (400, "invalid_event")
    assert resp.body["error"]["message"].startswith("invalid_event: last_admin")
    tampered = {
        **roster.invite(
            kit.state,
            kit.founder.key,
            keys.signing_key(b"\x08" * 32),
            "admin",
            kit.now() + 60,
            kit.now(),
        ),
        "at": 1,
    }
    resp = kit.request("POST", kit.path("log"), kit.founder, {"event": tampered})
    assert resp.body["error"]["message"].startswith("invalid_event: bad_signature")
    expired = roster.invite(
        kit.state,
        kit.founder.key,
        keys.signing_key(b"\x09" * 32),
        "admin",
        kit.now() - 1,
        kit.now(),
    )
    resp = kit.request("POST", kit.path("log"), kit.founder, {"event": expired})
    assert resp.body["error"]["message"].startswith("invalid_event: invite_expired")
    wrong_route = roster.enroll(
        kit.state,
        keys.signing_key(b"\x0a" * 32),
        keys.signing_key(b"\x0b" * 32),
        "volunteer",
        None,
        kit.now(),
    )
    resp = kit.request("POST", kit.path("log"), kit.founder, {"event": wrong_route})
    assert (resp.status, resp.code) == (400, "invalid_event")
    assert db_state(app.config["DATA_DIR"], nonces=False) == before


def test_enroll_answers_device_id_and_is_single_use(kit: Kit) -> None:
    invite_key = kit.invite("coordinator")
    member, resp = kit.enroll(invite_key, "coordinator")
    assert (resp.status, resp.body) == (
        201,
        {"length": kit.state.length, "head": kit.state.head, "device_id": member.device_id},
    )
    assert kit.state.devices[member.device_id].status == "pending"


def test_enroll_must_be_signed_by_its_own_invite(kit: Kit) -> None:
    a, b = kit.invite("volunteer"), kit.invite("volunteer")
    event = roster.enroll(
        kit.state, a, keys.signing_key(b"\x0c" * 32), "volunteer", None, kit.now()
    )
    resp = kit.request("POST", kit.path("enroll"), b, {"event": event}, keyid=kit.invite_keyid(b))
    assert (resp.status, resp.code) == (400, "invalid_event")


def test_rekey_round(kit: Kit, app: Any) -> None:
    vol = kit.member("volunteer")
    coord = kit.member("coordinator")
    old = [kit.seal(vol, {"place": f"Sarn Yard {i}"}) for i in range(3)]
    kit.push(vol, old)
    n = kit.rotate()
    new = kit.seal(vol, {"place": "Sarn Gate"})
    assert kit.push(vol, [new]).body["results"][0]["status"] == "accepted"
    page = kit.request("GET", kit.path("rekey", "limit=2"), kit.founder).body
    assert page == {
        "target_epoch": n,
        "bundles": [
            {
                "bundle_id": b.bundle_id,
                "workspace": kit.workspace,
                "key_epoch": 1,
                "sealed_key": b.sealed_key,
                "key_commit": b.key_commit,
            }
            for b in old[:2]
        ],
        "remaining": 3,
    }

    def item(b: Bundle, epoch: int = n) -> dict[str, Any]:
        sealed = crypto.rekey_sealed_key(
            b, kit.epochs[1].private_bytes, n, kit.epochs[n].public_bytes
        )
        return {"bundle_id": b.bundle_id, "key_epoch": epoch, "sealed_key": sealed}

    before = db_state(app.config["DATA_DIR"], nonces=False)
    stale = kit.request(
        "POST", kit.path("rekey"), kit.founder, {"items": [item(old[0]), item(old[1], 1)]}
    )
    assert (stale.status, stale.code) == (400, "stale_epoch")
    ghost = {**item(old[0]), "bundle_id": kit.record_id()}
    unknown = kit.request("POST", kit.path("rekey"), kit.founder, {"items": [item(old[0]), ghost]})
    assert (unknown.status, unknown.code) == (404, "unknown_bundle")
    assert db_state(app.config["DATA_DIR"], nonces=False) == before
    items = [item(b) for b in old]
    resp = kit.request("POST", kit.path("rekey"), kit.founder, {"items": items})
    assert resp.body == {"updated": 3}
    done = kit.request("GET", kit.path("rekey"), kit.founder).body
    assert done == {"target_epoch": n, "bundles": [], "remaining": 0}
    pulled = kit.pull_all(coord)
    expected = [
        {**wire_with_change(b, i + 1), "key_epoch": n, "sealed_key": items[i]["sealed_key"]}
        for i, b in enumerate(old)
    ] + [wire_with_change(new, 4)]
    assert pulled == expected
    # After the re-key the old epoch key opens nothing on the server; the new one does.
    for wire in pulled:
        b = Bundle.from_wire({k: v for k, v in wire.items() if k != "change"})
        opened = crypto.open_bundle(
            b, keys.public_bytes(vol.key), {n: kit.epochs[n].private_bytes}, kit.tag_key
        )
        assert opened[0].field == "place"
