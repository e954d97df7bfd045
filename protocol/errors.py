"""One exception per failure family, each carrying a stable code and a readable reason.

Pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base of every refusal the core makes. `code` is stable; `reason` is for people."""

    family = "protocol_error"

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class InvalidEncoding(ProtocolError):
    """Bytes or a structure that do not decode as the spec says."""

    family = "invalid_encoding"


class InvalidBundle(ProtocolError):
    """A bundle that fails its signature, its AEAD, its cell ids or its key commitment."""

    family = "invalid_bundle"


class InvalidKeyLog(ProtocolError):
    """A key log that does not verify from the pinned genesis."""

    family = "invalid_key_log"
    seq: int | None = None  # the position of the event that failed, when one did


class MergeConflictError(ProtocolError):
    """One cell id announced with two different contents."""

    family = "merge_error"


class InvalidInvite(ProtocolError):
    """An invite string that is malformed, tampered, expired or for another workspace."""

    family = "invalid_invite"


class InvalidReceipt(ProtocolError):
    """A receipt or a signed chain head that a device must not act on."""

    family = "invalid_receipt"


class InvalidAttachment(ProtocolError):
    """An attachment descriptor, chunk or reassembled file that does not verify."""

    family = "invalid_attachment"
