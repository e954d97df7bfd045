"""Write tests/vectors/attachment.json: the vectors of attachments (docs/PROTOCOL.md,
"Attachments").

Run by hand after a deliberate change to the attachment format, then commit:

    .venv/bin/python tests/vectors/generate_attachment.py

It borrows generate.py's fixed inputs (SHAKE-256 of a label) and its reuse of the
committed HPKE ciphertexts, so a rerun writes the same bytes. Small files use small
chunks (256 B, the least a device may use) so that every ciphertext fits in the
file; one file uses the 1 MiB chunks devices seal with, given by recipe and chunk ids.
"""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any

from generate import (
    EPOCHS,
    HLC0,
    TAG_KEY,
    VOLUNTEER,
    _opened_json,
    _seal,
    b64e,
    code_of,
    pub,
    seed,
    write,
)

from protocol import attachment, crypto, padding
from protocol.attachment import Descriptor, _seal_file_from_parts
from protocol.model import ZERO_HASH, CellInput
from protocol.padding import padme

CAPTURED = "2026-12-04T18:30:05Z"
SMALL = 256


def stream(label: str, n: int) -> bytes:
    """A file's bytes: the first `n` bytes of SHAKE-256 of a label."""
    return hashlib.shake_256(b"fieldsync test vectors/" + label.encode()).digest(n)


def _file(
    label: str,
    data: bytes,
    *,
    chunk_size: int = SMALL,
    name: str = "photo.jpg",
    media_type: str = "image/jpeg",
    caption: str | None = None,
) -> tuple[Descriptor, list[tuple[str, bytes]]]:
    return _seal_file_from_parts(
        data,
        attachment_id=b64e(seed(f"attachment/{label}/id", 16)),
        key=seed(f"attachment/{label}/key"),
        name=name,
        media_type=media_type,
        captured_at=CAPTURED,
        caption=caption,
        chunk_size=chunk_size,
    )


def _inputs(desc: Descriptor, label: str, data: bytes, *, inline: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "attachment_id": desc.id,
        "key_hex": desc.key.hex(),
        "chunk_size": desc.chunk_size,
        "name": desc.name,
        "media_type": desc.media_type,
        "captured_at": desc.captured_at,
        "caption": desc.caption,
    }
    if inline:
        out["data_hex"] = data.hex()
    else:
        out["data_shake256"] = {"label": f"fieldsync test vectors/{label}", "length": len(data)}
    return out


def _chunks_json(chunks: list[tuple[str, bytes]], *, inline: bool = True) -> list[dict[str, Any]]:
    if inline:
        return [{"id": cid, "ct_hex": ct.hex()} for cid, ct in chunks]
    return [{"id": cid, "length": len(ct)} for cid, ct in chunks]


def _seal_stream(desc: Descriptor, plain: bytes) -> tuple[Descriptor, list[tuple[str, bytes]]]:
    """Chunks of a hand-made padded stream under the descriptor's id, key and size: what a
    hostile device could seal (a lying length prefix, padding that is not zero)."""
    raw_id = bytes.fromhex(attachment.file_field(desc.id)[len(attachment.FILE_FIELD_PREFIX) :])
    count = desc.count
    chunks = []
    for i in range(count):
        piece = plain[i * desc.chunk_size : (i + 1) * desc.chunk_size]
        ad = attachment.chunk_ad(raw_id, desc.chunk_size, i, count, desc.size)
        ct = attachment.ChaCha20Poly1305(desc.key).encrypt(i.to_bytes(12, "big"), piece, ad)
        chunks.append((attachment.chunk_id(ct), ct))
    return _replace(desc, chunks=tuple(c for c, _ in chunks)), chunks


def _replace(desc: Descriptor, **changes: Any) -> Descriptor:
    import dataclasses

    return dataclasses.replace(desc, **changes)


def _code(fn: Any) -> str:
    try:
        fn()
    except attachment.InvalidAttachment as exc:
        return exc.code
    return "success"


def derivations() -> dict[str, Any]:
    att_id = b64e(seed("attachment/derivation/id", 16))
    raw = bytes.fromhex(attachment.file_field(att_id)[6:])
    ct = seed("attachment/derivation/ct", 48)
    return {
        "file_field": [
            {"attachment_id": att_id, "field": attachment.file_field(att_id)},
            {"attachment_id": "A" * 21 + "A", "field": attachment.file_field("A" * 22)},
        ],
        "chunk_ad": [
            {
                "attachment_id": att_id,
                "chunk_size": cs,
                "index": i,
                "count": n,
                "size": size,
                "ad_hex": attachment.chunk_ad(raw, cs, i, n, size).hex(),
            }
            for cs, i, n, size in [
                (1 << 20, 0, 1, 0),
                (1 << 20, 199, 212, 209_715_200),
                (256, 3, 4, 1000),
            ]
        ],
        "chunk_id": [{"ct_hex": ct.hex(), "chunk_id": attachment.chunk_id(ct)}],
        "layout": [
            {
                "size": size,
                "chunk_size": cs,
                "padded_length": attachment.padded_length(size),
                "count": attachment.chunk_count(size, cs),
                "last_chunk_ct_length": attachment.chunk_length(
                    size, cs, attachment.chunk_count(size, cs) - 1
                ),
            }
            for size, cs in [
                (0, 256),
                (28, 256),
                (252, 256),
                (253, 256),
                (1000, 256),
                (9300, 256),
                (5_000_000, 1 << 20),
                (64 << 20, 1 << 20),
                (209_715_200, 1 << 20),
                (attachment.MAX_SIZE, 1 << 20),
            ]
        ],
    }


def successes() -> tuple[list[dict[str, Any]], dict[str, tuple[Descriptor, list[Any], bytes]]]:
    files = {
        "empty": (b"", {"name": "empty.txt", "media_type": "text/plain"}),
        "one-chunk": (stream("attachment/one-chunk", 100), {"caption": "The court's notice"}),
        "four-chunks": (
            stream("attachment/four-chunks", 1000),
            {"name": "Суд — решение.pdf", "media_type": "application/pdf"},
        ),
        "padded-to-the-boundary": (stream("attachment/boundary", 508), {}),
        "padding-spans-chunks": (stream("attachment/padding-spans", 9300), {"name": "long.txt"}),
        "other": (stream("attachment/other", 700), {"name": "other.jpg"}),
    }
    out = []
    made: dict[str, tuple[Descriptor, list[Any], bytes]] = {}
    for label, (data, opts) in files.items():
        desc, chunks = _file(label, data, **opts)
        made[label] = (desc, chunks, data)
        out.append(
            {
                "name": label,
                "inputs": _inputs(desc, label, data),
                "descriptor": desc.to_value(),
                "descriptor_jcs_hex": crypto.canonical_json(desc.to_value()).hex(),
                "padded_stream_hex": padding.pad(data).hex(),
                "chunks": _chunks_json(chunks),
                "sha256": hashlib.sha256(data).hexdigest(),
                "expect": "success",
            }
        )
    big = stream("attachment/video", 5_000_000)
    desc, chunks = _file(
        "video", big, chunk_size=1 << 20, name="arrest.mp4", media_type="video/mp4"
    )
    made["video"] = (desc, chunks, big)
    out.append(
        {
            "name": "a 5 MB video in the 1 MiB chunks devices seal with (data by recipe)",
            "inputs": _inputs(desc, "attachment/video", big, inline=False),
            "descriptor": desc.to_value(),
            "chunks": _chunks_json(chunks, inline=False),
            "sha256": hashlib.sha256(big).hexdigest(),
            "expect": "success",
        }
    )
    assert padme(4 + 5_000_000) == attachment.padded_length(5_000_000)
    return out, made


def failures(made: dict[str, tuple[Descriptor, list[Any], bytes]]) -> list[dict[str, Any]]:
    desc, chunks, data = made["four-chunks"]
    other, other_chunks, _ = made["other"]
    cts = [ct for _, ct in chunks]
    out: list[dict[str, Any]] = []

    def case(
        name: str,
        served: list[bytes | None],
        *,
        d: Descriptor = desc,
        elsewhere: list[str] | None = None,
        note: str,
    ) -> None:
        code = _code(lambda: attachment.assemble(d, served, elsewhere or ()))
        assert code != "success", name
        out.append(
            {
                "name": name,
                "note": note,
                "descriptor": d.to_value(),
                "served_hex": [None if s is None else s.hex() for s in served],
                "elsewhere": elsewhere or [],
                "expect": code,
            }
        )

    flipped = bytearray(cts[1])
    flipped[10] ^= 1
    case(
        "altered",
        [cts[0], bytes(flipped), cts[2], cts[3]],
        note="one bit of chunk 1 flipped on the server",
    )
    case("dropped", [cts[0], None, cts[2], cts[3]], note="the server has no chunk 1")
    case(
        "reordered",
        [cts[0], cts[2], cts[1], cts[3]],
        note="the server serves chunk 2 for chunk 1",
    )
    case(
        "from_another_attachment",
        [cts[0], other_chunks[1][1], cts[2], cts[3]],
        elsewhere=list(other.chunks),
        note="the server serves a chunk of another attachment the reader knows",
    )
    case(
        "truncated_chunk",
        [cts[0], cts[1], cts[2], cts[3][:-5]],
        note="the last chunk cut short on the server",
    )
    case(
        "truncated_file",
        [cts[0], cts[1], cts[2], None],
        note="the last chunk missing",
    )
    # What a hostile device could seal: the descriptor is signed, but not honest.
    swapped = _replace(
        desc, chunks=(desc.chunks[0], desc.chunks[2], desc.chunks[1], desc.chunks[3])
    )
    case(
        "descriptor_reordered",
        [cts[0], cts[2], cts[1], cts[3]],
        d=swapped,
        note="a descriptor listing the chunks out of order: each opens only at its own place",
    )
    foreign = _replace(
        desc, chunks=(desc.chunks[0], other.chunks[1], desc.chunks[2], desc.chunks[3])
    )
    case(
        "descriptor_names_another_attachments_chunk",
        [cts[0], other_chunks[1][1], cts[2], cts[3]],
        d=foreign,
        note="a descriptor listing a chunk sealed for another attachment",
    )
    bumped = _replace(desc, size=desc.size + 1)
    case(
        "wrong_size",
        cts,
        d=bumped,
        note="a descriptor whose size is one byte more (same padded length and count):"
        " the size is in every chunk's AD",
    )
    lying = bytearray(padding.pad(data))
    lying[:4] = struct.pack(">I", desc.size - 1)
    lie_desc, lie_chunks = _seal_stream(desc, bytes(lying))
    case(
        "length_prefix_differs_from_size",
        [ct for _, ct in lie_chunks],
        d=lie_desc,
        note="chunks sealed honestly for the descriptor's size around a length prefix one less",
    )
    dirty = bytearray(padding.pad(data))
    dirty[-1] = 1
    dirty_desc, dirty_chunks = _seal_stream(desc, bytes(dirty))
    case(
        "padding_not_zero",
        [ct for _, ct in dirty_chunks],
        d=dirty_desc,
        note="a non-zero byte in the padding after the file",
    )
    case(
        "sha256_differs",
        cts,
        d=_replace(desc, sha256="00" * 32),
        note="the bytes are not the ones hashed at capture",
    )
    return out


def descriptor_failures(
    made: dict[str, tuple[Descriptor, list[Any], bytes]],
) -> list[dict[str, Any]]:
    base = made["four-chunks"][0].to_value()
    cases: list[tuple[str, dict[str, Any] | list[Any]]] = []

    def mutate(label: str, **changes: Any) -> None:
        value = dict(base)
        for k, v in changes.items():
            if v is _DROP:
                del value[k]
            else:
                value[k] = v
        cases.append((label, value))

    mutate("missing field", caption=_DROP)
    mutate("unknown field", extra=1)
    mutate("version 2", v=2)
    mutate("key of 31 bytes", key=b64e(bytes(31)))
    mutate("chunk size not a power of two", chunk_size=300)
    mutate("chunk size below 256", chunk_size=128)
    mutate("chunk size above 1 MiB", chunk_size=1 << 21)
    mutate("count does not match the size", chunks=base["chunks"][:3])
    mutate("a chunk listed twice", chunks=[*base["chunks"][:3], base["chunks"][0]])
    mutate("name is a path", name="../../.ssh/authorized_keys")
    mutate("name with a control character", name="a\nb.jpg")
    mutate("empty name", name="")
    mutate("media type in capitals", media_type="Image/JPEG")
    mutate("sha256 in capitals", sha256=base["sha256"].upper())
    mutate("captured_at with an offset", captured_at="2026-12-04T18:30:05+05:00")
    mutate("caption too long", caption="x" * (attachment.MAX_CAPTION + 1))
    mutate("size is text", size="1000")
    mutate("version true", v=True)
    cases.append(("not an object", [base]))
    out = []
    for name, value in cases:
        code = _code(lambda v=value: attachment.parse_descriptor(v))  # type: ignore[misc]
        assert code == "bad_descriptor", name
        out.append({"name": name, "descriptor": value, "expect": code})
    return out


_DROP = object()


def cell_values(made: dict[str, tuple[Descriptor, list[Any], bytes]]) -> list[dict[str, Any]]:
    desc = made["one-chunk"][0]
    field = attachment.file_field(desc.id)
    out: list[dict[str, Any]] = []
    for rtype, fname, value in [("picket", field, desc.to_value()), ("picket", field, None)]:
        encoded = crypto.encode_value(rtype, fname, value)
        out.append(
            {
                "record_type": rtype,
                "field": fname,
                "value": value,
                "plaintext_hex": encoded.hex(),
                "padded_hex": padding.pad(encoded).hex(),
                "expect": "success",
            }
        )
    for rtype, fname, value_json in [
        ("picket", "attendance", '{"n":1}'),
        ("picket", "attendance", "[1]"),
        ("picket", field, "[1]"),
        ("picket", "_file_" + "0" * 31, "{}"),
        ("picket", "_file_" + "A" * 32, "{}"),
        ("picket", field, '{"a":{"b":{"c":1}}}'),
    ]:
        out.append(
            {
                "record_type": rtype,
                "field": fname,
                "value_json": value_json,
                "expect": code_of(
                    lambda t=rtype, f=fname, v=value_json: crypto.encode_value(t, f, json.loads(v))  # type: ignore[misc]
                ),
            }
        )
    return out


def bundle(made: dict[str, tuple[Descriptor, list[Any], bytes]]) -> dict[str, Any]:
    desc = made["four-chunks"][0]
    rid = b64e(seed("attachment/record", 16))
    cells = [
        CellInput(rid, "picket", "date", "2026-12-04", HLC0),
        CellInput(rid, "picket", "place", "Invented Gate", HLC0),
        CellInput(rid, "picket", attachment.file_field(desc.id), desc.to_value(), HLC0),
    ]
    b, inputs = _seal("attachment/bundle", 1, ZERO_HASH, cells)
    return {
        "note": "a new picket with one attachment: open the bundle, parse the descriptor of"
        " its `_file_` cell, fetch its chunks (those of `four-chunks`), assemble",
        "inputs": inputs,
        "device_pub": b64e(pub(VOLUNTEER)),
        "epoch_keys": {"1": EPOCHS[1].private_bytes.hex()},
        "tag_key_hex": TAG_KEY.hex(),
        "bundle": b.to_wire(),
        "opened": _opened_json(b),
        "attachment": "four-chunks",
    }


def releases(made: dict[str, tuple[Descriptor, list[Any], bytes]]) -> dict[str, Any]:
    from generate import WORKSPACE, labelled, sign_key

    desc = made["four-chunks"][0]
    key = sign_key("volunteer")
    release = attachment.sign_release(
        workspace=WORKSPACE,
        device_key=key,
        change=42,
        chunks=list(desc.chunks),
        purge=False,
        at=1_795_600_000,
    )
    body = {k: v for k, v in release.items() if k != "sig"}
    other = sign_key("attachment/other-device")
    failures = []
    for name, mutated, signer in [
        ("a chunk taken off the list", {**release, "chunks": list(desc.chunks[1:])}, key),
        ("purge turned on", {**release, "purge": True}, key),
        ("verified with another device's key", release, other),
        ("an extra field", {**release, "note": "x"}, key),
    ]:
        code = _code(lambda r=mutated, k=signer: attachment.verify_release(r, pub(k)))  # type: ignore[misc]
        assert code == "bad_release", name
        failures.append(
            {"name": name, "release": mutated, "device_pub": b64e(pub(signer)), "expect": code}
        )
    return {
        "note": "sig = Ed25519(device key, labelled('fieldsync/v1/chunk-release', release"
        " without sig))",
        "device_seed_hex": seed("volunteer").hex(),
        "device_pub": b64e(pub(key)),
        "signed_hex": labelled(attachment.L_CHUNK_RELEASE, body).hex(),
        "release": release,
        "failures": failures,
    }


def attachment_vectors() -> dict[str, Any]:
    success, made = successes()
    return {
        "description": (
            "Attachments (docs/PROTOCOL.md, Attachments). stream = pad(file) (padding.json's"
            " pad: u32be(size) || file || zeros to max(32, padme(4 + size))), cut into"
            " chunk_size pieces; chunk i = ChaCha20-Poly1305(key, nonce u96be(i), piece,"
            " ad = 'fieldsync/v1/chunk-ad' || 0x00 || attachment id (16) || u32be(chunk_size)"
            " || u32be(i) || u32be(count) || u64be(size)); chunk id = base64url(SHA-256("
            "'fieldsync/v1/chunk-id' || 0x00 || ct)). failures: the bytes served for each"
            " chunk id of the descriptor, in order (null: none), `elsewhere` the chunk ids of"
            " other attachments the reader knows; `expect` the code."
        ),
        "derivations": derivations(),
        "success": success,
        "failures": failures(made),
        "descriptor_failures": descriptor_failures(made),
        "cell_values": cell_values(made),
        "bundle": bundle(made),
        "release": releases(made),
    }


if __name__ == "__main__":
    write("attachment.json", attachment_vectors())
