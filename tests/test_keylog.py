"""The key log: what verifies, and every way a server or an outsider could try to bend it.

Each refusal asserts its own code, so a check that starts failing for the wrong
reason (a forged event caught only because its chain was also wrong) shows up.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from corekit import Log, Member, hpke_pair, sign_key

from protocol import crypto, keylog, roster
from protocol.encoding import b64e
from protocol.errors import InvalidKeyLog
from protocol.keylog import Device, verify_log

FOUNDER = Member("founder", True)
COORDINATOR = Member("coordinator", True)
VOLUNTEER = Member("volunteer", False)
SECOND = Member("second-admin", True)
OUTSIDER = Member("outsider", True)


def build() -> Log:
    """genesis; coordinator, volunteer and a second admin join; the volunteer is revoked;
    epoch 2; the coordinator leaves; epoch 3 (14 events)."""
    log = Log(FOUNDER)
    log.join(FOUNDER, COORDINATOR, "coordinator")  # events 1-3
    log.join(FOUNDER, VOLUNTEER, "volunteer")  # 4-5
    log.join(FOUNDER, SECOND, "admin")  # 6-8
    log.revoke(SECOND, VOLUNTEER)  # 9
    log.rotate(FOUNDER)  # 10
    log.revoke(FOUNDER, COORDINATOR)  # 11
    log.rotate(SECOND)  # 12
    return log


LOG = build()
EVENTS = LOG.events


def code(events: list[dict[str, Any]], **kw: Any) -> str:
    with pytest.raises(InvalidKeyLog) as info:
        verify_log(events, kw.pop("root", LOG.root), **kw)
    return info.value.code


def signed(
    i: int, key: Any, kind: str, body: dict[str, Any], *, signer: str | None = None, **kw: Any
) -> dict[str, Any]:
    """An event signed by `key` following base event i-1 (or as told)."""
    return keylog.sign_event(
        seq=kw.get("seq", i),
        prev=kw.get("prev", LOG.states[i - 1].head),
        kind=kind,
        at=kw.get("at", Log.at(i)),
        signer=signer or keylog.keys.device_id_for(keylog.keys.public_bytes(key)),
        body=body,
        key=key,
    )


def invite_body(label: str, role: str = "volunteer", expires: int | None = None) -> dict[str, Any]:
    key = sign_key("invite/" + label)
    return {
        "invite_key": b64e(keylog.keys.public_bytes(key)),
        "role": role,
        "expires": Log.at(100) if expires is None else expires,
    }


# --- the happy path ----------------------------------------------------------------


def test_the_log_verifies_to_the_expected_roster() -> None:
    state = verify_log(EVENTS, LOG.root)
    assert (state.length, state.head, state.workspace) == (13, LOG.state.head, LOG.state.workspace)
    assert dict(state.devices) == {
        FOUNDER.id: Device(
            FOUNDER.id,
            "admin",
            FOUNDER.key.public_key().public_bytes_raw(),
            FOUNDER.hpke_public,
            "active",
            0,
        ),
        COORDINATOR.id: Device(
            COORDINATOR.id,
            "coordinator",
            COORDINATOR.key.public_key().public_bytes_raw(),
            COORDINATOR.hpke_public,
            "revoked",
            2,
        ),
        VOLUNTEER.id: Device(
            VOLUNTEER.id,
            "volunteer",
            VOLUNTEER.key.public_key().public_bytes_raw(),
            None,
            "revoked",
            5,
        ),
        SECOND.id: Device(
            SECOND.id,
            "admin",
            SECOND.key.public_key().public_bytes_raw(),
            SECOND.hpke_public,
            "active",
            7,
        ),
    }
    assert dict(state.epochs) == {n: p.public_bytes for n, p in LOG.epochs.items()}
    assert state.active_admins() == sorted([FOUNDER.id, SECOND.id])
    assert state.active_keyholders() == sorted([FOUNDER.id, SECOND.id])
    assert set(state.sealed) == {
        *[(1, d) for d in (FOUNDER.id, COORDINATOR.id, SECOND.id)],
        *[(2, d) for d in (FOUNDER.id, COORDINATOR.id, SECOND.id)],
        *[(3, d) for d in (FOUNDER.id, SECOND.id)],
    }


def test_each_keyholder_opens_exactly_its_epochs() -> None:
    state = LOG.state
    priv = {n: p.private_bytes for n, p in LOG.epochs.items()}
    assert roster.open_epoch_keys(state, FOUNDER.id, FOUNDER.hpke_private) == priv
    assert roster.open_epoch_keys(state, SECOND.id, SECOND.hpke_private) == priv
    # The departed coordinator keeps what it had; nothing after the rotation.
    assert roster.open_epoch_keys(state, COORDINATOR.id, COORDINATOR.hpke_private) == {
        1: priv[1],
        2: priv[2],
    }
    assert roster.open_epoch_keys(state, VOLUNTEER.id, sign_key("x").private_bytes_raw()) == {}


def test_a_log_seen_before_is_accepted_again_and_extended() -> None:
    seen = (9, LOG.states[8].head)
    assert verify_log(EVENTS, LOG.root, seen=seen).head == LOG.state.head
    assert verify_log(EVENTS[:9], LOG.root, seen=seen).head == seen[1]


def test_safety_number_is_five_groups_of_five_digits() -> None:
    number = keylog.safety_number(LOG.state.head)
    groups = number.split(" ")
    assert [len(g) for g in groups] == [5] * 5 and "".join(groups).isdigit()
    assert number != keylog.safety_number(LOG.states[-2].head)


# --- forged, altered, wrong signer ---------------------------------------------------


def test_forged_event_signed_by_an_unknown_key() -> None:
    forged = signed(5, OUTSIDER.key, "invite", invite_body("spare", "admin"))
    assert code([*EVENTS[:5], forged]) == "unknown_signer"


def test_forged_event_claiming_an_admin_as_signer() -> None:
    forged = signed(5, OUTSIDER.key, "invite", invite_body("spare", "admin"), signer=FOUNDER.id)
    assert code([*EVENTS[:5], forged]) == "bad_signature"


@pytest.mark.parametrize("index", range(13), ids=lambda i: f"{i}-{EVENTS[i]['kind']}")
def test_any_altered_event_is_refused(index: int) -> None:
    """Guards the signature check of every kind: change a signed field, keep the signature."""
    events = copy.deepcopy(EVENTS)
    events[index]["at"] += 1
    assert code(events) == "bad_signature"


def test_altered_invite_role() -> None:
    events = copy.deepcopy(EVENTS)
    events[4]["body"]["role"] = "admin"
    assert code(events) == "bad_signature"


def test_substituted_epoch_public_key_in_a_rotate() -> None:
    events = copy.deepcopy(EVENTS)
    events[10]["body"]["pub"] = b64e(hpke_pair("server's own epoch key").public_bytes)
    assert code(events) == "bad_signature"


def test_substituted_epoch_key_sealed_to_a_keyholder() -> None:
    """The pub is the logged one, but the sealed private key is another: only a keyholder
    can tell, when it opens its keys."""
    body = copy.deepcopy(EVENTS[10]["body"])
    other = hpke_pair("server's own epoch key")
    body["sealed"][SECOND.id] = crypto.seal_epoch_key(
        other.private_bytes,
        SECOND.hpke_public,
        LOG.state.workspace,
        2,
        SECOND.id,  # type: ignore[arg-type]
    )
    state = verify_log([*EVENTS[:10], signed(10, FOUNDER.key, "rotate", body)], LOG.root)
    with pytest.raises(InvalidKeyLog) as info:
        roster.open_epoch_keys(state, SECOND.id, SECOND.hpke_private)
    assert info.value.code == "epoch_key_mismatch"
    # The other keyholders are unaffected.
    assert set(roster.open_epoch_keys(state, FOUNDER.id, FOUNDER.hpke_private)) == {1, 2}


def test_signer_not_an_admin() -> None:
    by_coordinator = signed(4, COORDINATOR.key, "invite", invite_body("spare"))
    assert code([*EVENTS[:4], by_coordinator]) == "signer_not_admin"
    by_pending_admin = signed(8, SECOND.key, "invite", invite_body("spare"))
    assert code([*EVENTS[:8], by_pending_admin]) == "signer_not_admin"
    by_volunteer = signed(6, VOLUNTEER.key, "revoke", {"device_id": COORDINATOR.id})
    assert code([*EVENTS[:6], by_volunteer]) == "signer_not_admin"


def test_signer_revoked_earlier() -> None:
    revoke_second = signed(9, FOUNDER.key, "revoke", {"device_id": SECOND.id})
    after = keylog.apply_event(LOG.states[8], revoke_second)
    late = signed(10, SECOND.key, "rotate", {}, prev=after.head)
    assert code([*EVENTS[:9], revoke_second, late]) == "signer_revoked"


# --- chain, rollback, fork, pin ------------------------------------------------------


def test_reordered_events() -> None:
    assert code([*EVENTS[:3], EVENTS[4], EVENTS[3], *EVENTS[5:]]) == "bad_chain"


def test_dropped_event() -> None:
    assert code([*EVENTS[:9], *EVENTS[10:]]) == "bad_chain"


def test_event_chained_to_an_earlier_head() -> None:
    replayed = signed(
        5, FOUNDER.key, "revoke", {"device_id": COORDINATOR.id}, prev=LOG.states[3].head
    )
    assert code([*EVENTS[:5], replayed]) == "bad_chain"


def test_truncated_log_is_a_rollback() -> None:
    assert code(EVENTS[:9], seen=(13, LOG.state.head)) == "rollback"


def test_a_different_history_is_a_fork() -> None:
    other = roster.rotate(LOG.states[9], FOUNDER.key, hpke_pair("epoch-2-other"), Log.at(10))
    assert code([*EVENTS[:10], other], seen=(11, LOG.states[10].head)) == "fork"


def test_wrong_pinned_genesis() -> None:
    other = Log(FOUNDER, workspace=b64e(b"another workspace"[:16]))
    assert code(EVENTS, root=other.root) == "genesis_mismatch"
    assert code(other.events, root=LOG.root) == "genesis_mismatch"


def test_empty_log_and_missing_genesis() -> None:
    assert code([]) == "empty"
    assert code(EVENTS[1:]) == "bad_genesis"


# --- invites, sealing, admins ---------------------------------------------------------


def test_invite_used_twice() -> None:
    again = roster.enroll(
        LOG.states[2],
        sign_key("invite/coordinator"),
        OUTSIDER.key,
        "coordinator",
        OUTSIDER.hpke_public,
        Log.at(3),
    )
    assert code([*EVENTS[:3], again]) == "invite_used"


def test_invite_expired_when_redeemed() -> None:
    expires = EVENTS[1]["body"]["expires"]
    late = roster.enroll(
        LOG.states[1],
        sign_key("invite/coordinator"),
        COORDINATOR.key,
        "coordinator",
        COORDINATOR.hpke_public,
        expires + 1,
    )
    assert code([*EVENTS[:2], late]) == "invite_expired"
    on_time = roster.enroll(
        LOG.states[1],
        sign_key("invite/coordinator"),
        COORDINATOR.key,
        "coordinator",
        COORDINATOR.hpke_public,
        expires,
    )
    assert verify_log([*EVENTS[:2], on_time], LOG.root).length == 3


def test_invite_expiry_against_the_appenders_clock() -> None:
    expires = EVENTS[4]["body"]["expires"]
    with pytest.raises(InvalidKeyLog) as info:
        keylog.apply_event(LOG.states[4], EVENTS[5], now=expires + 1)
    assert info.value.code == "invite_expired"
    stale_invite = signed(4, FOUNDER.key, "invite", invite_body("spare", expires=Log.at(4)))
    with pytest.raises(InvalidKeyLog) as info:
        keylog.apply_event(LOG.states[3], stale_invite, now=Log.at(4))
    assert info.value.code == "invite_expired"


def test_rotate_must_be_sealed_to_exactly_the_active_keyholders() -> None:
    body = EVENTS[10]["body"]
    missing = {k: v for k, v in body["sealed"].items() if k != COORDINATOR.id}
    extra = {**body["sealed"], VOLUNTEER.id: body["sealed"][FOUNDER.id]}
    for sealed in (missing, extra, {}):
        rotate = signed(10, FOUNDER.key, "rotate", {**body, "sealed": sealed})
        assert code([*EVENTS[:10], rotate]) == "bad_sealing"


def test_revoking_the_last_admin() -> None:
    suicide = signed(6, FOUNDER.key, "revoke", {"device_id": FOUNDER.id})
    assert code([*EVENTS[:6], suicide]) == "last_admin"
    # With a second admin active, an admin may step down.
    assert verify_log(
        [*EVENTS, signed(13, SECOND.key, "revoke", {"device_id": FOUNDER.id})], LOG.root
    ).active_admins() == [SECOND.id]


def test_malformed_events_are_refused_with_a_code() -> None:
    no_body = {
        k: v
        for k, v in signed(6, FOUNDER.key, "revoke", {"device_id": VOLUNTEER.id}).items()
        if k != "body"
    }
    assert code([*EVENTS[:6], no_body]) == "malformed"
    unknown_kind = signed(6, FOUNDER.key, "promote", {"device_id": VOLUNTEER.id})
    assert code([*EVENTS[:6], unknown_kind]) == "malformed"
    float_time = dict(EVENTS[6], at=1.5)
    assert code([*EVENTS[:6], float_time]) in ("malformed", "bad_signature")
    non_ascii_key = signed(6, FOUNDER.key, "revoke", {"device_id": VOLUNTEER.id})
    non_ascii_key["body"] = {"device_id": VOLUNTEER.id, "é": 1}
    assert code([*EVENTS[:6], non_ascii_key]) == "malformed"
