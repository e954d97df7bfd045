"""Write the known-answer and failure vectors in tests/vectors/*.json.

Run by hand after a deliberate change to the wire format, then commit the output:

    .venv/bin/python tests/vectors/generate.py

The tests load the JSON files; they never regenerate them. Every key and every
random input is fixed (SHAKE-256 of a label), and Ed25519, HMAC and the AEAD are
deterministic, so most bytes come out the same on every run. HPKE encapsulation
is randomized inside `cryptography`: each HPKE ciphertext is therefore an input
of its vector, produced once. To keep a rerun byte-identical, a ciphertext already
in the committed files that still opens to the same plaintext under the same
recipient and info is reused instead of sealing afresh.

Names and places in here are invented.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE.parent))  # tests/: xwing_parts

import http_message_signatures as hms  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from protocol import crypto, hlc, keylog, keys, padding, roster, tags  # noqa: E402
from protocol.encoding import b64d, b64e, canonical_json, labelled  # noqa: E402
from protocol.errors import InvalidBundle, ProtocolError  # noqa: E402
from protocol.httpsig import (  # noqa: E402
    AuthError,
    _Headers,
    _Keys,
    _Message,
    content_digest,
    verify_request,
)
from protocol.model import ZERO_HASH, Bundle, CellInput  # noqa: E402

# --- fixed inputs ---------------------------------------------------------------------


def seed(label: str, n: int = 32) -> bytes:
    """A fixed byte string named by `label`: stands in for the randomness of a real run."""
    return hashlib.shake_256(b"fieldsync test vectors/" + label.encode()).digest(n)


def sign_key(label: str) -> Ed25519PrivateKey:
    return keys.signing_key(seed(label))


def pub(key: Ed25519PrivateKey) -> bytes:
    return keys.public_bytes(key)


def device_id(key: Ed25519PrivateKey) -> str:
    return keys.device_id_for(pub(key))


PRIVATE: dict[bytes, bytes] = {}  # HPKE public -> private, for every fixed key pair


def hpke_pair(label: str) -> keys.HpkeKeyPair:
    pair = keys.HpkeKeyPair.from_seed(seed(label, keys.HPKE_PRIV_LEN))
    PRIVATE[pair.public_bytes] = pair.private_bytes
    return pair


WORKSPACE = b64e(seed("workspace", 16))
TAG_KEY = seed("tag-key")
EPOCHS = {n: hpke_pair(f"epoch-{n}") for n in (1, 2, 3)}
T0 = 1_795_600_000  # unix seconds: 2026-11-25
HLC0 = hlc.pack(T0 * 1000, 0)
WEEK = 7 * 24 * 3600

# --- HPKE ciphertexts: reuse the committed ones -----------------------------------

_POOL: list[str] = []
_SEALED_B64_LENGTHS = {1558, 1643}  # a sealed data key (1168 bytes), epoch key (1232)


def _collect(value: Any) -> None:
    if isinstance(value, dict):
        for item in value.values():
            _collect(item)
    elif isinstance(value, list):
        for item in value:
            _collect(item)
    elif isinstance(value, str) and len(value) in _SEALED_B64_LENGTHS and value not in _POOL:
        _POOL.append(value)


for _old in sorted(HERE.glob("*.json")):
    _collect(json.loads(_old.read_text(encoding="utf-8")))

_fresh_seal_epoch_key = crypto.seal_epoch_key
_fresh_seal_data_key = crypto.seal_data_key


def _reuse(opener: Callable[[str], bytes], plaintext: bytes) -> str | None:
    for candidate in _POOL:
        try:
            if opener(candidate) == plaintext:
                return candidate
        except InvalidBundle:
            continue
    return None


def seal_epoch_key(
    epoch_private: bytes, coordinator_public: bytes, workspace: str, epoch: int, device: str
) -> str:
    priv = PRIVATE[coordinator_public]
    old = _reuse(lambda c: crypto.open_epoch_key(c, priv, workspace, epoch, device), epoch_private)
    return old or _fresh_seal_epoch_key(epoch_private, coordinator_public, workspace, epoch, device)


def seal_data_key(
    data_key: bytes, epoch_public: bytes, workspace: str, key_epoch: int, bundle_id: str
) -> str:
    priv = PRIVATE[epoch_public]
    old = _reuse(lambda c: crypto.open_data_key(c, priv, workspace, key_epoch, bundle_id), data_key)
    return old or _fresh_seal_data_key(data_key, epoch_public, workspace, key_epoch, bundle_id)


# roster's builders and crypto.rekey_sealed_key look these up on the module at call time.
crypto.seal_epoch_key = seal_epoch_key  # type: ignore[assignment]
crypto.seal_data_key = seal_data_key  # type: ignore[assignment]


def code_of(fn: Callable[[], object]) -> str:
    """Run a check expected to fail and return its error code."""
    try:
        fn()
    except ProtocolError as exc:
        return exc.code
    raise AssertionError("expected a refusal, got success")


def write(name: str, doc: dict[str, Any]) -> None:
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    (HERE / name).write_text(text, encoding="utf-8")
    print(f"wrote tests/vectors/{name} ({len(text):,} bytes)")


# --- encoding.json --------------------------------------------------------------------


def encoding_vectors() -> dict[str, Any]:
    b64: list[dict[str, Any]] = []
    for name, data in [
        ("empty", b""),
        ("one byte (two characters)", b"\x00"),
        ("two bytes (three characters)", b"\xff\xee"),
        ("three bytes, both URL-safe characters", b"\xfb\xff\xbf"),
        ("16-byte id", seed("an id", 16)),
        ("32-byte hash", seed("a hash", 32)),
    ]:
        b64.append({"name": name, "text": b64e(data), "hex": data.hex(), "expect": "success"})
    b64.append(
        {
            "name": "exact length",
            "text": b64e(bytes(16)),
            "hex": "00" * 16,
            "length": 16,
            "expect": "success",
        }
    )
    for name, text, length in [
        ("padding is refused", "AA==", None),
        ("one padding character is refused", "AAA=", None),
        ("length 1 mod 4 is impossible", "AAAAA", None),
        ("non-canonical trailing bits (2 characters)", "AB", None),
        ("non-canonical trailing bits (3 characters)", "AAB", None),
        ("standard alphabet '+'", "+w", None),
        ("standard alphabet '/'", "/w", None),
        ("inner whitespace", "AA AA", None),
        ("trailing newline", "AAAA\n", None),
        ("non-ASCII character", "AAé", None),
        ("wrong length", b64e(bytes(15)), 16),
    ]:
        expect = code_of(lambda t=text, n=length: b64d(t, length=n))  # type: ignore[misc]
        vec: dict[str, Any] = {"name": name, "text": text, "expect": expect}
        if length is not None:
            vec["length"] = length
        b64.append(vec)

    jcs: list[dict[str, Any]] = []
    for name, source in [
        ("keys sorted, no whitespace", '{"b": 2, "a": 1, "c": {"z": null, "y": [true, false]}}'),
        (
            "escapes as JCS: short forms, lowercase \\u00xx, '/' and DEL raw",
            r'"\u0000\u001f\b\t\n\f\r\"\\/\u007f"',
        ),
        ("non-ASCII text stays raw UTF-8", '"Тест алаңы 7 — 测试 😀"'),
        ("integers at the 53-bit edges; -0 is 0", "[9007199254740991, -9007199254740991, 0, -0]"),
        ("empty containers", '{"a": [], "b": {}}'),
        ("16 levels of nesting", "[" * 16 + "1" + "]" * 16),
    ]:
        out = canonical_json(json.loads(source))
        jcs.append(
            {
                "name": name,
                "input_json": source,
                "canonical": out.decode("utf-8"),
                "canonical_hex": out.hex(),
                "expect": "success",
            }
        )
    for name, source in [
        ("a fraction", "1.5"),
        ("an integral float", "1.0"),
        ("an exponent", "1e2"),
        ("2^53 does not fit", "9007199254740992"),
        ("-2^53 does not fit", "-9007199254740992"),
        ("a non-ASCII object key", '{"é": 1}'),
        ("a lone surrogate", r'"\ud800"'),
        ("17 levels of nesting", "[" * 17 + "1" + "]" * 17),
    ]:
        jcs.append(
            {
                "name": name,
                "input_json": source,
                "expect": code_of(lambda s=source: canonical_json(json.loads(s))),  # type: ignore[misc]
            }
        )

    label = "fieldsync/v1/example"
    value = {"b": 1, "a": "x"}
    labelled_bytes = labelled(label, value)
    return {
        "description": (
            "base64url: strict unpadded, canonical trailing bits; `length` when given is the "
            "required decoded length. jcs: parse `input_json` with your JSON parser, encode "
            "canonically, compare with `canonical_hex`; refused inputs give the code in "
            "`expect`. labelled: label || 0x00 || JCS(value)."
        ),
        "base64url": b64,
        "jcs": jcs,
        "labelled": [
            {
                "label": label,
                "input_json": json.dumps(value),
                "labelled_hex": labelled_bytes.hex(),
                "sha256_hex": hashlib.sha256(labelled_bytes).hexdigest(),
            }
        ],
    }


# --- padding.json ---------------------------------------------------------------------


def padding_vectors() -> dict[str, Any]:
    lengths = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 31, 32, 33, 36, 63, 64, 65, 100]
    lengths += [127, 128, 129, 255, 256, 257, 1000, 1023, 1024, 1025, 4000, 65536, 100000]
    pads = []
    for message in [b"", b"a", b"x" * 27, b"x" * 28, b"x" * 29, b"y" * 40, bytes(range(100))]:
        pads.append(
            {
                "message_hex": message.hex(),
                "padded_hex": padding.pad(message).hex(),
                "expect": "success",
            }
        )
    one = padding.pad(b"a")
    bad = [
        ("empty", b""),
        ("shorter than the length prefix", b"\x00\x00\x00"),
        ("length prefix exceeds the value", (40).to_bytes(4, "big") + bytes(28)),
        ("non-zero padding byte", one[:-1] + b"\x01"),
        ("longer than the Padmé length", one + bytes(32)),
        ("below the 32-byte minimum", b"\x00\x00\x00\x01a"),
    ]
    for name, padded in bad:
        pads.append(
            {
                "name": name,
                "padded_hex": padded.hex(),
                "expect": code_of(lambda p=padded: padding.unpad(p)),  # type: ignore[misc]
            }
        )
    return {
        "description": (
            "padme: Padmé length of L. pad: u32be(len) || message || zeros up to "
            "max(32, padme(4 + len)); unpad must return the message, or refuse with `expect`."
        ),
        "padme": [{"length": n, "padme": padding.padme(n)} for n in lengths],
        "pad": pads,
    }


# --- keys.json: derivations -----------------------------------------------------------


def keys_vectors() -> dict[str, Any]:
    devices = []
    for label in ("founder", "volunteer"):
        s = seed(label)
        k = keys.signing_key(s)
        devices.append(
            {"sign_seed_hex": s.hex(), "sign_pub": b64e(pub(k)), "device_id": device_id(k)}
        )
    hpke = [
        {"seed_hex": EPOCHS[1].private_bytes.hex(), "public": b64e(EPOCHS[1].public_bytes)},
    ]
    invite_key = sign_key("invite-volunteer")
    bundle_id = b64e(seed("bundle-1", 16))
    head = b64e(seed("a log head", 32))
    return {
        "description": (
            "Derivations: device id, HPKE key pair from its 96-byte seed, invite id, key "
            "commitment, HPKE info strings, safety number."
        ),
        "device_id": devices,
        "hpke_key_pair": hpke,
        "invite_id": [
            {
                "invite_seed_hex": seed("invite-volunteer").hex(),
                "invite_pub": b64e(pub(invite_key)),
                "invite_id": keylog.invite_id_for(pub(invite_key)),
            }
        ],
        "key_commit": [
            {
                "data_key_hex": seed("data-key-1").hex(),
                "key_commit": crypto.key_commitment(seed("data-key-1")),
            }
        ],
        "data_key_info": [
            {
                "workspace": WORKSPACE,
                "key_epoch": 2,
                "bundle_id": bundle_id,
                "info_hex": crypto.data_key_info(WORKSPACE, 2, bundle_id).hex(),
            }
        ],
        "epoch_key_info": [
            {
                "workspace": WORKSPACE,
                "epoch": 3,
                "device_id": device_id(sign_key("founder")),
                "info_hex": crypto.epoch_key_info(
                    WORKSPACE, 3, device_id(sign_key("founder"))
                ).hex(),
            }
        ],
        "safety_number": [{"head": head, "safety_number": keylog.safety_number(head)}],
    }


# --- field_tag.json and cell.json -----------------------------------------------------


def field_tag_vectors() -> dict[str, Any]:
    r1, r2 = b64e(seed("record-1", 16)), b64e(seed("record-2", 16))
    out = []
    for rid, rtype, field in [
        (r1, "picket", "date"),
        (r1, "picket", "place"),
        (r2, "picket", "date"),
        (r2, "detention", "date"),
        (r1, "picket", "_deleted"),
        (r2, "relative", "full_name"),
    ]:
        mac_input = (
            tags.L_FIELD_TAG.encode()
            + b"\x00"
            + b64d(rid)
            + rtype.encode()
            + b"\x00"
            + field.encode()
        )
        out.append(
            {
                "record_id": rid,
                "record_type": rtype,
                "field": field,
                "mac_input_hex": mac_input.hex(),
                "field_tag": tags.field_tag(TAG_KEY, rid, rtype, field),
            }
        )
    return {
        "description": (
            "field_tag = first 16 bytes of HMAC-SHA-256(tag_key, 'fieldsync/v1/field-tag' || "
            "0x00 || record_id (16 bytes) || type || 0x00 || field)."
        ),
        "tag_key_hex": TAG_KEY.hex(),
        "vectors": out,
    }


def cell_vectors() -> dict[str, Any]:
    dev = device_id(sign_key("volunteer"))
    bundle_id = b64e(seed("bundle-1", 16))
    rid = b64e(seed("record-1", 16))
    tag = tags.field_tag(TAG_KEY, rid, "picket", "attendance")
    sup = [b64e(seed("superseded-1")), b64e(seed("superseded-2"))]
    ads = []
    for index, hlc_value, supersedes, ct in [
        (0, HLC0, [], seed("ciphertext-0", 48)),
        (3, HLC0 + 7, sup, seed("ciphertext-3", 64)),
        (255, hlc.MAX_HLC, sup[:1], seed("ciphertext-255", 48)),
    ]:
        prefix = crypto.bundle_ad_prefix(WORKSPACE, bundle_id, dev, 2)
        ad = crypto.cell_ad(prefix, index, rid, tag, hlc_value, supersedes)
        ads.append(
            {
                "workspace": WORKSPACE,
                "bundle_id": bundle_id,
                "device_id": dev,
                "epoch": 2,
                "index": index,
                "record_id": rid,
                "field_tag": tag,
                "hlc": hlc_value,
                "supersedes": supersedes,
                "ct_hex": ct.hex(),
                "ad_hex": ad.hex(),
                "cell_id": crypto.compute_cell_id(ad, ct),
            }
        )
    values: list[dict[str, Any]] = []
    for rtype, field, value in [
        ("picket", "attendance", 23),
        ("picket", "place", "Test Square 7 / Тест алаңы 7"),
        ("detention", "fine_paid", False),
        ("relative", "last_contact", None),
        ("picket", "_deleted", True),
    ]:
        encoded = crypto.encode_value(rtype, field, value)
        values.append(
            {
                "record_type": rtype,
                "field": field,
                "value": value,
                "plaintext_hex": encoded.hex(),
                "padded_hex": padding.pad(encoded).hex(),
                "expect": "success",
            }
        )
    for rtype, field, value_json in [
        ("picket", "attendance", "23.5"),
        ("picket", "attendance", "9007199254740992"),
        ("Picket", "date", '"2026"'),
        ("picket", "date-time", '"2026"'),
    ]:
        values.append(
            {
                "record_type": rtype,
                "field": field,
                "value_json": value_json,
                "expect": code_of(
                    lambda t=rtype, f=field, v=value_json: crypto.encode_value(t, f, json.loads(v))  # type: ignore[misc]
                ),
            }
        )
    return {
        "description": (
            "ad = 'fieldsync/v1/cell-ad' || 0x00 || workspace (16) || bundle_id (16) || "
            "device_id (16) || u32be(epoch) || u32be(index) || record_id (16) || field_tag (16) "
            "|| u64be(hlc) || u16be(len(supersedes)) || each superseded cell id (32). "
            "cell_id = SHA-256('fieldsync/v1/cell-id' || 0x00 || ad || ct). values: the sealed "
            "plaintext JCS({type, field, value}) and its padding; refused values give `expect`."
        ),
        "ad": ads,
        "values": values,
    }


# --- bundle.json ----------------------------------------------------------------------

VOLUNTEER = sign_key("volunteer")
R_PICKET = b64e(seed("record-1", 16))
R_DETENTION = b64e(seed("record-2", 16))


def _cell_input_json(c: CellInput) -> dict[str, Any]:
    return {
        "record_id": c.record_id,
        "record_type": c.record_type,
        "field": c.field,
        "value": c.value,
        "hlc": c.hlc,
        "supersedes": list(c.supersedes),
    }


def _seal(
    label: str,
    seq: int,
    prev: str,
    cells: list[CellInput],
    *,
    tag_key: bytes = TAG_KEY,
    device: Ed25519PrivateKey = VOLUNTEER,
) -> tuple[Bundle, dict[str, Any]]:
    bundle_id = b64e(seed(label, 16))
    data_key = seed("data-key/" + label)
    sealed_key = seal_data_key(data_key, EPOCHS[1].public_bytes, WORKSPACE, 1, bundle_id)
    bundle = crypto._seal_bundle_from_parts(
        workspace=WORKSPACE,
        bundle_id=bundle_id,
        device_key=device,
        seq=seq,
        prev=prev,
        epoch=1,
        data_key=data_key,
        sealed_key=sealed_key,
        tag_key=tag_key,
        cells=cells,
    )
    inputs = {
        "device_seed_hex": seed("volunteer").hex(),
        "workspace": WORKSPACE,
        "bundle_id": bundle_id,
        "seq": seq,
        "prev": prev,
        "epoch": 1,
        "data_key_hex": data_key.hex(),
        "sealed_key": sealed_key,
        "tag_key_hex": TAG_KEY.hex(),
        "cells": [_cell_input_json(c) for c in cells],
    }
    return bundle, inputs


def _opened_json(bundle: Bundle) -> list[dict[str, Any]]:
    opened = crypto.open_bundle(
        bundle, pub(VOLUNTEER), {n: p.private_bytes for n, p in EPOCHS.items()}, TAG_KEY
    )
    return [
        {
            "record_id": o.record_id,
            "field_tag": o.field_tag,
            "cell_id": o.cell_id,
            "hlc": o.hlc,
            "supersedes": list(o.supersedes),
            "device_id": o.device_id,
            "bundle_id": o.bundle_id,
            "record_type": o.record_type,
            "field": o.field,
            "value": o.value,
        }
        for o in opened
    ]


def _with(bundle: Bundle, **changes: Any) -> dict[str, Any]:
    wire = bundle.to_wire()
    wire.update(changes)
    return wire


def _with_cell(bundle: Bundle, index: int, **changes: Any) -> dict[str, Any]:
    wire = bundle.to_wire()
    wire["cells"][index].update(changes)
    return wire


def _flip(text: str, at: int = -1) -> str:
    raw = bytearray(b64d(text))
    raw[at] ^= 0x01
    return b64e(bytes(raw))


def _resign(wire: dict[str, Any], device: Ed25519PrivateKey = VOLUNTEER) -> dict[str, Any]:
    """What only the device itself can do: sign whatever header the wire now has."""
    bundle = Bundle.from_wire(wire)
    sig = device.sign(labelled(crypto.L_BUNDLE_SIG, bundle.header(), trusted=True))
    return {**wire, "sig": b64e(sig)}


# The eight points of small order, canonically encoded (RFC 8032 §5.1.2): an
# Ed25519 "public key" among them, with R among them and S = 0, satisfies
# OpenSSL's cofactorless equation [S]B = R + [k]A for some R whatever the message.
SMALL_ORDER = [
    bytes.fromhex(h)
    for h in (
        "0100000000000000000000000000000000000000000000000000000000000000",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000080",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    )
]
WEAK_KEY = SMALL_ORDER[4]  # of order 8
ED25519_L = 2**252 + 27742317777372353535851937790883648493


def forge_small_order(message: bytes, public: bytes = WEAK_KEY) -> bytes:
    """A signature R || 0 that OpenSSL's verifier accepts under the small-order `public`."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    raw = Ed25519PublicKey.from_public_bytes(public)
    for r in SMALL_ORDER:
        try:
            raw.verify(r + bytes(32), message)
            return r + bytes(32)
        except InvalidSignature:
            continue
    raise AssertionError("no small-order R satisfies the equation")


def unreduced_s(sig: str) -> str:
    """The same signature with S + L in place of S: lenient verifiers reduce it and accept."""
    raw = b64d(sig)
    s = int.from_bytes(raw[32:], "little") + ED25519_L
    assert s < 2**256
    return b64e(raw[:32] + s.to_bytes(32, "little"))


def _with_plaintext(bundle: Bundle, index: int, plain: bytes) -> dict[str, Any]:
    """What a faulty device could seal and sign: raw plaintext bytes in cell `index`."""
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    data_key = seed("data-key/bundle-1")
    prefix = crypto.bundle_ad_prefix(WORKSPACE, bundle.bundle_id, bundle.device_id, bundle.epoch)
    c = bundle.cells[index]
    ad = crypto.cell_ad(prefix, index, c.record_id, c.field_tag, c.hlc, c.supersedes)
    ct = ChaCha20Poly1305(data_key).encrypt(index.to_bytes(12, "big"), padding.pad(plain), ad)
    wire = _with_cell(bundle, index, ct=b64e(ct), cell_id=crypto.compute_cell_id(ad, ct))
    return _resign(wire)


def weak_device_bundle(b1: Bundle) -> tuple[str, dict[str, Any], bytes]:
    """A bundle of a device whose key is of small order: its forged signature satisfies
    OpenSSL's equation, so only the strict key check refuses it."""
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    weak_id = keys.device_id_for(WEAK_KEY)
    opened = crypto.open_bundle(b1, pub(VOLUNTEER), {1: EPOCHS[1].private_bytes}, TAG_KEY)
    aead = ChaCha20Poly1305(seed("data-key/bundle-1"))
    prefix = crypto.bundle_ad_prefix(WORKSPACE, b1.bundle_id, weak_id, b1.epoch)
    cells = []
    for index, (c, o) in enumerate(zip(b1.cells, opened, strict=True)):
        ad = crypto.cell_ad(prefix, index, c.record_id, c.field_tag, c.hlc, c.supersedes)
        plain = padding.pad(crypto.encode_value(o.record_type, o.field, o.value))
        ct = aead.encrypt(index.to_bytes(12, "big"), plain, ad)
        cells.append({**c.to_wire(), "ct": b64e(ct), "cell_id": crypto.compute_cell_id(ad, ct)})
    wire = {**b1.to_wire(), "device_id": weak_id, "cells": cells}
    header = Bundle.from_wire(wire).header()
    sig = forge_small_order(labelled(crypto.L_BUNDLE_SIG, header, trusted=True))
    return (
        "a device key of small order signs anything (R of small order, S = 0)",
        {**wire, "sig": b64e(sig)},
        WEAK_KEY,
    )


def bundle_vectors() -> dict[str, Any]:
    h = HLC0
    first_cells = [
        CellInput(R_PICKET, "picket", "date", "2026-11-20", h),
        CellInput(R_PICKET, "picket", "place", "Test Square 7 / Тест алаңы 7", h + 1),
        CellInput(R_PICKET, "picket", "attendance", 23, h + 2),
    ]
    b1, in1 = _seal("bundle-1", 1, ZERO_HASH, first_cells)
    h2 = hlc.pack(T0 * 1000 + 60_001, 0)
    attendance_cell = b1.cells[2].cell_id
    second_cells = [
        CellInput(
            R_PICKET,
            "picket",
            "attendance",
            25,
            hlc.pack(T0 * 1000 + 60_000, 0),
            (attendance_cell,),
        ),
        CellInput(R_DETENTION, "detention", "picket_id", R_PICKET, h2),
        CellInput(R_DETENTION, "detention", "person_name", "Example Person Bir", h2 + 1),
        CellInput(R_DETENTION, "detention", "released_at", "2026-11-20T18:30", h2 + 2),
        CellInput(R_DETENTION, "detention", "fine_amount", 50000, h2 + 3),
        CellInput(R_DETENTION, "detention", "fine_paid", False, h2 + 4),
    ]
    b2, in2 = _seal("bundle-2", 2, crypto.bundle_hash(b1), second_cells)
    rekeyed_key = crypto.rekey_sealed_key(b1, EPOCHS[1].private_bytes, 2, EPOCHS[2].public_bytes)
    b1_rekeyed = Bundle.from_wire(_with(b1, key_epoch=2, sealed_key=rekeyed_key))

    def success(name: str, bundle: Bundle, inputs: dict[str, Any] | None) -> dict[str, Any]:
        vec: dict[str, Any] = {"name": name}
        if inputs is not None:
            vec["inputs"] = inputs
        vec.update(
            {
                "device_pub": b64e(pub(VOLUNTEER)),
                "epoch_keys": {
                    "1": EPOCHS[1].private_bytes.hex(),
                    "2": EPOCHS[2].private_bytes.hex(),
                },
                "tag_key_hex": TAG_KEY.hex(),
                "bundle": bundle.to_wire(),
                "signed_hex": labelled(crypto.L_BUNDLE_SIG, bundle.header(), trusted=True).hex(),
                "bundle_hash": crypto.bundle_hash(bundle),
                "opened": _opened_json(bundle),
                "expect": "success",
            }
        )
        return vec

    successes = [
        success("a new picket: three fields", b1, in1),
        success("an edit and a new detention, chained to the first bundle", b2, in2),
        success(
            "the first bundle re-keyed to epoch 2: only key_epoch and sealed_key changed",
            b1_rekeyed,
            None,
        ),
    ]

    # A device that seals garbage signs it too; the server cannot tell, the keyholder can.
    garbage = _with_cell(b1, 1, ct=b64e(seed("garbage", 48)))
    prefix = crypto.bundle_ad_prefix(WORKSPACE, b1.bundle_id, b1.device_id, 1)
    c1 = b1.cells[1]
    ad1 = crypto.cell_ad(prefix, 1, c1.record_id, c1.field_tag, c1.hlc, c1.supersedes)
    garbage["cells"][1]["cell_id"] = crypto.compute_cell_id(ad1, seed("garbage", 48))
    garbage = _resign(garbage)
    wrong_tags, _ = _seal("bundle-1", 1, ZERO_HASH, first_cells, tag_key=seed("another tag key"))
    other_data_key = seal_data_key(
        seed("another data key"), EPOCHS[1].public_bytes, WORKSPACE, 1, b1.bundle_id
    )
    other_device = sign_key("coordinator")
    duplicated = b1.to_wire()
    duplicated["cells"] = [duplicated["cells"][0], duplicated["cells"][0], duplicated["cells"][2]]

    failures_spec: list[tuple[str, dict[str, Any], bytes]] = [
        ("signature byte flipped", _with(b1, sig=_flip(b1.sig)), pub(VOLUNTEER)),
        ("seq changed", _with(b1, seq=2), pub(VOLUNTEER)),
        ("prev changed", _with(b1, prev=_flip(b1.prev)), pub(VOLUNTEER)),
        ("key_commit changed", _with(b1, key_commit=_flip(b1.key_commit)), pub(VOLUNTEER)),
        ("epoch changed", _with(b1, epoch=2, key_epoch=2), pub(VOLUNTEER)),
        ("a cell dropped", _with(b1, cells=b1.to_wire()["cells"][:2]), pub(VOLUNTEER)),
        ("cells swapped", _with(b1, cells=b1.to_wire()["cells"][::-1]), pub(VOLUNTEER)),
        ("hlc of a cell changed", _with_cell(b1, 0, hlc=b1.cells[0].hlc + 1), pub(VOLUNTEER)),
        ("record_id of a cell changed", _with_cell(b1, 0, record_id=R_DETENTION), pub(VOLUNTEER)),
        (
            "field_tag of a cell swapped with another",
            _with_cell(b1, 0, field_tag=b1.cells[1].field_tag),
            pub(VOLUNTEER),
        ),
        (
            "supersedes added to a cell",
            _with_cell(b1, 2, supersedes=[b1.cells[0].cell_id]),
            pub(VOLUNTEER),
        ),
        ("ciphertext byte flipped", _with_cell(b1, 1, ct=_flip(b1.cells[1].ct, 0)), pub(VOLUNTEER)),
        (
            "workspace changed",
            _with(b1, workspace=b64e(seed("another workspace", 16))),
            pub(VOLUNTEER),
        ),
        ("bundle_id changed", _with(b1, bundle_id=b64e(seed("bundle-9", 16))), pub(VOLUNTEER)),
        ("ciphertext not base64url", _with_cell(b1, 1, ct=b1.cells[1].ct + "="), pub(VOLUNTEER)),
        (
            "device_id is not the signer's",
            _with(b1, device_id=device_id(other_device)),
            pub(VOLUNTEER),
        ),
        ("verified with another device's key", b1.to_wire(), pub(other_device)),
        ("the same cell twice", duplicated, pub(VOLUNTEER)),
        (
            "sealed_key byte flipped",
            _with(b1, sealed_key=_flip(b1.sealed_key, 2000 % 1168)),
            pub(VOLUNTEER),
        ),
        (
            "key_epoch names an epoch whose key the opener lacks",
            _with(b1, key_epoch=3),
            pub(VOLUNTEER),
        ),
        ("key_epoch changed to another held epoch", _with(b1, key_epoch=2), pub(VOLUNTEER)),
        (
            "sealed_key of another data key (server swapped it)",
            _with(b1, sealed_key=other_data_key),
            pub(VOLUNTEER),
        ),
        ("sealed_key of another bundle", _with(b1, sealed_key=b2.sealed_key), pub(VOLUNTEER)),
        ("the device sealed garbage and signed it", garbage, pub(VOLUNTEER)),
        ("the device sealed under another tag key", wrong_tags.to_wire(), pub(VOLUNTEER)),
        # UTF-8 decoders that replace instead of refusing, parsers that keep the last
        # of two members or read 1.0 as 1: the plaintext must be the one canonical form.
        (
            "a cell plaintext that is not UTF-8",
            _with_plaintext(b1, 1, b'{"field":"place","type":"picket","value":"Test \xff"}'),
            pub(VOLUNTEER),
        ),
        (
            "a cell plaintext with a lone surrogate",
            _with_plaintext(b1, 1, b'{"field":"place","type":"picket","value":"\\ud800"}'),
            pub(VOLUNTEER),
        ),
        (
            "a cell plaintext with a member twice",
            _with_plaintext(b1, 2, b'{"field":"attendance","type":"picket","value":23,"value":24}'),
            pub(VOLUNTEER),
        ),
        (
            "a cell plaintext whose number is 23.0",
            _with_plaintext(b1, 2, b'{"field":"attendance","type":"picket","value":23.0}'),
            pub(VOLUNTEER),
        ),
        (
            "a cell plaintext that is not canonical (a space)",
            _with_plaintext(b1, 2, b'{"field":"attendance", "type":"picket","value":23}'),
            pub(VOLUNTEER),
        ),
        # Ed25519 verified strictly (docs/IMPLEMENTERS.md): a lenient verifier accepts these.
        ("signature S not reduced (S + L)", _with(b1, sig=unreduced_s(b1.sig)), pub(VOLUNTEER)),
        weak_device_bundle(b1),
    ]
    epoch_keys = {"1": EPOCHS[1].private_bytes.hex(), "2": EPOCHS[2].private_bytes.hex()}
    held = {n: EPOCHS[n].private_bytes for n in (1, 2)}
    failures = []
    for name, wire, device_public in failures_spec:
        bundle = Bundle.from_wire(wire)
        try:
            crypto.verify_bundle(bundle, device_public)
            stage = "open"
        except InvalidBundle:
            stage = "verify"
        failures.append(
            {
                "name": name,
                "device_pub": b64e(device_public),
                "epoch_keys": epoch_keys,
                "tag_key_hex": TAG_KEY.hex(),
                "bundle": wire,
                "stage": stage,
                "expect": code_of(
                    lambda b=bundle, d=device_public: crypto.open_bundle(b, d, held, TAG_KEY)
                ),  # type: ignore[misc]
            }
        )
    return {
        "description": (
            "Each success vector: seal `inputs` with the deterministic core (the sealed_key is "
            "an input: HPKE is randomized) and compare with `bundle` byte for byte; verify with "
            "`device_pub`; open with `epoch_keys` (epoch -> 96-byte HPKE seed) and `tag_key_hex` "
            "and compare with `opened`. Each failure: `stage` verify means the keyless check "
            "(device id, cell ids, signature) refuses it; open means only a keyholder can; "
            "`expect` is the code."
        ),
        "epoch_public": {"1": b64e(EPOCHS[1].public_bytes), "2": b64e(EPOCHS[2].public_bytes)},
        "success": successes,
        "failures": failures,
    }


# --- keylog.json ----------------------------------------------------------------------


class Actor:
    def __init__(self, label: str, keyholder: bool) -> None:
        self.label = label
        self.key = sign_key(label)
        self.id = device_id(self.key)
        self.hpke = hpke_pair(label + "/hpke") if keyholder else None

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sign_seed_hex": seed(self.label).hex(), "device_id": self.id}
        if self.hpke is not None:
            out["hpke_seed_hex"] = self.hpke.private_bytes.hex()
        return out


def keylog_vectors() -> dict[str, Any]:
    founder = Actor("founder", True)
    coordinator = Actor("coordinator", True)
    volunteer = Actor("volunteer", False)
    second = Actor("second-admin", True)
    outsider = Actor("outsider", True)
    inv = {
        name: sign_key("invite-" + name) for name in ("coordinator", "volunteer", "admin", "spare")
    }
    epoch_priv = {n: p.private_bytes for n, p in EPOCHS.items()}
    assert founder.hpke and coordinator.hpke and second.hpke and outsider.hpke

    log: list[dict[str, Any]] = []
    heads: list[str] = []
    states: list[keylog.KeyLogState] = []

    def add(event: dict[str, Any]) -> None:
        state = keylog.genesis_state(event) if not log else keylog.apply_event(states[-1], event)
        log.append(event)
        states.append(state)
        heads.append(state.head)

    def at(i: int) -> int:
        return T0 + 60 * i

    add(
        roster.genesis(
            workspace=WORKSPACE,
            admin_key=founder.key,
            admin_hpke=founder.hpke,
            epoch=EPOCHS[1],
            at=at(0),
        )
    )
    add(
        roster.invite(
            states[-1], founder.key, inv["coordinator"], "coordinator", at(1) + WEEK, at(1)
        )
    )
    add(
        roster.enroll(
            states[-1],
            inv["coordinator"],
            coordinator.key,
            "coordinator",
            coordinator.hpke.public_bytes,
            at(2),
        )
    )
    add(roster.approve(states[-1], founder.key, coordinator.id, {1: epoch_priv[1]}, at(3)))
    add(roster.invite(states[-1], founder.key, inv["volunteer"], "volunteer", at(4) + WEEK, at(4)))
    add(roster.enroll(states[-1], inv["volunteer"], volunteer.key, "volunteer", None, at(5)))
    add(roster.invite(states[-1], founder.key, inv["admin"], "admin", at(6) + WEEK, at(6)))
    add(
        roster.enroll(
            states[-1], inv["admin"], second.key, "admin", second.hpke.public_bytes, at(7)
        )
    )
    add(roster.approve(states[-1], founder.key, second.id, {1: epoch_priv[1]}, at(8)))
    add(roster.revoke(states[-1], second.key, volunteer.id, at(9)))
    add(roster.rotate(states[-1], founder.key, EPOCHS[2], at(10)))
    add(roster.revoke(states[-1], founder.key, coordinator.id, at(11)))
    add(roster.rotate(states[-1], second.key, EPOCHS[3], at(12)))
    final = states[-1]
    root = final.root

    def ev(
        i: int,
        key: Ed25519PrivateKey,
        kind: str,
        body: dict[str, Any],
        signer: str | None = None,
        seq: int | None = None,
        prev: str | None = None,
        when: int | None = None,
    ) -> dict[str, Any]:
        """An event signed by `key` that follows base event i-1 unless told otherwise."""
        return keylog.sign_event(
            seq=i if seq is None else seq,
            prev=heads[i - 1] if prev is None else prev,
            kind=kind,
            at=at(i) if when is None else when,
            signer=device_id(key) if signer is None else signer,
            body=body,
            key=key,
        )

    def invite_body(key: Ed25519PrivateKey, role: str, expires: int) -> dict[str, Any]:
        return {"invite_key": b64e(pub(key)), "role": role, "expires": expires}

    def altered(i: int, **body_changes: Any) -> dict[str, Any]:
        event = json.loads(json.dumps(log[i]))
        event["body"].update(body_changes)
        return event

    alt_rotate = roster.rotate(states[9], founder.key, hpke_pair("epoch-2-alternative"), at(10))
    # A keyholder can only find this after opening: the pub is right, the sealed key is not.
    bad_sealed = roster.rotate(states[9], founder.key, EPOCHS[2], at(10))
    bad_sealed["body"]["sealed"][coordinator.id] = seal_epoch_key(
        EPOCHS[3].private_bytes, coordinator.hpke.public_bytes, WORKSPACE, 2, coordinator.id
    )
    bad_sealed = keylog.sign_event(
        **{k: bad_sealed[k] for k in ("seq", "prev", "kind", "at", "signer", "body")},
        key=founder.key,
    )
    revoke_second = ev(9, founder.key, "revoke", {"device_id": second.id})
    after_revoke_second = keylog.apply_event(states[8], revoke_second)
    unlogged_invite = sign_key("invite-never-logged")

    failures_spec: list[tuple[str, list[Any], dict[str, Any]]] = [
        ("empty log", [], {}),
        (
            "pinned genesis of another workspace",
            list(range(13)),
            {"pinned_root": b64e(seed("another workspace's root"))},
        ),
        ("log starts after the genesis", list(range(1, 13)), {}),
        (
            "invite forged by an unknown key",
            [
                *range(5),
                ev(5, outsider.key, "invite", invite_body(inv["spare"], "admin", at(5) + WEEK)),
            ],
            {},
        ),
        ("invite altered after signing (role raised)", [*range(4), altered(4, role="admin")], {}),
        (
            "rotate with a substituted epoch public key",
            [*range(10), altered(10, pub=b64e(hpke_pair("epoch-2-alternative").public_bytes))],
            {},
        ),
        (
            "invite signed by a coordinator",
            [
                *range(4),
                ev(
                    4,
                    coordinator.key,
                    "invite",
                    invite_body(inv["spare"], "volunteer", at(4) + WEEK),
                ),
            ],
            {},
        ),
        (
            "invite signed by a pending admin",
            [
                *range(8),
                ev(8, second.key, "invite", invite_body(inv["spare"], "volunteer", at(8) + WEEK)),
            ],
            {},
        ),
        (
            "invite signed by an admin revoked earlier",
            [
                *range(9),
                revoke_second,
                ev(
                    10,
                    second.key,
                    "invite",
                    invite_body(inv["spare"], "volunteer", at(10) + WEEK),
                    prev=after_revoke_second.head,
                ),
            ],
            {},
        ),
        ("events reordered", [0, 1, 2, 4, 3, *range(5, 13)], {}),
        ("an event dropped", [0, 1, 2, 3, 5], {}),
        (
            "prev names an earlier head",
            [
                *range(5),
                ev(
                    5,
                    inv["volunteer"],
                    "enroll",
                    dict(log[5]["body"]),
                    signer=log[5]["signer"],
                    prev=heads[3],
                ),
            ],
            {},
        ),
        ("a second genesis", [0, ev(1, founder.key, "genesis", dict(log[0]["body"]))], {}),
        ("shorter than the log this device saw", list(range(9)), {"seen": [13, heads[12]]}),
        (
            "differs from the log this device saw",
            [*range(10), alt_rotate],
            {"seen": [11, heads[10]]},
        ),
        (
            "invite redeemed twice",
            [
                *range(3),
                ev(
                    3,
                    inv["coordinator"],
                    "enroll",
                    {
                        "device_id": outsider.id,
                        "sign_pub": b64e(pub(outsider.key)),
                        "hpke_pub": b64e(outsider.hpke.public_bytes),
                        "role": "coordinator",
                    },
                    signer=log[2]["signer"],
                ),
            ],
            {},
        ),
        (
            "invite redeemed after it expired",
            [
                0,
                1,
                ev(
                    2,
                    inv["coordinator"],
                    "enroll",
                    dict(log[2]["body"]),
                    signer=log[2]["signer"],
                    when=at(1) + WEEK + 1,
                ),
            ],
            {},
        ),
        (
            "enroll by an invite not in the log",
            [
                *range(5),
                ev(
                    5,
                    unlogged_invite,
                    "enroll",
                    dict(log[5]["body"]),
                    signer=keylog.invite_id_for(pub(unlogged_invite)),
                ),
            ],
            {},
        ),
        (
            "enroll with another role than the invite's",
            [
                *range(5),
                ev(
                    5,
                    inv["volunteer"],
                    "enroll",
                    {**log[5]["body"], "role": "admin"},
                    signer=log[5]["signer"],
                ),
            ],
            {},
        ),
        (
            "rotate sealed to the founder only",
            [
                *range(10),
                ev(
                    10,
                    founder.key,
                    "rotate",
                    {
                        **log[10]["body"],
                        "sealed": {founder.id: log[10]["body"]["sealed"][founder.id]},
                    },
                ),
            ],
            {},
        ),
        (
            "rotate also sealed to a revoked volunteer's id",
            [
                *range(10),
                ev(
                    10,
                    founder.key,
                    "rotate",
                    {
                        **log[10]["body"],
                        "sealed": {
                            **log[10]["body"]["sealed"],
                            volunteer.id: log[10]["body"]["sealed"][founder.id],
                        },
                    },
                ),
            ],
            {},
        ),
        (
            "rotate skips an epoch",
            [*range(10), ev(10, founder.key, "rotate", {**log[10]["body"], "epoch": 3})],
            {},
        ),
        (
            "approve that does not seal every epoch",
            [*range(3), ev(3, founder.key, "approve", {"device_id": coordinator.id, "sealed": {}})],
            {},
        ),
        (
            "the last admin revokes itself",
            [*range(6), ev(6, founder.key, "revoke", {"device_id": founder.id})],
            {},
        ),
        (
            "an event of unknown kind",
            [*range(6), ev(6, founder.key, "promote", {"device_id": volunteer.id})],
            {},
        ),
        (
            "an event without a body",
            [
                *range(6),
                {
                    k: v
                    for k, v in ev(6, founder.key, "revoke", {"device_id": volunteer.id}).items()
                    if k != "body"
                },
            ],
            {},
        ),
    ]

    weak_genesis = {k: v for k, v in json.loads(json.dumps(log[0])).items() if k != "sig"}
    weak_id = keys.device_id_for(WEAK_KEY)
    weak_genesis["signer"] = weak_id
    weak_genesis["body"]["admin"].update(device_id=weak_id, sign_pub=b64e(WEAK_KEY))
    weak_genesis["body"]["sealed"] = {weak_id: log[0]["body"]["sealed"][founder.id]}
    weak_genesis["sig"] = b64e(forge_small_order(labelled(keylog.L_EVENT_SIG, weak_genesis)))
    failures_spec += [
        (
            "enroll whose device id is not its key's",
            [
                *range(5),
                ev(
                    5,
                    inv["volunteer"],
                    "enroll",
                    {**log[5]["body"], "device_id": outsider.id},
                    signer=log[5]["signer"],
                ),
            ],
            {},
        ),
        (
            "an invite key issued twice",
            [
                *range(5),
                ev(5, founder.key, "invite", invite_body(inv["volunteer"], "volunteer", at(5))),
            ],
            {},
        ),
        (
            "enroll of a device key of small order",
            [
                *range(5),
                ev(
                    5,
                    inv["volunteer"],
                    "enroll",
                    {
                        "device_id": weak_id,
                        "sign_pub": b64e(WEAK_KEY),
                        "hpke_pub": None,
                        "role": "volunteer",
                    },
                    signer=log[5]["signer"],
                ),
            ],
            {},
        ),
        (
            "an invite key of small order",
            [
                *range(4),
                ev(
                    4,
                    founder.key,
                    "invite",
                    {"invite_key": b64e(WEAK_KEY), "role": "volunteer", "expires": at(4) + WEEK},
                ),
            ],
            {},
        ),
        (
            "a genesis whose founder key is of small order (its signature satisfies OpenSSL)",
            [weak_genesis],
            {"pinned_root": keylog.event_hash(weak_genesis)},
        ),
        (
            "event signature S not reduced (S + L)",
            [*range(5), {**log[5], "sig": unreduced_s(log[5]["sig"])}],
            {},
        ),
    ]

    def resolve(spec: list[Any]) -> list[dict[str, Any]]:
        return [log[item] if isinstance(item, int) else item for item in spec]

    failures = []
    for name, spec, extra in failures_spec:
        pinned = extra.get("pinned_root", root)
        seen = extra.get("seen")
        events = resolve(spec)
        failures.append(
            {
                "name": name,
                "log": spec,
                "pinned_root": pinned,
                "seen": seen,
                "expect": code_of(
                    lambda e=events, p=pinned, s=seen: keylog.verify_log(
                        e, p, tuple(s) if s else None
                    )
                ),  # type: ignore[misc]
            }
        )

    # Checks that need the appender's clock (`now`) or a keyholder's private key.
    late = at(4) + WEEK + 1
    append_failures = []
    for name, prefix, event, now in [
        (
            "invite that expires before it is appended",
            4,
            ev(4, founder.key, "invite", invite_body(inv["spare"], "volunteer", at(4))),
            at(4),
        ),
        ("enroll appended after its invite expired", 5, log[5], late),
    ]:
        state = keylog.verify_log(log[:prefix], root)
        append_failures.append(
            {
                "name": name,
                "log": list(range(prefix)),
                "event": event,
                "now": now,
                "expect": code_of(lambda s=state, e=event, n=now: keylog.apply_event(s, e, n)),  # type: ignore[misc]
            }
        )
    state = keylog.verify_log([*log[:10], bad_sealed], root)
    epoch_key_failures = [
        {
            "name": "the epoch-2 key sealed to the coordinator is not the logged epoch-2 key",
            "log": [*range(10), bad_sealed],
            "device_id": coordinator.id,
            "hpke_seed_hex": coordinator.hpke.private_bytes.hex(),
            "expect": code_of(
                lambda: roster.open_epoch_keys(
                    state, coordinator.id, coordinator.hpke.private_bytes
                )
            ),  # type: ignore[union-attr]
        }
    ]

    opened = []
    for actor in (founder, coordinator, second):
        assert actor.hpke is not None
        got = roster.open_epoch_keys(final, actor.id, actor.hpke.private_bytes)
        opened.append(
            {
                "device_id": actor.id,
                "hpke_seed_hex": actor.hpke.private_bytes.hex(),
                "epoch_seeds": {str(n): got[n].hex() for n in sorted(got)},
            }
        )

    return {
        "description": (
            "`log` verifies from `pinned_root` to the state in `expected`. A failure's `log` "
            "lists events: an integer i stands for `log[i]`, an object is an event as given. "
            "Verify it from `pinned_root` with `seen` = [length, head] of a log seen before "
            "(or null) and expect the code. append_failures: verify `log`, then apply `event` "
            "with the appender's clock `now` (unix seconds). epoch_key_failures: verify `log`, "
            "then open every epoch key sealed to `device_id` with its HPKE seed."
        ),
        "actors": {a.label: a.json() for a in (founder, coordinator, volunteer, second, outsider)},
        "invite_seeds_hex": {name: seed("invite-" + name).hex() for name in inv},
        "epoch_seeds_hex": {str(n): p.private_bytes.hex() for n, p in EPOCHS.items()},
        "workspace": WORKSPACE,
        "pinned_root": root,
        "log": log,
        "expected": {
            "workspace": final.workspace,
            "root": final.root,
            "head": final.head,
            "length": final.length,
            "safety_number": keylog.safety_number(final.head),
            "heads": heads,
            "devices": {
                d.device_id: {"role": d.role, "status": d.status, "since": d.since}
                for d in final.devices.values()
            },
            "invites": {
                i.invite_id: {"role": i.role, "expires": i.expires, "used_by": i.used_by}
                for i in final.invites.values()
            },
            "epochs": {str(n): b64e(p) for n, p in sorted(final.epochs.items())},
            "sealed_to": {
                str(n): sorted(d for (m, d) in final.sealed if m == n) for n in sorted(final.epochs)
            },
            "opened_epoch_keys": opened,
        },
        "failures": failures,
        "append_failures": append_failures,
        "epoch_key_failures": epoch_key_failures,
    }


# --- httpsig.json ---------------------------------------------------------------------


def _sign_with(
    key: Ed25519PrivateKey,
    *,
    method: str,
    url: str,
    headers: list[tuple[str, str]],
    covered: tuple[str, ...],
    keyid: str,
    created: int,
    label: str,
    nonce: str | None = None,
    include_alg: bool = True,
    body: bytes | None = None,
    expires: int | None = None,
    tag: str | None = None,
) -> tuple[list[tuple[str, str]], str]:
    msg = _Message(method, url, _Headers(headers))
    signer = hms.HTTPMessageSigner(
        signature_algorithm=hms.algorithms.ED25519, key_resolver=_Keys(key)
    )
    when = datetime.datetime.fromtimestamp(created, tz=datetime.UTC)
    options: dict[str, Any] = dict(
        key_id=keyid,
        created=when,
        nonce=nonce,
        label=label,
        include_alg=include_alg,
        covered_component_ids=covered,
        body=body,
        tag=tag,
        expires=None
        if expires is None
        else datetime.datetime.fromtimestamp(expires, tz=datetime.UTC),
    )
    base = signer.prepare(_Message(method, url, _Headers(list(headers))), **options).signature_base
    signer.sign(msg, **options)
    return msg.headers.items(), base.decode("ascii")


def httpsig_vectors() -> dict[str, Any]:
    rfc_key = keys.signing_key(b64d("n4Ni-HpISpVObnQMW0wOhCKROaIKqKtW_2ZYb2p9KcU"))
    rfc_headers = [
        ("Host", "example.com"),
        ("Date", "Tue, 20 Apr 2021 02:07:55 GMT"),
        ("Content-Type", "application/json"),
        ("Content-Length", "18"),
    ]
    rfc_covered = ("date", "@method", "@path", "@authority", "content-type", "content-length")
    signed, rfc_base = _sign_with(
        rfc_key,
        method="POST",
        url="http://example.com/foo?param=Value&Pet=dog",
        headers=rfc_headers,
        covered=rfc_covered,
        keyid="test-key-ed25519",
        created=1618884473,
        label="sig-b26",
        include_alg=False,
    )
    expected_sig = (
        "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEF"
        "N2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:"
    )
    assert dict(signed)["Signature"] == expected_sig, (
        "the library no longer reproduces RFC 9421 B.2.6"
    )

    key = sign_key("volunteer")
    other = sign_key("coordinator")
    keyid = f"{WORKSPACE}.{device_id(key)}"
    url = f"https://sync.example.org/v1/w/{WORKSPACE}/push"
    body = b'{"bundles":[]}'
    created = T0
    nonce = b64e(seed("nonce", 16))
    known = {keyid: b64e(pub(key))}

    def sign(k: Ed25519PrivateKey = key, **overrides: Any) -> list[tuple[str, str]]:
        options: dict[str, Any] = dict(
            method="POST",
            url=url,
            headers=[],
            covered=("@method", "@target-uri"),
            keyid=keyid,
            created=created,
            label="fs",
            nonce=nonce,
            body=body,
        )
        options.update(overrides)
        return _sign_with(k, **options)[0]

    good, base = _sign_with(
        key,
        method="POST",
        url=url,
        headers=[],
        covered=("@method", "@target-uri"),
        keyid=keyid,
        created=created,
        label="fs",
        nonce=nonce,
        body=body,
    )
    assert dict(good)["Content-Digest"] == content_digest(body)
    no_digest_cover = [*sign(body=None), ("Content-Digest", content_digest(body))]
    two = [(k, v) for k, v in good if k not in ("Signature-Input", "Signature")]
    two += [
        (
            "Signature-Input",
            dict(good)["Signature-Input"]
            + ", "
            + dict(good)["Signature-Input"].replace("fs=", "fs2=", 1),
        ),
        (
            "Signature",
            dict(good)["Signature"] + ", " + dict(good)["Signature"].replace("fs=", "fs2=", 1),
        ),
    ]
    body_digest_swapped = [
        (k, content_digest(b'{"bundles":[1]}') if k == "Content-Digest" else v) for k, v in good
    ]

    cases: list[dict[str, Any]] = [
        {"name": "the vector itself", "headers": good, "now": created, "expect": "success"},
        {
            "name": "120 s late is still fresh",
            "headers": good,
            "now": created + 120,
            "expect": "success",
        },
        {
            "name": "120 s early is still fresh",
            "headers": good,
            "now": created - 120,
            "expect": "success",
        },
        {"name": "121 s late is stale", "headers": good, "now": created + 121},
        {"name": "121 s early is stale", "headers": good, "now": created - 121},
        {"name": "no signature headers", "headers": [("Content-Digest", content_digest(body))]},
        {"name": "the body differs from the digest", "headers": good, "body": '{"bundles":[1]}'},
        {
            "name": "digest matches a changed body, signature does not",
            "headers": body_digest_swapped,
            "body": '{"bundles":[1]}',
        },
        {"name": "another method", "headers": good, "method": "PUT"},
        {"name": "another URL", "headers": good, "url": url.replace("/push", "/log")},
        {"name": "signed by another key", "headers": sign(other)},
        {
            "name": "keyid of no known device",
            "headers": sign(keyid=f"{WORKSPACE}.{device_id(other)}"),
        },
        {
            "name": "keyid without a workspace",
            "headers": sign(keyid=device_id(key)),
            "known": {device_id(key): b64e(pub(key))},
        },
        {"name": "extra parameter: expires", "headers": sign(expires=created + 60)},
        {"name": "extra parameter: tag", "headers": sign(tag="fieldsync")},
        {"name": "no nonce", "headers": sign(nonce=None)},
        {"name": "nonce shorter than 16 characters", "headers": sign(nonce="short")},
        {"name": "no alg parameter", "headers": sign(include_alg=False)},
        {"name": "content-digest not covered", "headers": no_digest_cover},
        {
            "name": "an extra covered component",
            "headers": sign(
                headers=[("Content-Type", "application/json")],
                covered=("@method", "@target-uri", "content-type"),
            ),
        },
        {"name": "two signatures", "headers": two},
    ]

    vectors = []
    for case in cases:
        vec = {
            "name": case["name"],
            "method": case.get("method", "POST"),
            "url": case.get("url", url),
            "headers": [list(pair) for pair in case["headers"]],
            "body": case.get("body", body.decode()),
            "now": case.get("now", created),
            "known_keys": case.get("known", known),
        }
        table = vec["known_keys"]

        def lookup(kid: str, table: dict[str, str] = table) -> bytes:
            if kid not in table:
                raise AuthError("unknown_device", "no such device")
            return b64d(table[kid])

        try:
            verify_request(
                method=vec["method"],
                url=vec["url"],
                headers=[tuple(h) for h in vec["headers"]],
                body=vec["body"].encode(),
                public_key_for=lookup,
                now=vec["now"],
            )
            got = "success"
        except ProtocolError as exc:
            got = exc.code
        assert "expect" not in case or case["expect"] == got, (case["name"], got)
        vec["expect"] = got
        vectors.append(vec)

    return {
        "description": (
            "rfc9421_b26: RFC 9421 Appendix B.2.6 (ed25519), signed with the generic library as "
            "fieldsync's code does. fieldsync: one request signed with the fieldsync profile "
            "(label fs; @method @target-uri content-digest; created, keyid, alg, nonce). "
            "requests: verify each with `known_keys` (keyid -> Ed25519 public key; an unknown "
            "keyid is unknown_device) and the server clock `now`; `expect` is success or the code."
        ),
        "rfc9421_b26": {
            "private_key": "n4Ni-HpISpVObnQMW0wOhCKROaIKqKtW_2ZYb2p9KcU",
            "public_key": b64e(pub(rfc_key)),
            "method": "POST",
            "url": "http://example.com/foo?param=Value&Pet=dog",
            "headers": [list(p) for p in rfc_headers],
            "covered": list(rfc_covered),
            "created": 1618884473,
            "keyid": "test-key-ed25519",
            "label": "sig-b26",
            "signature_base": rfc_base,
            "signature_input": dict(signed)["Signature-Input"],
            "signature": expected_sig,
        },
        "fieldsync": {
            "sign_seed_hex": seed("volunteer").hex(),
            "public_key": b64e(pub(key)),
            "keyid": keyid,
            "method": "POST",
            "url": url,
            "body": body.decode(),
            "created": created,
            "nonce": nonce,
            "signature_base": base,
            "headers": [list(p) for p in good],
        },
        "requests": vectors,
    }


def main() -> None:
    # generate_interop imports this module's fixed inputs: let it find this very run
    # (a second copy would patch the HPKE seal again with its own key table).
    sys.modules.setdefault("generate", sys.modules[__name__])
    import generate_interop as interop

    encoding = encoding_vectors()
    encoding["parse_json"] = interop.parse_json_vectors()
    write("encoding.json", encoding)
    write("padding.json", padding_vectors())
    bundle = bundle_vectors()
    keys_doc = keys_vectors()
    keys_doc["xwing"] = interop.xwing_vectors(bundle)
    write("keys.json", keys_doc)
    write("field_tag.json", field_tag_vectors())
    write("cell.json", cell_vectors())
    write("bundle.json", bundle)
    keylog_doc = keylog_vectors()
    write("keylog.json", keylog_doc)
    write("httpsig.json", httpsig_vectors())
    write("hlc.json", interop.hlc_vectors())
    write("merge.json", interop.merge_vectors())
    write("ed25519.json", interop.ed25519_vectors())
    write("invite.json", interop.invite_vectors(keylog_doc))
    import generate_delivery as delivery

    write("receipt.json", delivery.delivery_vectors())


if __name__ == "__main__":
    main()
