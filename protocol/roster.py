"""Builders for key-log events, and a keyholder's opening of its sealed epoch keys.

Pure: no I/O, no clock, no randomness; keys and times come from the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import crypto, keys
from .encoding import b64e
from .errors import InvalidBundle, InvalidEncoding, InvalidKeyLog
from .keylog import KeyLogState, invite_id_for, sign_event
from .model import ZERO_HASH


def genesis(
    *,
    workspace: str,
    admin_key: Ed25519PrivateKey,
    admin_hpke: keys.HpkeKeyPair,
    epoch: keys.HpkeKeyPair,
    at: int,
) -> dict[str, Any]:
    sign_pub = keys.public_bytes(admin_key)
    device_id = keys.device_id_for(sign_pub)
    body = {
        "workspace": workspace,
        "admin": {
            "device_id": device_id,
            "sign_pub": b64e(sign_pub),
            "hpke_pub": b64e(admin_hpke.public_bytes),
        },
        "epoch": {"n": 1, "pub": b64e(epoch.public_bytes)},
        "sealed": {
            device_id: crypto.seal_epoch_key(
                epoch.private_bytes, admin_hpke.public_bytes, workspace, 1, device_id
            )
        },
    }
    return sign_event(
        seq=0, prev=ZERO_HASH, kind="genesis", at=at, signer=device_id, body=body, key=admin_key
    )


def _admin_event(
    state: KeyLogState, admin_key: Ed25519PrivateKey, kind: str, body: dict[str, Any], at: int
) -> dict[str, Any]:
    signer = keys.device_id_for(keys.public_bytes(admin_key))
    return sign_event(
        seq=state.length, prev=state.head, kind=kind, at=at, signer=signer, body=body, key=admin_key
    )


def invite(
    state: KeyLogState,
    admin_key: Ed25519PrivateKey,
    invite_key: Ed25519PrivateKey,
    role: str,
    expires: int,
    at: int,
) -> dict[str, Any]:
    body = {"invite_key": b64e(keys.public_bytes(invite_key)), "role": role, "expires": expires}
    return _admin_event(state, admin_key, "invite", body, at)


def enroll(
    state: KeyLogState,
    invite_key: Ed25519PrivateKey,
    device_key: Ed25519PrivateKey,
    role: str,
    hpke_public: bytes | None,
    at: int,
) -> dict[str, Any]:
    sign_pub = keys.public_bytes(device_key)
    body = {
        "device_id": keys.device_id_for(sign_pub),
        "sign_pub": b64e(sign_pub),
        "hpke_pub": b64e(hpke_public) if hpke_public is not None else None,
        "role": role,
    }
    signer = invite_id_for(keys.public_bytes(invite_key))
    return sign_event(
        seq=state.length,
        prev=state.head,
        kind="enroll",
        at=at,
        signer=signer,
        body=body,
        key=invite_key,
    )


def approve(
    state: KeyLogState,
    admin_key: Ed25519PrivateKey,
    device_id: str,
    epoch_private: Mapping[int, bytes],
    at: int,
) -> dict[str, Any]:
    target = state.devices[device_id]
    if target.hpke_pub is None:
        raise InvalidKeyLog("bad_target", "the device holds no HPKE key to seal to")
    sealed = {
        str(n): crypto.seal_epoch_key(
            epoch_private[n], target.hpke_pub, state.workspace, n, device_id
        )
        for n in state.epochs
    }
    return _admin_event(state, admin_key, "approve", {"device_id": device_id, "sealed": sealed}, at)


def revoke(
    state: KeyLogState, admin_key: Ed25519PrivateKey, device_id: str, at: int
) -> dict[str, Any]:
    return _admin_event(state, admin_key, "revoke", {"device_id": device_id}, at)


def rotate(
    state: KeyLogState, admin_key: Ed25519PrivateKey, new_epoch: keys.HpkeKeyPair, at: int
) -> dict[str, Any]:
    n = state.current_epoch + 1
    sealed = {}
    for dev in state.active_keyholders():
        pub = state.devices[dev].hpke_pub
        assert pub is not None  # keyholders always enroll with an HPKE key
        sealed[dev] = crypto.seal_epoch_key(new_epoch.private_bytes, pub, state.workspace, n, dev)
    body = {"epoch": n, "pub": b64e(new_epoch.public_bytes), "sealed": sealed}
    return _admin_event(state, admin_key, "rotate", body, at)


def open_epoch_keys(state: KeyLogState, device_id: str, hpke_private: bytes) -> dict[int, bytes]:
    """Every epoch private key sealed to this device, each checked against the log's public key.

    A key that opens but does not match the public key the log signed is refused:
    it would let a volunteer seal to a key the coordinators cannot use.
    """
    out: dict[int, bytes] = {}
    for (n, dev), sealed in state.sealed.items():
        if dev != device_id:
            continue
        try:
            priv = crypto.open_epoch_key(sealed, hpke_private, state.workspace, n, device_id)
        except InvalidBundle as exc:
            raise InvalidKeyLog("epoch_key_sealing", exc.reason) from exc
        try:
            public = keys.HpkeKeyPair.from_seed(priv).public_bytes
        except InvalidEncoding:  # a sealed key of the wrong length
            public = b""
        if public != state.epochs[n]:
            raise InvalidKeyLog(
                "epoch_key_mismatch",
                f"the epoch {n} key sealed to this device is not the logged key",
            )
        out[n] = priv
    return out
