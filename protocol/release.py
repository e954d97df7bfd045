"""Releases: a device's signed word that the chunks of attachments it removed may go
(docs/PROTOCOL.md, "Re-key, removal and release").

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import keys
from .encoding import b64d, b64e, labelled
from .errors import InvalidAttachment, InvalidEncoding

L_CHUNK_RELEASE = "fieldsync/v1/chunk-release"

RELEASE_FIELDS = frozenset(("v", "workspace", "device_id", "change", "chunks", "purge", "at"))


def sign_release(
    *,
    workspace: str,
    device_key: Ed25519PrivateKey,
    change: int,
    chunks: Sequence[str],
    purge: bool,
    at: int,
) -> dict[str, Any]:
    """A device's signed word that the chunks of attachments it removed (in its bundle
    numbered `change` on the server) may go: the server keeps it, and a keyholder who
    finds a chunk gone can check who let it go."""
    body = {
        "v": 1,
        "workspace": workspace,
        "device_id": keys.device_id_for(keys.public_bytes(device_key)),
        "change": change,
        "chunks": list(chunks),
        "purge": purge,
        "at": at,
    }
    sig = device_key.sign(labelled(L_CHUNK_RELEASE, body))
    return {**body, "sig": b64e(sig)}


def verify_release(release: dict[str, Any], device_public: bytes) -> None:
    """Check a release's signature and its signer (`bad_release`)."""
    if set(release) != RELEASE_FIELDS | {"sig"}:
        raise InvalidAttachment("bad_release", "a release has exactly its fields and sig")
    body = {k: v for k, v in release.items() if k != "sig"}
    if body["device_id"] != keys.device_id_for(device_public):
        raise InvalidAttachment("bad_release", "the release names another device than its signer")
    try:
        sig = b64d(release["sig"], length=keys.SIG_LEN, what="sig")
        message = labelled(L_CHUNK_RELEASE, body)
    except (InvalidEncoding, AttributeError) as exc:
        raise InvalidAttachment("bad_release", "the release is malformed") from exc
    if not keys.verify_signature(device_public, sig, message):
        raise InvalidAttachment("bad_release", "the release signature does not verify")
