"""Receipts and signed chain heads: delivery that a keyholder, not the server, confirms.

Pure: no I/O, no clock (`at` is passed in), no randomness.

A **receipt** is a keyholder's signed statement that it holds one device's chain of
bundles, without a gap, from 1 up to `seq` (whose bundle hash is `hash`). A device
keeps its sealed captures until a receipt it verifies covers them, so a server that
loses, rolls back or withholds them cannot make the device forget them.

A **chain head** is a device's signed statement of the last bundle it handed to the
server. Keyholders compare it with what they were served: the server can serve an
old head (the device then misses its receipt and warns) but cannot forge a new one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import keys
from .encoding import b64d, b64e, labelled
from .errors import InvalidEncoding, InvalidReceipt
from .keylog import KeyLogState

L_RECEIPT = "fieldsync/v1/receipt"
L_CHAIN_HEAD = "fieldsync/v1/chain-head"

RECEIPT_FIELDS = ("v", "workspace", "signer", "device_id", "seq", "hash", "at")
HEAD_FIELDS = ("v", "workspace", "device_id", "seq", "hash", "at")
MAX_INT = 2**53 - 1

# The refusals a device makes of a receipt, in the order they are checked.
RECEIPT_CODES = (
    "malformed",
    "wrong_workspace",
    "wrong_device",
    "unknown_signer",
    "signer_revoked",
    "not_keyholder",
    "bad_signature",
    "beyond_sent",
    "hash_mismatch",
)
HEAD_CODES = ("malformed", "wrong_workspace", "unknown_device", "bad_signature")


def _sign(label: str, statement: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    return {**statement, "sig": b64e(key.sign(labelled(label, statement)))}


def sign_receipt(
    key: Ed25519PrivateKey, *, workspace: str, device_id: str, seq: int, hash: str, at: int
) -> dict[str, Any]:
    """A keyholder's receipt for `device_id`'s chain up to `seq`; `signer` is the key's device."""
    statement = {
        "v": 1,
        "workspace": workspace,
        "signer": keys.device_id_for(keys.public_bytes(key)),
        "device_id": device_id,
        "seq": seq,
        "hash": hash,
        "at": at,
    }
    check_shape(statement, RECEIPT_FIELDS, signed=False)
    return _sign(L_RECEIPT, statement, key)


def sign_chain_head(
    key: Ed25519PrivateKey, *, workspace: str, seq: int, hash: str, at: int
) -> dict[str, Any]:
    """A device's signed head: the last bundle (`seq`, `hash`) it handed to the server."""
    statement = {
        "v": 1,
        "workspace": workspace,
        "device_id": keys.device_id_for(keys.public_bytes(key)),
        "seq": seq,
        "hash": hash,
        "at": at,
    }
    check_shape(statement, HEAD_FIELDS, signed=False)
    return _sign(L_CHAIN_HEAD, statement, key)


def _int(value: Any, low: int) -> bool:
    return type(value) is int and low <= value <= MAX_INT


def check_shape(doc: Any, fields: tuple[str, ...], *, signed: bool = True) -> None:
    """Exactly the fields, each well formed (`malformed`): what the server also checks."""
    want = {*fields, "sig"} if signed else set(fields)
    if not isinstance(doc, Mapping) or set(doc) != want:
        raise InvalidReceipt("malformed", f"the fields must be exactly {sorted(want)}")
    if doc["v"] != 1 or type(doc["v"]) is not int:
        raise InvalidReceipt("malformed", "v must be 1")
    if not _int(doc["seq"], 1) or not _int(doc["at"], 0):
        raise InvalidReceipt("malformed", "seq (from 1) and at must be integers below 2^53")
    lengths = {"workspace": 16, "signer": 16, "device_id": 16, "hash": 32, "sig": keys.SIG_LEN}
    for name, length in lengths.items():
        if name in doc:
            value = doc[name]
            try:
                if not isinstance(value, str):
                    raise InvalidEncoding("bad_type", f"{name} is not a string")
                b64d(value, length=length, what=name)
            except InvalidEncoding as exc:
                raise InvalidReceipt("malformed", f"{name}: {exc.reason}") from None


def _check_sig(label: str, doc: Mapping[str, Any], fields: tuple[str, ...], public: bytes) -> None:
    message = labelled(label, {k: doc[k] for k in fields})
    if not keys.verify_signature(public, b64d(doc["sig"], length=keys.SIG_LEN), message):
        raise InvalidReceipt("bad_signature", "the signature does not verify")


def check_receipt_signature(receipt: Mapping[str, Any], signer_public: bytes) -> None:
    """The receipt is well formed and signed by `signer_public` (keyless: the server's check)."""
    check_shape(receipt, RECEIPT_FIELDS)
    _check_sig(L_RECEIPT, receipt, RECEIPT_FIELDS, signer_public)


def verify_receipt(
    receipt: Any,
    log: KeyLogState,
    *,
    device_id: str,
    sent_seq: int,
    own_hash: str | None,
) -> int:
    """Check a receipt served to `device_id`; returns the `seq` it covers.

    `log` is the device's verified key log now; `sent_seq` the highest bundle number
    the server acknowledged to this device; `own_hash` this device's bundle hash at the
    receipt's `seq`, or None when the device no longer keeps that bundle (then the
    receipt covers nothing it still holds, and only the hash is left unchecked).
    """
    check_shape(receipt, RECEIPT_FIELDS)
    if receipt["workspace"] != log.workspace:
        raise InvalidReceipt("wrong_workspace", "the receipt is for another workspace")
    if receipt["device_id"] != device_id:
        raise InvalidReceipt("wrong_device", "the receipt is about another device")
    signer = log.devices.get(receipt["signer"])
    if signer is None:
        raise InvalidReceipt("unknown_signer", "its signer is not in the key log")
    if signer.status == "revoked":
        # A seized laptop must not make phones drop what it never delivered.
        raise InvalidReceipt("signer_revoked", "its signer was revoked")
    if not signer.is_keyholder or signer.status != "active":
        raise InvalidReceipt("not_keyholder", "its signer is not an active keyholder")
    _check_sig(L_RECEIPT, receipt, RECEIPT_FIELDS, signer.sign_pub)
    seq = int(receipt["seq"])
    if seq > sent_seq:
        raise InvalidReceipt(
            "beyond_sent", f"it covers bundle {seq}, but this device sent {sent_seq}"
        )
    if own_hash is not None and receipt["hash"] != own_hash:
        raise InvalidReceipt("hash_mismatch", f"its hash is not this device's bundle {seq}")
    return seq


def verify_chain_head(head: Any, log: KeyLogState) -> tuple[str, int, str]:
    """Check a signed chain head against the key log; returns (device_id, seq, hash)."""
    check_shape(head, HEAD_FIELDS)
    if head["workspace"] != log.workspace:
        raise InvalidReceipt("wrong_workspace", "the head is for another workspace")
    device = log.devices.get(head["device_id"])
    if device is None:
        raise InvalidReceipt("unknown_device", "its device is not in the key log")
    _check_sig(L_CHAIN_HEAD, head, HEAD_FIELDS, device.sign_pub)
    return str(head["device_id"]), int(head["seq"]), str(head["hash"])


def check_head_signature(head: Mapping[str, Any], device_public: bytes) -> None:
    """The head is well formed and signed by `device_public` (the server's check)."""
    check_shape(head, HEAD_FIELDS)
    _check_sig(L_CHAIN_HEAD, head, HEAD_FIELDS, device_public)
