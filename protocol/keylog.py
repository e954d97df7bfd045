"""The key log: a hash-chained, signed list of roster and key events, verified from a pin.

Pure: no I/O, no clock (the time to check invite expiry is passed in), no randomness.

Every device verifies the whole log from the genesis whose fingerprint it pinned
at join time, so a server can serve the log but forge, reorder, drop or roll back
none of it. Each failure is an `InvalidKeyLog` with its own code.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import keys
from .encoding import b64d, b64e, labelled, labelled_hash
from .errors import InvalidEncoding, InvalidKeyLog
from .model import ZERO_HASH

L_EVENT_SIG = "fieldsync/v1/key-log-sig"
L_EVENT_HASH = "fieldsync/v1/key-log-hash"
L_INVITE_ID = "fieldsync/v1/invite-id"
L_SAFETY = "fieldsync/v1/safety-number"

KINDS = ("genesis", "invite", "enroll", "approve", "revoke", "rotate")
ROLES = ("volunteer", "coordinator", "admin")
KEYHOLDER_ROLES = ("coordinator", "admin")


@dataclass(frozen=True)
class Device:
    device_id: str
    role: str
    sign_pub: bytes
    hpke_pub: bytes | None
    status: str  # "active" | "pending" (a keyholder awaiting approve) | "revoked"
    since: int  # seq of the enroll (or genesis) event

    @property
    def is_keyholder(self) -> bool:
        return self.role in KEYHOLDER_ROLES


@dataclass(frozen=True)
class Invite:
    invite_id: str
    key: bytes
    role: str
    expires: int
    used_by: str | None = None


@dataclass(frozen=True)
class KeyLogState:
    workspace: str
    root: str  # fingerprint of the genesis event, pinned by every device
    head: str  # hash of the last event
    length: int
    devices: Mapping[str, Device]
    invites: Mapping[str, Invite]
    epochs: Mapping[int, bytes]  # epoch number -> HPKE public key
    sealed: Mapping[tuple[int, str], str] = field(
        default_factory=dict
    )  # (epoch, device) -> sealed priv

    @property
    def current_epoch(self) -> int:
        return max(self.epochs)

    @property
    def current_epoch_public(self) -> bytes:
        return self.epochs[self.current_epoch]

    def active_keyholders(self) -> list[str]:
        return sorted(
            d.device_id for d in self.devices.values() if d.is_keyholder and d.status == "active"
        )

    def active_admins(self) -> list[str]:
        return sorted(
            d.device_id for d in self.devices.values() if d.role == "admin" and d.status == "active"
        )


def invite_id_for(invite_key: bytes) -> str:
    return b64e(hashlib.sha256(L_INVITE_ID.encode("ascii") + b"\x00" + invite_key).digest()[:16])


def _unsigned(event: Mapping[str, Any]) -> dict[str, Any]:
    return {k: event[k] for k in ("seq", "prev", "kind", "at", "signer", "body")}


def event_hash(event: Mapping[str, Any]) -> str:
    return b64e(labelled_hash(L_EVENT_HASH, {**_unsigned(event), "sig": event["sig"]}))


def sign_event(
    *,
    seq: int,
    prev: str,
    kind: str,
    at: int,
    signer: str,
    body: dict[str, Any],
    key: Ed25519PrivateKey,
) -> dict[str, Any]:
    """Build and sign one event. `signer` is an admin's device id, or an invite id for enroll."""
    event: dict[str, Any] = {
        "seq": seq,
        "prev": prev,
        "kind": kind,
        "at": at,
        "signer": signer,
        "body": body,
    }
    event["sig"] = b64e(key.sign(labelled(L_EVENT_SIG, event)))
    return event


def safety_number(head: str) -> str:
    """Twenty-five digits in five groups, from the log head: read aloud and compared."""
    digest = hashlib.sha256(L_SAFETY.encode("ascii") + b"\x00" + b64d(head, length=32)).digest()
    number = int.from_bytes(digest[:16], "big") % 10**25
    text = f"{number:025d}"
    return " ".join(text[i : i + 5] for i in range(0, 25, 5))


def _fail(code: str, event: Mapping[str, Any] | None, reason: str) -> InvalidKeyLog:
    where = f"event {event.get('seq')} ({event.get('kind')}): " if event else ""
    return InvalidKeyLog(code, where + reason)


def _b(event: Mapping[str, Any], value: Any, length: int, what: str) -> bytes:
    try:
        return b64d(value, length=length, what=what)
    except InvalidEncoding as exc:
        raise _fail("malformed", event, exc.reason) from exc


def _check_sig(event: Mapping[str, Any], public: bytes) -> None:
    try:
        sig = b64d(event["sig"], length=keys.SIG_LEN, what="sig")
    except InvalidEncoding as exc:
        raise _fail("bad_signature", event, "the signature is malformed") from exc
    try:
        message = labelled(L_EVENT_SIG, _unsigned(event))
    except InvalidEncoding as exc:  # a float, a huge integer or a non-ASCII key
        raise _fail("malformed", event, exc.reason) from exc
    if not keys.verify_signature(public, sig, message):
        raise _fail(
            "bad_signature", event, "the signature does not verify: the event was altered or forged"
        )


def genesis_state(event: Mapping[str, Any]) -> KeyLogState:
    """Verify a genesis event on its own and return the state it founds."""
    if event.get("kind") != "genesis" or event.get("seq") != 0 or event.get("prev") != ZERO_HASH:
        raise _fail("bad_genesis", event, "the log must start with a genesis event at seq 0")
    body = event["body"]
    admin = body["admin"]
    sign_pub = _b(event, admin["sign_pub"], keys.ED25519_LEN, "sign_pub")
    hpke_pub = _b(event, admin["hpke_pub"], keys.HPKE_PUB_LEN, "hpke_pub")
    device_id = keys.device_id_for(sign_pub)
    if admin["device_id"] != device_id or event["signer"] != device_id:
        raise _fail("bad_genesis", event, "the founder's device id does not match its key")
    _check_sig(event, sign_pub)
    epoch = body["epoch"]
    if epoch["n"] != 1:
        raise _fail("bad_epoch", event, "the first epoch must be 1")
    epoch_pub = _b(event, epoch["pub"], keys.HPKE_PUB_LEN, "epoch pub")
    if set(body["sealed"]) != {device_id}:
        raise _fail("bad_sealing", event, "the first epoch key must be sealed to the founder only")
    workspace = body["workspace"]
    _b(event, workspace, 16, "workspace")
    root = event_hash(event)
    return KeyLogState(
        workspace=workspace,
        root=root,
        head=root,
        length=1,
        devices={device_id: Device(device_id, "admin", sign_pub, hpke_pub, "active", 0)},
        invites={},
        epochs={1: epoch_pub},
        sealed={(1, device_id): body["sealed"][device_id]},
    )


def _admin_signer(state: KeyLogState, event: Mapping[str, Any]) -> Device:
    signer = state.devices.get(event["signer"])
    if signer is None:
        raise _fail("unknown_signer", event, "signed by a key that is not enrolled in this log")
    if signer.status == "revoked":
        raise _fail("signer_revoked", event, "signed by a device revoked earlier in the log")
    if signer.role != "admin" or signer.status != "active":
        raise _fail("signer_not_admin", event, "signed by a device that is not an active admin")
    _check_sig(event, signer.sign_pub)
    return signer


def apply_event(
    state: KeyLogState, event: Mapping[str, Any], now: int | None = None
) -> KeyLogState:
    """Verify one event against the state before it and return the state after it.

    `now` (unix seconds) is given by a server appending a fresh event, so an
    expired invite is refused; verifiers replaying history pass None.
    """
    if event.get("seq") != state.length:
        raise _fail("bad_chain", event, f"expected seq {state.length}: events reordered or missing")
    if event.get("prev") != state.head:
        raise _fail(
            "bad_chain", event, "prev does not name the previous event: reordered or altered"
        )
    kind = event.get("kind")
    body = event["body"]
    devices = dict(state.devices)
    invites = dict(state.invites)
    epochs = dict(state.epochs)
    sealed = dict(state.sealed)
    if kind == "invite":
        _admin_signer(state, event)
        key = _b(event, body["invite_key"], keys.ED25519_LEN, "invite_key")
        if body["role"] not in ROLES:
            raise _fail("bad_role", event, f"unknown role {body['role']!r}")
        iid = invite_id_for(key)
        if iid in invites:
            raise _fail("invite_reused", event, "this invite key was already issued")
        if now is not None and body["expires"] <= now:
            raise _fail("invite_expired", event, "the invite expires in the past")
        invites[iid] = Invite(iid, key, body["role"], body["expires"])
    elif kind == "enroll":
        invite = invites.get(event["signer"])
        if invite is None:
            raise _fail("unknown_invite", event, "no invite in the log has this id")
        if invite.used_by is not None:
            raise _fail("invite_used", event, "the invite was already redeemed")
        _check_sig(event, invite.key)
        if event["at"] > invite.expires or (now is not None and now > invite.expires):
            raise _fail("invite_expired", event, "the invite had expired when it was redeemed")
        sign_pub = _b(event, body["sign_pub"], keys.ED25519_LEN, "sign_pub")
        device_id = keys.device_id_for(sign_pub)
        if body["device_id"] != device_id:
            raise _fail("device_mismatch", event, "the device id does not match its key")
        if device_id in devices:
            raise _fail("device_exists", event, "this device is already enrolled")
        if body["role"] != invite.role:
            raise _fail("bad_role", event, "the role differs from the invite's")
        hpke_pub = None
        if invite.role in KEYHOLDER_ROLES:
            hpke_pub = _b(event, body.get("hpke_pub"), keys.HPKE_PUB_LEN, "hpke_pub")
        elif body.get("hpke_pub") is not None:
            raise _fail("malformed", event, "a volunteer holds no HPKE key")
        status = "pending" if invite.role in KEYHOLDER_ROLES else "active"
        devices[device_id] = Device(
            device_id, invite.role, sign_pub, hpke_pub, status, event["seq"]
        )
        invites[invite.invite_id] = replace(invite, used_by=device_id)
    elif kind == "approve":
        _admin_signer(state, event)
        target = devices.get(body["device_id"])
        if target is None or not target.is_keyholder:
            raise _fail("bad_target", event, "only an enrolled coordinator can be approved")
        if target.status != "pending":
            raise _fail("bad_target", event, f"the device is {target.status}, not pending")
        if set(body["sealed"]) != {str(n) for n in epochs}:
            raise _fail("bad_sealing", event, "approve must seal every epoch key to the device")
        devices[target.device_id] = replace(target, status="active")
        for n, s in body["sealed"].items():
            sealed[(int(n), target.device_id)] = s
    elif kind == "revoke":
        _admin_signer(state, event)
        target = devices.get(body["device_id"])
        if target is None:
            raise _fail("bad_target", event, "no such device")
        if target.status == "revoked":
            raise _fail("bad_target", event, "the device is already revoked")
        devices[target.device_id] = replace(target, status="revoked")
        if not any(d.role == "admin" and d.status == "active" for d in devices.values()):
            raise _fail(
                "last_admin", event, "revoking the last active admin would lock the workspace"
            )
    elif kind == "rotate":
        _admin_signer(state, event)
        n = body["epoch"]
        if n != state.current_epoch + 1:
            raise _fail("bad_epoch", event, f"expected epoch {state.current_epoch + 1}, got {n}")
        pub = _b(event, body["pub"], keys.HPKE_PUB_LEN, "epoch pub")
        if sorted(body["sealed"]) != state.active_keyholders():
            raise _fail(
                "bad_sealing",
                event,
                "the new epoch key must be sealed to exactly the active keyholders",
            )
        epochs[n] = pub
        for dev, s in body["sealed"].items():
            sealed[(n, dev)] = s
    elif kind == "genesis":
        raise _fail("bad_chain", event, "a second genesis")
    else:
        raise _fail("malformed", event, f"unknown event kind {kind!r}")
    return KeyLogState(
        workspace=state.workspace,
        root=state.root,
        head=event_hash(event),
        length=state.length + 1,
        devices=devices,
        invites=invites,
        epochs=epochs,
        sealed=sealed,
    )


def verify_log(
    events: Iterable[Mapping[str, Any]],
    pinned_root: str,
    seen: tuple[int, str] | None = None,
) -> KeyLogState:
    """Verify a whole log from the pinned genesis fingerprint.

    `seen` is (length, head) of the longest log this device verified before: a
    shorter log is a rollback, and one whose event at that position differs is a fork.
    """
    it = iter(events)
    first = next(it, None)
    if first is None:
        raise InvalidKeyLog("empty", "the key log is empty")
    position = 0  # of the event being verified, kept on the error
    try:
        state = genesis_state(first)
        if state.root != pinned_root:
            raise _fail("genesis_mismatch", first, "the genesis is not the one this device pinned")
        for event in it:
            position = state.length
            state = apply_event(state, event)
            if seen is not None and state.length == seen[0] and state.head != seen[1]:
                raise _fail("fork", event, "this log differs from the one this device saw before")
    except InvalidKeyLog as exc:
        exc.seq = position
        raise
    except (KeyError, TypeError, AttributeError) as exc:
        err = InvalidKeyLog("malformed", f"an event is missing a field or has a wrong type: {exc}")
        err.seq = position
        raise err from exc
    if seen is not None and state.length < seen[0]:
        raise InvalidKeyLog(
            "rollback",
            f"the log has {state.length} events but this device saw {seen[0]}: rolled back",
        )
    return state
