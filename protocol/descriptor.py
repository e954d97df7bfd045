"""The descriptor of an attachment: the sealed value of its field, and the layout of its
chunks (docs/PROTOCOL.md, "Attachments").

Pure: no I/O, no clock, no randomness.

An attachment is the field `_file_<id in hex>` of its record; its value (this
descriptor) names the file, its type, size, the SHA-256 taken at capture, its chunk
ids and its key. `parse_descriptor` checks every member: a descriptor is a device's
word, and its name is text other devices write to disk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .encoding import b64d, b64e
from .errors import InvalidAttachment, InvalidEncoding
from .padding import MIN_PADDED, padme

CHUNK_SIZE = 1 << 20  # what devices seal with (see PROTOCOL.md for why 1 MiB)
MIN_CHUNK_SIZE = 1 << 8
MAX_CHUNK_SIZE = 1 << 20
MAX_CHUNKS = 1024  # what one 64 KiB cell can list, with room for the other fields
TAG_LEN = 16
MAX_CHUNK_CT = MAX_CHUNK_SIZE + TAG_LEN  # the largest chunk a server stores
KEY_LEN = 32
ID_LEN = 16
MAX_NAME = 255  # code points of a file name
MAX_MEDIA_TYPE = 127
MAX_CAPTION = 1000  # code points
MAX_SIZE = MAX_CHUNKS * MAX_CHUNK_SIZE - 4  # 1 GiB - 4: the length prefix fills the rest

FILE_FIELD_PREFIX = "_file_"
FILE_FIELD_RE = re.compile(r"^_file_[0-9a-f]{32}\Z")
_CAPTURED_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z\Z")
_MEDIA_RE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*\Z")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}\Z")
# A chunk id: 32 bytes of canonical base64url, 43 characters, the last one's two low
# bits zero. Checked wherever an id becomes part of a path.
CHUNK_ID_RE = re.compile(r"^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]\Z")
DESCRIPTOR_FIELDS = frozenset(
    (
        "v",
        "id",
        "name",
        "media_type",
        "size",
        "sha256",
        "captured_at",
        "caption",
        "chunk_size",
        "chunks",
        "key",
    )
)


def file_field(attachment_id: str) -> str:
    """The field of a record that holds attachment `attachment_id` (its own register)."""
    return FILE_FIELD_PREFIX + b64d(attachment_id, length=ID_LEN, what="attachment id").hex()


def attachment_id_of(field: str) -> str | None:
    """The attachment id a field holds, or None when it is not an attachment field."""
    if not FILE_FIELD_RE.match(field):
        return None
    return b64e(bytes.fromhex(field[len(FILE_FIELD_PREFIX) :]))


def valid_chunk_id(text: str) -> bool:
    return bool(CHUNK_ID_RE.match(text))


def is_file_field(field: str) -> bool:
    return bool(FILE_FIELD_RE.match(field))


def padded_length(size: int) -> int:
    """The length of the padded stream the chunks cut: `len(pad(file))`."""
    return max(MIN_PADDED, padme(4 + size))


def chunk_count(size: int, chunk_size: int) -> int:
    return -(-padded_length(size) // chunk_size)


def chunk_length(size: int, chunk_size: int, index: int) -> int:
    """The ciphertext length of chunk `index` (plaintext and tag)."""
    count = chunk_count(size, chunk_size)
    if index < count - 1:
        return chunk_size + TAG_LEN
    return padded_length(size) - (count - 1) * chunk_size + TAG_LEN


@dataclass(frozen=True)
class Descriptor:
    """The sealed value of an attachment field: everything needed to fetch, open and
    check the file, and what a lawyer needs to trust it (the hash taken at capture)."""

    id: str
    name: str
    media_type: str
    size: int
    sha256: str  # hex of the original bytes
    captured_at: str  # UTC, YYYY-MM-DDTHH:MM:SSZ
    caption: str | None
    chunk_size: int
    chunks: tuple[str, ...]
    key: bytes

    @property
    def count(self) -> int:
        return len(self.chunks)

    def to_value(self) -> dict[str, Any]:
        return {
            "v": 1,
            "id": self.id,
            "name": self.name,
            "media_type": self.media_type,
            "size": self.size,
            "sha256": self.sha256,
            "captured_at": self.captured_at,
            "caption": self.caption,
            "chunk_size": self.chunk_size,
            "chunks": list(self.chunks),
            "key": b64e(self.key),
        }

    def public(self) -> dict[str, Any]:
        """What may be shown and exported: every field but the key."""
        value = self.to_value()
        del value["key"]
        return value


def _bad(reason: str) -> InvalidAttachment:
    return InvalidAttachment("bad_descriptor", reason)


def _text(value: Any, what: str, most: int) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= most:
        raise _bad(f"{what} must be text of 1 to {most} characters")
    if any(ord(c) < 0x20 or 0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise _bad(f"{what} holds a control character or a lone surrogate")
    return value


def check_name(name: str) -> str:
    """A file name as sealed: no path, no control characters, 1 to 255 characters."""
    _text(name, "name", MAX_NAME)
    if "/" in name or "\\" in name or name in (".", ".."):
        raise _bad("name must be a file name, not a path")
    return name


def check_media_type(media_type: str) -> str:
    if not isinstance(media_type, str) or not (
        len(media_type) <= MAX_MEDIA_TYPE and _MEDIA_RE.match(media_type)
    ):
        raise _bad("media_type must be a lowercase type/subtype")
    return media_type


def check_caption(caption: str | None) -> str | None:
    return None if caption is None else _text(caption, "caption", MAX_CAPTION)


def check_captured_at(captured_at: str) -> str:
    if not isinstance(captured_at, str) or not _CAPTURED_RE.match(captured_at):
        raise _bad("captured_at must be YYYY-MM-DDTHH:MM:SSZ")
    return captured_at


def _int(value: Any, what: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise _bad(f"{what} must be an integer from {low} to {high}")
    return value


def parse_descriptor(value: Any) -> Descriptor:
    """A descriptor from an opened cell value, every field checked (`bad_descriptor`)."""
    if not isinstance(value, dict) or set(value) != DESCRIPTOR_FIELDS:
        raise _bad(f"a descriptor has exactly the fields {', '.join(sorted(DESCRIPTOR_FIELDS))}")
    if value["v"] != 1 or type(value["v"]) is not int:
        raise _bad("unknown descriptor version")
    chunk_size = _int(value["chunk_size"], "chunk_size", MIN_CHUNK_SIZE, MAX_CHUNK_SIZE)
    if chunk_size & (chunk_size - 1):
        raise _bad("chunk_size must be a power of two")
    size = _int(value["size"], "size", 0, MAX_SIZE)
    chunks = value["chunks"]
    if not isinstance(chunks, list) or len(chunks) != chunk_count(size, chunk_size):
        raise _bad("chunks must list exactly the chunks that size and chunk_size make")
    if len(chunks) > MAX_CHUNKS:
        raise _bad(f"an attachment has at most {MAX_CHUNKS} chunks")
    try:
        b64d(value["id"], length=ID_LEN, what="id")
        key = b64d(value["key"], length=KEY_LEN, what="key")
        for c in chunks:
            b64d(c, length=32, what="chunk id")
    except (InvalidEncoding, AttributeError) as exc:
        raise _bad(str(exc)) from None
    if len(set(chunks)) != len(chunks):
        raise _bad("a chunk id is listed twice")
    sha = value["sha256"]
    if not isinstance(sha, str) or not _SHA256_RE.match(sha):
        raise _bad("sha256 must be 64 lowercase hex digits")
    return Descriptor(
        id=value["id"],
        name=check_name(value["name"]),
        media_type=check_media_type(value["media_type"]),
        size=size,
        sha256=sha,
        captured_at=check_captured_at(value["captured_at"]),
        caption=check_caption(value["caption"]),
        chunk_size=chunk_size,
        chunks=tuple(chunks),
        key=key,
    )
