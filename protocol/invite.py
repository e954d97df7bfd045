"""The invite string: what a new device needs to join, signed by the inviting admin.

Pure: no I/O, no clock, no randomness.

`fieldsync-invite:` followed by base64url of canonical JSON. It carries a secret
(the one-time key and the tag key), so it travels like a password: in person, by
QR code. The admin's signature is checked against the key log the joining device
verifies from the root fingerprint the invite itself names, so changing any field
(the server URL included) is caught.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import keys
from .encoding import b64d, b64e, canonical_json, labelled, parse_json
from .errors import InvalidEncoding, InvalidInvite
from .keylog import KeyLogState, invite_id_for

PREFIX = "fieldsync-invite:"
L_INVITE_SIG = "fieldsync/v1/invite-sig"
FIELDS = ("server", "workspace", "root", "role", "expires", "tag_key", "invite_seed", "admin")


def encode_invite(fields: dict[str, Any], admin_key: Ed25519PrivateKey) -> str:
    """`fields` holds every name in FIELDS; the admin's signature is added here."""
    body = {k: fields[k] for k in FIELDS}
    body["sig"] = b64e(admin_key.sign(labelled(L_INVITE_SIG, body)))
    return PREFIX + b64e(canonical_json(body))


def decode_invite(text: str) -> dict[str, Any]:
    """Parse an invite string. Its signature can only be checked once the log is fetched."""
    text = text.strip()
    if not text.startswith(PREFIX):
        raise InvalidInvite("malformed", f"an invite starts with {PREFIX!r}")
    try:
        raw = b64d(text[len(PREFIX) :], what="invite")
        # Strict: a repeated member is refused, not resolved (parsers keep the first or
        # the last), so every implementation reads one invite the same way.
        body = parse_json(raw)
    except InvalidEncoding as exc:
        raise InvalidInvite("malformed", "the invite is damaged: copy it again") from exc
    if not isinstance(body, dict) or set(body) != {*FIELDS, "sig"}:
        raise InvalidInvite("malformed", "the invite is damaged: copy it again")
    try:
        canonical = canonical_json(body)
    except InvalidEncoding as exc:  # a float or an out-of-range integer in some field
        raise InvalidInvite("malformed", "the invite is not canonical") from exc
    if canonical != raw:
        raise InvalidInvite("malformed", "the invite is not canonical")
    if type(body["expires"]) is not int or not all(
        isinstance(body[k], str) for k in (*FIELDS, "sig") if k != "expires"
    ):
        raise InvalidInvite("malformed", "the invite is damaged: copy it again")
    return body


def check_invite(invite: dict[str, Any], state: KeyLogState, now: int) -> None:
    """Check a decoded invite against the verified key log of its workspace."""
    if state.workspace != invite["workspace"] or state.root != invite["root"]:
        raise InvalidInvite("wrong_workspace", "the invite is for another workspace")
    admin = state.devices.get(invite["admin"])
    if admin is None or admin.role != "admin":
        raise InvalidInvite("tampered", "the invite is not signed by an admin of the workspace")
    unsigned = {k: invite[k] for k in FIELDS}
    try:
        sig = b64d(invite["sig"], length=keys.SIG_LEN, what="sig")
    except InvalidEncoding as exc:
        raise InvalidInvite("tampered", "the invite's signature is malformed") from exc
    if not keys.verify_signature(admin.sign_pub, sig, labelled(L_INVITE_SIG, unsigned)):
        raise InvalidInvite("tampered", "the invite was altered after the admin signed it")
    seed = b64d(invite["invite_seed"], length=32, what="invite_seed")
    iid = invite_id_for(keys.public_bytes(keys.signing_key(seed)))
    logged = state.invites.get(iid)
    if logged is None:
        raise InvalidInvite("unknown", "the workspace's key log has no such invite")
    if logged.role != invite["role"] or logged.expires != invite["expires"]:
        raise InvalidInvite("tampered", "the invite's role or expiry differs from the logged one")
    if logged.used_by is not None:
        raise InvalidInvite("used", "this invite was already used: ask for a new one")
    if now > logged.expires:
        raise InvalidInvite("expired", "this invite has expired: ask for a new one")
