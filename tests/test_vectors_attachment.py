"""Attachments: the committed vectors (tests/vectors/attachment.json) and generated files.

The vectors are what a phone app in another language runs; the properties check the
same recipe on files hypothesis makes: any size, any chunk size, any way of feeding
the sealer, and any single change to what a server serves.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import attachment, crypto, keys, padding
from protocol.attachment import Descriptor, Sealer, assemble, open_chunk, parse_descriptor
from protocol.encoding import b64d, b64e, labelled
from protocol.errors import InvalidAttachment, ProtocolError
from protocol.model import Bundle, CellInput

V = json.loads((Path(__file__).parent / "vectors" / "attachment.json").read_text("utf-8"))
SUCCESS = {v["name"]: v for v in V["success"]}


def named(vectors: list[dict[str, Any]], key: str = "name") -> Any:
    return pytest.mark.parametrize(
        "v", vectors, ids=[str(v.get(key, i)) for i, v in enumerate(vectors)]
    )


def code_of(fn: Any, *args: Any, **kw: Any) -> str:
    try:
        fn(*args, **kw)
    except ProtocolError as exc:
        return exc.code
    return "success"


def _data(inputs: dict[str, Any]) -> bytes:
    if "data_hex" in inputs:
        return bytes.fromhex(inputs["data_hex"])
    recipe = inputs["data_shake256"]
    return hashlib.shake_256(recipe["label"].encode()).digest(recipe["length"])


def _seal(inputs: dict[str, Any]) -> tuple[Descriptor, list[tuple[str, bytes]]]:
    return attachment._seal_file_from_parts(
        _data(inputs),
        attachment_id=inputs["attachment_id"],
        key=bytes.fromhex(inputs["key_hex"]),
        name=inputs["name"],
        media_type=inputs["media_type"],
        captured_at=inputs["captured_at"],
        caption=inputs["caption"],
        chunk_size=inputs["chunk_size"],
    )


# --- derivations --------------------------------------------------------------------------


def test_file_fields() -> None:
    for v in V["derivations"]["file_field"]:
        assert attachment.file_field(v["attachment_id"]) == v["field"]
        assert attachment.attachment_id_of(v["field"]) == v["attachment_id"]
    assert attachment.attachment_id_of("_deleted") is None
    assert attachment.attachment_id_of("_file_" + "A" * 32) is None


def test_chunk_ad_id_and_layout() -> None:
    for v in V["derivations"]["chunk_ad"]:
        raw = b64d(v["attachment_id"], length=16)
        ad = attachment.chunk_ad(raw, v["chunk_size"], v["index"], v["count"], v["size"])
        assert ad.hex() == v["ad_hex"]
    for v in V["derivations"]["chunk_id"]:
        assert attachment.chunk_id(bytes.fromhex(v["ct_hex"])) == v["chunk_id"]
    for v in V["derivations"]["layout"]:
        size, cs = v["size"], v["chunk_size"]
        count = attachment.chunk_count(size, cs)
        assert {
            "size": size,
            "chunk_size": cs,
            "padded_length": attachment.padded_length(size),
            "count": count,
            "last_chunk_ct_length": attachment.chunk_length(size, cs, count - 1),
        } == v


# --- sealing and opening ------------------------------------------------------------------


@named(V["success"])
def test_success(v: dict[str, Any]) -> None:
    desc, chunks = _seal(v["inputs"])
    assert desc.to_value() == v["descriptor"]
    assert parse_descriptor(v["descriptor"]) == desc
    if "ct_hex" in v["chunks"][0]:
        assert [{"id": c, "ct_hex": ct.hex()} for c, ct in chunks] == v["chunks"]
        assert crypto.canonical_json(desc.to_value()).hex() == v["descriptor_jcs_hex"]
        assert padding.pad(_data(v["inputs"])).hex() == v["padded_stream_hex"]
    else:
        assert [{"id": c, "length": len(ct)} for c, ct in chunks] == v["chunks"]
    data = assemble(desc, [ct for _, ct in chunks])
    assert data == _data(v["inputs"])
    assert hashlib.sha256(data).hexdigest() == v["sha256"] == desc.sha256


@named(V["failures"])
def test_failure(v: dict[str, Any]) -> None:
    # Built by hand: a descriptor a hostile device signed need not pass parse_descriptor's
    # consistency checks the way an honest one does, and the reader must still refuse it.
    d = v["descriptor"]
    desc = Descriptor(
        id=d["id"],
        name=d["name"],
        media_type=d["media_type"],
        size=d["size"],
        sha256=d["sha256"],
        captured_at=d["captured_at"],
        caption=d["caption"],
        chunk_size=d["chunk_size"],
        chunks=tuple(d["chunks"]),
        key=b64d(d["key"]),
    )
    served = [None if s is None else bytes.fromhex(s) for s in v["served_hex"]]
    assert code_of(assemble, desc, served, set(v["elsewhere"])) == v["expect"]


def test_failures_name_every_code() -> None:
    codes = {v["expect"] for v in V["failures"]}
    assert codes == {
        "chunk_altered",
        "chunk_missing",
        "chunk_order",
        "chunk_foreign",
        "chunk_length",
        "chunk_decrypt",
        "size",
        "bad_padding",
        "sha256",
    }


@named(V["descriptor_failures"])
def test_descriptor_failure(v: dict[str, Any]) -> None:
    assert code_of(parse_descriptor, v["descriptor"]) == v["expect"] == "bad_descriptor"


@named(V["cell_values"], "value_json")
def test_cell_value(v: dict[str, Any]) -> None:
    value = v["value"] if "value" in v else json.loads(v["value_json"])
    assert code_of(crypto.encode_value, v["record_type"], v["field"], value) == v["expect"]
    if v["expect"] == "success":
        plain = crypto.encode_value(v["record_type"], v["field"], value)
        assert plain.hex() == v["plaintext_hex"]
        assert padding.pad(plain).hex() == v["padded_hex"]


def test_a_bundle_carries_an_attachment_from_capture_to_file() -> None:
    v = V["bundle"]
    i = v["inputs"]
    sealed = crypto._seal_bundle_from_parts(
        workspace=i["workspace"],
        bundle_id=i["bundle_id"],
        device_key=keys.signing_key(bytes.fromhex(i["device_seed_hex"])),
        seq=i["seq"],
        prev=i["prev"],
        epoch=i["epoch"],
        data_key=bytes.fromhex(i["data_key_hex"]),
        sealed_key=i["sealed_key"],
        tag_key=bytes.fromhex(i["tag_key_hex"]),
        cells=[
            CellInput(c["record_id"], c["record_type"], c["field"], c["value"], c["hlc"])
            for c in i["cells"]
        ],
    )
    assert sealed.to_wire() == v["bundle"]
    epoch_keys = {int(n): bytes.fromhex(h) for n, h in v["epoch_keys"].items()}
    opened = crypto.open_bundle(
        Bundle.from_wire(v["bundle"]),
        b64d(v["device_pub"]),
        epoch_keys,
        bytes.fromhex(i["tag_key_hex"]),
    )
    assert [c.value for c in opened] == [c["value"] for c in v["opened"]]
    files = [c for c in opened if attachment.is_file_field(c.field)]
    assert len(files) == 1
    desc = parse_descriptor(files[0].value)
    assert attachment.file_field(desc.id) == files[0].field
    source = SUCCESS[v["attachment"]]
    served = [bytes.fromhex(c["ct_hex"]) for c in source["chunks"]]
    assert assemble(desc, served) == _data(source["inputs"])


def test_an_object_value_opens_only_in_a_file_field() -> None:
    """A hostile device that seals an object into an ordinary field: the keyholder's
    open refuses the cell (`cell_decrypt`), as it refuses any non-canonical value."""
    desc = SUCCESS["one-chunk"]["descriptor"]
    key = keys.signing_key(bytes(range(32)))
    rid = b64e(bytes(16))
    epoch = keys.HpkeKeyPair.from_seed(bytes(96))
    tag_key = bytes(32)
    good = crypto.seal_bundle(
        workspace=b64e(bytes(16)),
        device_key=key,
        seq=1,
        prev="A" * 43,
        epoch=1,
        epoch_public=epoch.public_bytes,
        tag_key=tag_key,
        cells=[CellInput(rid, "picket", attachment.file_field(desc["id"]), desc, 1)],
        random=lambda n: bytes(n),
    )
    [cell] = crypto.open_bundle(good, keys.public_bytes(key), {1: epoch.private_bytes}, tag_key)
    assert cell.value == desc
    # Sealing the same object into `notes` is refused before anything is sealed.
    with pytest.raises(ProtocolError) as exc:
        crypto.encode_value("picket", "notes", desc)
    assert exc.value.code == "bad_type"
    # A cell value over 64 KiB is refused at sealing, not by the server later.
    big = {**desc, "caption": "x" * 70_000}
    with pytest.raises(ProtocolError) as exc:
        crypto.seal_bundle(
            workspace=b64e(bytes(16)),
            device_key=key,
            seq=1,
            prev="A" * 43,
            epoch=1,
            epoch_public=epoch.public_bytes,
            tag_key=tag_key,
            cells=[CellInput(rid, "picket", attachment.file_field(desc["id"]), big, 1)],
            random=lambda n: bytes(n),
        )
    assert exc.value.code == "too_large"


def test_the_largest_descriptor_fits_in_a_cell() -> None:
    """1024 chunk ids, the longest name and caption, every character escaped: the cell's
    ciphertext stays under its 64 KiB bound (PROTOCOL.md: the largest attachment)."""
    value = {
        "v": 1,
        "id": b64e(bytes(16)),
        "name": "\x7f" * attachment.MAX_NAME,
        "media_type": "a" * 63 + "/" + "b" * 63,
        "size": attachment.MAX_SIZE,
        "sha256": "0" * 64,
        "captured_at": "2026-12-04T18:30:05Z",
        "caption": "\u2028" * attachment.MAX_CAPTION,
        "chunk_size": attachment.MAX_CHUNK_SIZE,
        "chunks": [b64e(i.to_bytes(32, "big")) for i in range(attachment.MAX_CHUNKS)],
        "key": b64e(bytes(32)),
    }
    parse_descriptor(value)
    plain = crypto.encode_value("detention", "_file_" + "f" * 32, value)
    assert len(padding.pad(plain)) + 16 <= 65536


def test_a_release_is_signed_by_its_device() -> None:
    v = V["release"]
    key = keys.signing_key(bytes.fromhex(v["device_seed_hex"]))
    r = v["release"]
    again = attachment.sign_release(
        workspace=r["workspace"],
        device_key=key,
        change=r["change"],
        chunks=r["chunks"],
        purge=r["purge"],
        at=r["at"],
    )
    assert again == r
    body = {k: x for k, x in r.items() if k != "sig"}
    assert labelled(attachment.L_CHUNK_RELEASE, body).hex() == v["signed_hex"]
    attachment.verify_release(r, b64d(v["device_pub"]))
    for f in v["failures"]:
        assert (
            code_of(attachment.verify_release, f["release"], b64d(f["device_pub"])) == f["expect"]
        )


# --- properties ---------------------------------------------------------------------------

CHUNK_SIZES = st.sampled_from([256, 512, 1024, 4096])


@settings(max_examples=60, deadline=None)
@given(
    size=st.one_of(st.integers(0, 6000), st.integers(6000, 120_000)),
    seed=st.integers(0, 2**16),
    chunk_size=CHUNK_SIZES,
    cuts=st.lists(st.integers(0, 120_000), max_size=6),
)
def test_streaming_equals_one_shot_and_opens(
    size: int, seed: int, chunk_size: int, cuts: list[int]
) -> None:
    # Up to 120 KB: Padmé's padding then reaches 4 KiB, several chunks of 256 B to 4 KiB
    # (a 64 MB video's padding is 2 MiB, two of its 1 MiB chunks).
    data = hashlib.shake_256(seed.to_bytes(4, "big")).digest(size)
    key, att = bytes(range(32)), b64e(bytes(range(16)))
    whole, chunks = attachment._seal_file_from_parts(
        data,
        attachment_id=att,
        key=key,
        name="f.bin",
        media_type="application/octet-stream",
        captured_at="2026-12-04T18:30:05Z",
        chunk_size=chunk_size,
    )
    sealer = Sealer(attachment_id=att, key=key, size=len(data), chunk_size=chunk_size)
    fed: list[tuple[str, bytes]] = []
    at = 0
    for cut in sorted({min(c, len(data)) for c in cuts}):
        fed += sealer.feed(data[at:cut])
        at = cut
    fed += sealer.feed(data[at:]) + sealer.finish()
    assert fed == chunks
    assert len(chunks) == attachment.chunk_count(len(data), chunk_size)
    assert [len(ct) for _, ct in chunks] == [
        attachment.chunk_length(len(data), chunk_size, i) for i in range(len(chunks))
    ]
    assert assemble(whole, [ct for _, ct in chunks]) == data


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(min_size=1, max_size=3000),
    where=st.integers(0, 10**6),
    bit=st.integers(0, 7),
)
def test_any_flipped_bit_served_is_refused(data: bytes, where: int, bit: int) -> None:
    desc, chunks = attachment._seal_file_from_parts(
        data,
        attachment_id=b64e(bytes(16)),
        key=bytes(32),
        name="f.bin",
        media_type="application/octet-stream",
        captured_at="2026-12-04T18:30:05Z",
        chunk_size=256,
    )
    served = [bytearray(ct) for _, ct in chunks]
    total = sum(len(s) for s in served)
    pos = where % total
    for s in served:
        if pos < len(s):
            s[pos] ^= 1 << bit
            break
        pos -= len(s)
    with pytest.raises(InvalidAttachment) as exc:
        assemble(desc, [bytes(s) for s in served])
    assert exc.value.code == "chunk_altered"


@settings(max_examples=40, deadline=None)
@given(data=st.binary(min_size=600, max_size=3000), seed=st.integers(0, 2**32))
def test_any_other_order_served_is_refused(data: bytes, seed: int) -> None:
    import random

    desc, chunks = attachment._seal_file_from_parts(
        data,
        attachment_id=b64e(bytes(16)),
        key=bytes(32),
        name="f.bin",
        media_type="application/octet-stream",
        captured_at="2026-12-04T18:30:05Z",
        chunk_size=256,
    )
    order = list(range(len(chunks)))
    random.Random(seed).shuffle(order)
    if order == sorted(order):
        order.reverse()
    with pytest.raises(InvalidAttachment) as exc:
        assemble(desc, [chunks[i][1] for i in order])
    assert exc.value.code == "chunk_order"


def test_a_chunk_opens_only_with_its_own_key() -> None:
    data = b"x" * 700
    desc, chunks = attachment._seal_file_from_parts(
        data,
        attachment_id=b64e(bytes(16)),
        key=bytes(32),
        name="f.bin",
        media_type="application/octet-stream",
        captured_at="2026-12-04T18:30:05Z",
        chunk_size=256,
    )
    other = Descriptor(**{**desc.__dict__, "key": bytes([1]) * 32})
    assert code_of(open_chunk, other, 0, chunks[0][1]) == "chunk_decrypt"
    assert open_chunk(desc, 0, chunks[0][1])[:4] == (700).to_bytes(4, "big")


def test_a_file_that_changes_while_sealed_is_refused() -> None:
    sealer = Sealer(attachment_id=b64e(bytes(16)), key=bytes(32), size=10, chunk_size=256)
    sealer.feed(b"12345")
    assert code_of(sealer.finish) == "size"
    grown = Sealer(attachment_id=b64e(bytes(16)), key=bytes(32), size=3, chunk_size=256)
    assert code_of(grown.feed, b"1234") == "size"
    assert (
        code_of(Sealer, attachment_id=b64e(bytes(16)), key=bytes(32), size=attachment.MAX_SIZE + 1)
        == "too_large"
    )
