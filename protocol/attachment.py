"""Attachments: a file sealed in fixed-size chunks under its own key (docs/PROTOCOL.md,
"Attachments").

Pure: no I/O, no clock. Randomness (the attachment id and key) is passed in.

A file is padded as a whole (`padding.pad`, as cells are), cut into chunks of
`chunk_size` bytes, and each chunk is sealed with ChaCha20-Poly1305 under a fresh
32-byte attachment key, nonce `u96be(index)`, and an associated data that binds the
attachment id, the chunk size, the index, the chunk count and the original size.
A chunk's id is the SHA-256 of its ciphertext, so the server can check what it
stores and a reader can check what it is served. The **descriptor** (name, media
type, size, SHA-256 of the original bytes, capture time, caption, chunk ids, key)
is the value of one cell, field `_file_<id in hex>`, of the record it belongs to:
it is sealed and signed like any field, so a re-key re-seals its key with the
bundle's and never touches a chunk.

Every refusal is one `InvalidAttachment` with a code; a reader told which chunk a
server served instead (`chunk_order`, `chunk_foreign`) can say what was done.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable, Container, Iterable, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from .descriptor import (
    CHUNK_ID_RE,
    CHUNK_SIZE,
    DESCRIPTOR_FIELDS,
    FILE_FIELD_PREFIX,
    FILE_FIELD_RE,
    ID_LEN,
    KEY_LEN,
    MAX_CAPTION,
    MAX_CHUNK_CT,
    MAX_CHUNK_SIZE,
    MAX_CHUNKS,
    MAX_MEDIA_TYPE,
    MAX_NAME,
    MAX_SIZE,
    MIN_CHUNK_SIZE,
    TAG_LEN,
    Descriptor,
    attachment_id_of,
    check_caption,
    check_captured_at,
    check_media_type,
    check_name,
    chunk_count,
    chunk_length,
    file_field,
    is_file_field,
    padded_length,
    parse_descriptor,
    valid_chunk_id,
)
from .encoding import b64d, b64e
from .errors import InvalidAttachment
from .release import L_CHUNK_RELEASE, sign_release, verify_release

L_CHUNK_AD = "fieldsync/v1/chunk-ad"
L_CHUNK_ID = "fieldsync/v1/chunk-id"
_AD_PREFIX = L_CHUNK_AD.encode("ascii") + b"\x00"
_ID_PREFIX = L_CHUNK_ID.encode("ascii") + b"\x00"
_AD = struct.Struct(">16sIIIQ")  # attachment id, chunk size, index, count, size

Random = Callable[[int], bytes]


def chunk_ad(attachment_id: bytes, chunk_size: int, index: int, count: int, size: int) -> bytes:
    """`"fieldsync/v1/chunk-ad" || 0x00 || id || u32be(chunk_size) || u32be(index) ||
    u32be(count) || u64be(size)`: a chunk opens only at its place in its own file."""
    return _AD_PREFIX + _AD.pack(attachment_id, chunk_size, index, count, size)


_ID_HASH = hashlib.sha256(_ID_PREFIX)


def chunk_id(ct: bytes) -> str:
    """`SHA-256("fieldsync/v1/chunk-id" || 0x00 || ct)`: what the server checks and files."""
    h = _ID_HASH.copy()  # the label hashed once; no copy of a 1 MiB chunk to prepend it
    h.update(ct)
    return b64e(h.digest())


def _nonce(index: int) -> bytes:
    # The key is fresh for every attachment, so the index is a unique nonce.
    return index.to_bytes(12, "big")


# --- sealing ------------------------------------------------------------------------------


class Sealer:
    """Seal a file of a known size as it is read, one chunk at a time (a 200 MB video
    never has to be in memory): `feed` the bytes, then `finish`; each returns the
    chunks completed, as `(chunk_id, ciphertext)` in order."""

    def __init__(
        self, *, attachment_id: str, key: bytes, size: int, chunk_size: int = CHUNK_SIZE
    ) -> None:
        if len(key) != KEY_LEN:
            raise ValueError("an attachment key is 32 bytes")
        if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE or chunk_size & (chunk_size - 1):
            raise ValueError("chunk_size must be a power of two from 256 B to 1 MiB")
        if not 0 <= size <= MAX_SIZE:
            raise InvalidAttachment("too_large", f"an attachment is at most {MAX_SIZE} bytes")
        count = chunk_count(size, chunk_size)
        if count > MAX_CHUNKS:
            raise InvalidAttachment("too_large", f"at most {MAX_CHUNKS} chunks of {chunk_size}")
        self.attachment_id = attachment_id
        self._raw_id = b64d(attachment_id, length=ID_LEN, what="attachment id")
        self.key = key
        self.size = size
        self.chunk_size = chunk_size
        self.count = count
        self._aead = ChaCha20Poly1305(key)
        self._buf = bytearray(struct.pack(">I", size))
        self._fed = 0
        self._index = 0
        self._sha = hashlib.sha256()
        self._ids: list[str] = []
        self._done = False

    def _seal(self, plain: bytes | memoryview) -> tuple[str, bytes]:
        index = self._index
        ad = chunk_ad(self._raw_id, self.chunk_size, index, self.count, self.size)
        ct = self._aead.encrypt(_nonce(index), plain, ad)
        cid = chunk_id(ct)
        self._ids.append(cid)
        self._index += 1
        return cid, ct

    def _drain(self, data: bytes = b"") -> list[tuple[str, bytes]]:
        """Seal every whole chunk of the buffer followed by `data`; keep the rest. The
        last chunk waits for `finish` (it ends the padding). Whole chunks of `data` are
        sealed from a view of it, never copied into the buffer; the buffer may hold more
        than one chunk once `finish` has added the padding (up to 12 % of the file)."""
        out = []
        c = self.chunk_size
        view = memoryview(data)
        while self._index < self.count - 1:
            if self._buf:
                need = c - len(self._buf)
                if need > 0:
                    if len(view) < need:
                        break
                    self._buf += view[:need]
                    view = view[need:]
                out.append(self._seal(bytes(self._buf[:c])))
                del self._buf[:c]
            elif len(view) >= c:
                out.append(self._seal(view[:c]))
                view = view[c:]
            else:
                break
        self._buf += view
        return out

    def feed(self, data: bytes) -> list[tuple[str, bytes]]:
        if self._done:
            raise ValueError("the sealer is finished")
        self._fed += len(data)
        if self._fed > self.size:
            raise InvalidAttachment("size", "the file grew while it was sealed")
        self._sha.update(data)
        return self._drain(data)

    def finish(self) -> list[tuple[str, bytes]]:
        if self._fed != self.size:
            raise InvalidAttachment("size", "the file changed size while it was sealed")
        self._done = True
        self._buf += bytes(padded_length(self.size) - 4 - self.size)
        out = self._drain()
        out.append(self._seal(bytes(self._buf)))
        self._buf = bytearray()
        assert self._index == self.count
        return out

    def descriptor(
        self, *, name: str, media_type: str, captured_at: str, caption: str | None
    ) -> Descriptor:
        if not self._done:
            raise ValueError("finish() first")
        return Descriptor(
            id=self.attachment_id,
            name=check_name(name),
            media_type=check_media_type(media_type),
            size=self.size,
            sha256=self._sha.hexdigest(),
            captured_at=check_captured_at(captured_at),
            caption=check_caption(caption),
            chunk_size=self.chunk_size,
            chunks=tuple(self._ids),
            key=self.key,
        )


def _seal_file_from_parts(
    data: bytes,
    *,
    attachment_id: str,
    key: bytes,
    name: str,
    media_type: str,
    captured_at: str,
    caption: str | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> tuple[Descriptor, list[tuple[str, bytes]]]:
    """Deterministic core of `seal_file`: same inputs, same chunks and descriptor."""
    sealer = Sealer(attachment_id=attachment_id, key=key, size=len(data), chunk_size=chunk_size)
    chunks = sealer.feed(data) + sealer.finish()
    desc = sealer.descriptor(
        name=name, media_type=media_type, captured_at=captured_at, caption=caption
    )
    return desc, chunks


def new_sealer(size: int, random: Random, chunk_size: int = CHUNK_SIZE) -> Sealer:
    """A sealer with a fresh attachment id and key drawn from `random`."""
    return Sealer(
        attachment_id=b64e(random(ID_LEN)), key=random(KEY_LEN), size=size, chunk_size=chunk_size
    )


def seal_file(
    data: bytes,
    *,
    name: str,
    media_type: str,
    captured_at: str,
    caption: str | None = None,
    random: Random,
    chunk_size: int = CHUNK_SIZE,
) -> tuple[Descriptor, list[tuple[str, bytes]]]:
    """Seal a whole file in memory; returns its descriptor and its chunks in order."""
    return _seal_file_from_parts(
        data,
        attachment_id=b64e(random(ID_LEN)),
        key=random(KEY_LEN),
        name=name,
        media_type=media_type,
        captured_at=captured_at,
        caption=caption,
        chunk_size=chunk_size,
    )


# --- opening ------------------------------------------------------------------------------


def open_chunk(
    desc: Descriptor, index: int, data: bytes | None, elsewhere: Container[str] = ()
) -> bytes:
    """The plaintext of chunk `index`, from the bytes a server served for it (None: it
    served nothing). `elsewhere` holds chunk ids of other attachments the reader knows,
    so that a chunk taken from one of them is named as such.

    Codes: `chunk_missing` (nothing served), `chunk_order` (another chunk of this
    file), `chunk_foreign` (a chunk of another attachment), `chunk_length` (bytes of
    the wrong length for this place), `chunk_altered` (bytes that are no known
    chunk), `chunk_decrypt` (the listed chunk does not open at this place: the
    descriptor names a chunk sealed elsewhere).
    """
    if not 0 <= index < desc.count:
        raise IndexError("no such chunk")
    if data is None:
        raise InvalidAttachment("chunk_missing", f"chunk {index} was not served")
    cid = chunk_id(data)
    expected = chunk_length(desc.size, desc.chunk_size, index)
    if not hmac.compare_digest(cid, desc.chunks[index]):
        if cid in desc.chunks:
            other = desc.chunks.index(cid)
            raise InvalidAttachment(
                "chunk_order", f"chunk {other} of this file was served in place of chunk {index}"
            )
        if cid in elsewhere:
            raise InvalidAttachment(
                "chunk_foreign", f"a chunk of another attachment was served as chunk {index}"
            )
        if len(data) != expected:
            raise InvalidAttachment(
                "chunk_length", f"chunk {index} has {len(data)} bytes, not {expected}"
            )
        raise InvalidAttachment("chunk_altered", f"chunk {index} is not the one sealed")
    if len(data) != expected:
        raise InvalidAttachment(
            "chunk_length", f"chunk {index} has {len(data)} bytes, not {expected}"
        )
    ad = chunk_ad(b64d(desc.id, length=ID_LEN), desc.chunk_size, index, desc.count, desc.size)
    try:
        return ChaCha20Poly1305(desc.key).decrypt(_nonce(index), data, ad)
    except InvalidTag:
        raise InvalidAttachment(
            "chunk_decrypt", f"chunk {index} does not open at its place in this file"
        ) from None


class Reader:
    """Turn opened chunks, given in order, back into the file's bytes, and check the
    whole at the end: its length prefix, its zero padding, its SHA-256."""

    def __init__(self, desc: Descriptor) -> None:
        self.desc = desc
        self._next = 0
        self._head = bytearray()  # the first bytes, until the 4-byte prefix is read
        self._left = -1  # file bytes still to come (-1: prefix not read yet)
        self._sha = hashlib.sha256()

    def piece(self, index: int, plain: bytes) -> bytes:
        """The file bytes in opened chunk `index` (chunks must come 0, 1, 2, …)."""
        if index != self._next:
            raise ValueError("chunks must be read in order")
        self._next += 1
        if self._left < 0:
            self._head += plain
            if len(self._head) < 4:
                return b""
            (declared,) = struct.unpack(">I", self._head[:4])
            if declared != self.desc.size:
                raise InvalidAttachment(
                    "size", f"the file holds {declared} bytes, not the {self.desc.size} sealed"
                )
            self._left = declared
            plain = bytes(self._head[4:])
            self._head = bytearray()
        data, pad = plain[: self._left], plain[self._left :]
        self._left -= len(data)
        if pad.strip(b"\x00"):
            raise InvalidAttachment("bad_padding", "the padding after the file is not zero")
        self._sha.update(data)
        return data

    def finish(self) -> str:
        """Check the whole; returns the verified SHA-256 (hex)."""
        if self._next != self.desc.count or self._left != 0:
            raise InvalidAttachment("chunk_missing", "the file is incomplete")
        digest = self._sha.hexdigest()
        if not hmac.compare_digest(digest, self.desc.sha256):
            raise InvalidAttachment(
                "sha256", "the file's SHA-256 is not the one taken when it was captured"
            )
        return digest


def assemble(
    desc: Descriptor, served: Sequence[bytes | None], elsewhere: Container[str] = ()
) -> bytes:
    """The original file from the bytes served for each chunk id of the descriptor, in
    its order (None where nothing was served), every chunk and the whole checked."""
    if len(served) != desc.count:
        raise InvalidAttachment(
            "chunk_missing", f"{len(served)} chunks served for a file of {desc.count}"
        )
    reader = Reader(desc)
    parts = [reader.piece(i, open_chunk(desc, i, data, elsewhere)) for i, data in enumerate(served)]
    reader.finish()
    return b"".join(parts)


def chunk_ids(descs: Iterable[Descriptor]) -> set[str]:
    return {c for d in descs for c in d.chunks}


__all__ = [
    "CHUNK_ID_RE",
    "CHUNK_SIZE",
    "DESCRIPTOR_FIELDS",
    "FILE_FIELD_PREFIX",
    "FILE_FIELD_RE",
    "ID_LEN",
    "KEY_LEN",
    "L_CHUNK_AD",
    "L_CHUNK_ID",
    "L_CHUNK_RELEASE",
    "MAX_CAPTION",
    "MAX_CHUNKS",
    "MAX_CHUNK_CT",
    "MAX_CHUNK_SIZE",
    "MAX_MEDIA_TYPE",
    "MAX_NAME",
    "MAX_SIZE",
    "MIN_CHUNK_SIZE",
    "TAG_LEN",
    "Descriptor",
    "Random",
    "Reader",
    "Sealer",
    "assemble",
    "attachment_id_of",
    "check_caption",
    "check_captured_at",
    "check_media_type",
    "check_name",
    "chunk_ad",
    "chunk_count",
    "chunk_id",
    "chunk_ids",
    "chunk_length",
    "file_field",
    "is_file_field",
    "new_sealer",
    "open_chunk",
    "padded_length",
    "parse_descriptor",
    "seal_file",
    "sign_release",
    "valid_chunk_id",
    "verify_release",
]
