"""The crypto recipe: sealing and opening bundles, sealing epoch keys (field tags and
derived record ids: `tags.py`).

Pure: no I/O, no clock. Randomness (data keys, ids) is passed in by the caller; the
one exception is HPKE's encapsulation, which `cryptography` draws internally, so
known-answer vectors pin the sealed key as an input (`_seal_bundle_from_parts`).

Every failure of `open_bundle` and `verify_bundle` is one `InvalidBundle` with a
code; signatures and cell ids are checked before anything is decrypted.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import hmac
import json
import struct
from binascii import b2a_base64
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from . import keys, tags
from .descriptor import FILE_FIELD_RE
from .encoding import _TO_URL, b64d, b64e, canonical_json, labelled, labelled_hash
from .errors import InvalidBundle, InvalidEncoding
from .hlc import MAX_HLC
from .model import Bundle, Cell, CellInput, OpenedCell
from .padding import MIN_PADDED, pad, padme, unpad

DATA_KEY_LEN = 32
MAX_CT = 64 * 1024  # a cell's ciphertext and tag (PROTOCOL.md, Size bounds)
MAX_PADDED = MAX_CT - 16

L_CELL_AD = "fieldsync/v1/cell-ad"
L_CELL_ID = "fieldsync/v1/cell-id"
L_KEY_COMMIT = "fieldsync/v1/key-commit"
L_DATA_KEY = "fieldsync/v1/data-key"
L_BUNDLE_SIG = "fieldsync/v1/bundle-sig"
L_BUNDLE_HASH = "fieldsync/v1/bundle-hash"
L_EPOCH_KEY = "fieldsync/v1/epoch-key"

Random = Callable[[int], bytes]

_CELL_AD_PREFIX = L_CELL_AD.encode("ascii") + b"\x00"
_CELL_ID_PREFIX = L_CELL_ID.encode("ascii") + b"\x00"


def bundle_ad_prefix(workspace: str, bundle_id: str, device_id: str, epoch: int) -> bytes:
    """The part of every cell's associated data that its bundle fixes."""
    return b"".join(
        (
            _CELL_AD_PREFIX,
            b64d(workspace, length=16, what="workspace"),
            b64d(bundle_id, length=16, what="bundle_id"),
            b64d(device_id, length=16, what="device_id"),
            struct.pack(">I", epoch),
        )
    )


_AD_CELL = struct.Struct(">I16s16sQH")  # index, record id, field tag, hlc, len(supersedes)


def cell_ad(
    prefix: bytes, index: int, record_id: str, tag: str, hlc: int, supersedes: Iterable[str]
) -> bytes:
    """Associated data of one cell: every clear field of the cell and its bundle.

    Fixed-width binary rather than JSON because it is built for every cell on the
    hot path; every field has a fixed length, so the encoding is unambiguous.
    """
    sup = [b64d(s, length=32, what="supersedes") for s in supersedes]
    rid = b64d(record_id, length=16, what="record_id")
    tag_raw = b64d(tag, length=16, what="field_tag")
    return prefix + _AD_CELL.pack(index, rid, tag_raw, hlc, len(sup)) + b"".join(sup)


def compute_cell_id(ad: bytes, ct: bytes) -> str:
    """SHA-256 over the cell's associated data and ciphertext: one id, one content."""
    return b64e(hashlib.sha256(_CELL_ID_PREFIX + ad + ct).digest())


def key_commitment(data_key: bytes) -> str:
    # ChaCha20-Poly1305 does not commit to its key; this hash does, so a swapped
    # sealed key is caught by name rather than as a mysterious tag failure.
    return b64e(hashlib.sha256(L_KEY_COMMIT.encode("ascii") + b"\x00" + data_key).digest())


def data_key_info(workspace: str, key_epoch: int, bundle_id: str) -> bytes:
    return labelled(
        L_DATA_KEY,
        {"workspace": workspace, "epoch": key_epoch, "bundle_id": bundle_id},
        trusted=True,
    )


def seal_data_key(
    data_key: bytes, epoch_public: bytes, workspace: str, key_epoch: int, bundle_id: str
) -> str:
    info = data_key_info(workspace, key_epoch, bundle_id)
    return b64e(keys.SUITE.encrypt(data_key, keys.hpke_public_key(epoch_public), info=info))


def open_data_key(
    sealed_key: str, epoch_private: bytes, workspace: str, key_epoch: int, bundle_id: str
) -> bytes:
    info = data_key_info(workspace, key_epoch, bundle_id)
    try:
        raw = b64d(sealed_key, what="sealed_key")
        data_key = keys.SUITE.decrypt(raw, keys.hpke_private_key(epoch_private), info=info)
    except (InvalidEncoding, InvalidTag, ValueError) as exc:
        raise InvalidBundle("sealed_key", "the data key does not open with this epoch key") from exc
    if len(data_key) != DATA_KEY_LEN:
        raise InvalidBundle("sealed_key", "the sealed data key has the wrong length")
    return data_key


def bundle_hash(bundle: Bundle) -> str:
    """What the device's next bundle names as `prev`: a hash of the signed header."""
    return b64e(labelled_hash(L_BUNDLE_HASH, bundle.header(), trusted=True))


_SIG_PREFIX = L_BUNDLE_SIG.encode("ascii") + b"\x00"
_HASH_PREFIX = L_BUNDLE_HASH.encode("ascii") + b"\x00"


def _nonce(index: int) -> bytes:
    # The data key is fresh for every bundle, so the cell index is a unique nonce.
    return index.to_bytes(12, "big")


def encode_value(record_type: str, field: str, value: Any) -> bytes:
    """The sealed plaintext before padding: JCS of {"field", "type", "value"}.

    Checks the value's types (no floats, no bytes). The names are checked too:
    `open_bundle` refuses a name outside NAME_RE, so sealing one would lose the value.
    """
    return _names(record_type, field)[0] + _encode_value(field, value) + b"}"


@functools.lru_cache(maxsize=512)
def _names(record_type: str, field: str) -> tuple[bytes, bytes]:
    """The plaintext's opening bytes and the field tag's name bytes, for a checked name.

    Cached: a device seals the same few dozen (type, field) pairs over and over.
    """
    if not tags.NAME_RE.match(record_type) or not tags.NAME_RE.match(field):
        raise InvalidEncoding("bad_name", f"{record_type!r}.{field!r} is not a valid name")
    # JCS orders the keys field < type < value; NAME_RE names need no escaping.
    opening = b'{"field":"%s","type":"%s","value":' % (field.encode(), record_type.encode())
    return opening, tags.tag_names(record_type, field)


_JSON_STR = json.encoder.encode_basestring  # what canonical_json uses for str (C speed)


def _encode_scalar(value: Any) -> bytes:
    """`canonical_json(value)`, with the common scalars done without the encoder."""
    kind = type(value)
    if kind is str:
        try:
            return _JSON_STR(value).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidEncoding("bad_string", "strings must be valid Unicode") from exc
    if kind is int:
        if not -(2**53) < value < 2**53:
            raise InvalidEncoding("bad_integer", "integers must fit in 53 bits for JCS")
        return str(value).encode("ascii")
    if kind is bool:
        return b"true" if value else b"false"
    if value is None:
        return b"null"
    raise InvalidEncoding("bad_type", f"a field's value is a scalar, not {kind.__name__}")


FILE_VALUE_DEPTH = 2  # a descriptor: an object holding a list of strings


def _encode_value(field: str, value: Any) -> bytes:
    """A cell's value: a scalar, or for an attachment field (`_file_<hex>`) an object
    (its descriptor, checked by `protocol.attachment`) of bounded depth."""
    if type(value) is dict and FILE_FIELD_RE.match(field):
        if _depth(value) > FILE_VALUE_DEPTH:
            raise InvalidEncoding("too_deep", "an attachment value nests at most two levels")
        return canonical_json(value)
    return _encode_scalar(value)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


_NONCES = [i.to_bytes(12, "big") for i in range(256)]


def _nonce_for(index: int) -> bytes:
    return _NONCES[index] if index < 256 else _nonce(index)


# Padmé targets of short plaintexts, looked up rather than computed for every cell.
_PAD_TARGET = [max(MIN_PADDED, padme(4 + n)) for n in range(1024)]
_ZEROS = bytes(_PAD_TARGET[-1])


def _pad(plain: bytes) -> bytes:
    """`padding.pad`, with a table for the short values nearly every cell holds."""
    n = len(plain)
    if n >= 1024:
        return pad(plain)
    return n.to_bytes(4, "big") + plain + _ZEROS[: _PAD_TARGET[n] - 4 - n]


def _b64e(data: bytes) -> str:
    # `encoding.b64e` inlined for the per-cell loops.
    return b2a_base64(data, newline=False).translate(_TO_URL).rstrip(b"=").decode("ascii")


def _seal_bundle_from_parts(
    *,
    workspace: str,
    bundle_id: str,
    device_key: Ed25519PrivateKey,
    seq: int,
    prev: str,
    epoch: int,
    data_key: bytes,
    sealed_key: str,
    tag_key: bytes,
    cells: Iterable[CellInput],
) -> Bundle:
    """Deterministic core of `seal_bundle`: same inputs, same bytes (Ed25519 is too).

    Written for speed (a volunteer seals at every save): each record id is decoded
    once per bundle, and the tag, AD and cell id are built from raw bytes.
    """
    device_id = keys.device_id_for(keys.public_bytes(device_key))
    prefix = bundle_ad_prefix(workspace, bundle_id, device_id, epoch)
    encrypt = ChaCha20Poly1305(data_key).encrypt
    tagger = tags.Tagger(tag_key)
    pack_ad = _AD_CELL.pack
    sha256 = hashlib.sha256
    record_ids: dict[str, bytes] = {}
    sealed: list[Cell] = []
    for index, ci in enumerate(cells):
        rid = record_ids.get(ci.record_id)
        if rid is None:
            rid = record_ids[ci.record_id] = b64d(ci.record_id, length=16, what="record_id")
        if not 0 <= ci.hlc <= MAX_HLC:
            raise InvalidEncoding("bad_hlc", f"cell {index}: hlc must be 0 to 2**53 - 1")
        opening, names = _names(ci.record_type, ci.field)
        plain = opening + _encode_value(ci.field, ci.value) + b"}"
        tag = tagger.tag(rid, names)
        sup = tuple(ci.supersedes)
        sup_raw = b"".join(b64d(x, length=32, what="supersedes") for x in sup) if sup else b""
        ad = prefix + pack_ad(index, rid, tag, ci.hlc, len(sup)) + sup_raw
        padded = _pad(plain)
        if len(padded) > MAX_PADDED:
            raise InvalidEncoding("too_large", f"cell {index}: the sealed value is over 64 KiB")
        ct = encrypt(_nonce_for(index), padded, ad)
        cell_id = sha256(_CELL_ID_PREFIX + ad + ct).digest()
        sealed.append(Cell(ci.record_id, _b64e(tag), _b64e(cell_id), ci.hlc, sup, _b64e(ct)))
    unsigned = Bundle(
        workspace=workspace,
        bundle_id=bundle_id,
        device_id=device_id,
        seq=seq,
        prev=prev,
        epoch=epoch,
        key_commit=key_commitment(data_key),
        cells=tuple(sealed),
        key_epoch=epoch,
        sealed_key=sealed_key,
        sig="",
    )
    sig = device_key.sign(labelled(L_BUNDLE_SIG, unsigned.header(), trusted=True))
    return dataclasses.replace(unsigned, sig=b64e(sig))


def seal_bundle(
    *,
    workspace: str,
    device_key: Ed25519PrivateKey,
    seq: int,
    prev: str,
    epoch: int,
    epoch_public: bytes,
    tag_key: bytes,
    cells: Iterable[CellInput],
    random: Random,
) -> Bundle:
    """Seal one capture. The caller cannot open it afterwards: only epoch keyholders can."""
    bundle_id = b64e(random(16))
    data_key = random(DATA_KEY_LEN)
    sealed_key = seal_data_key(data_key, epoch_public, workspace, epoch, bundle_id)
    return _seal_bundle_from_parts(
        workspace=workspace,
        bundle_id=bundle_id,
        device_key=device_key,
        seq=seq,
        prev=prev,
        epoch=epoch,
        data_key=data_key,
        sealed_key=sealed_key,
        tag_key=tag_key,
        cells=cells,
    )


def rechain(bundle: Bundle, device_key: Ed25519PrivateKey, seq: int, prev: str) -> Bundle:
    """The same capture at another place in its device's chain, signed again.

    Neither `seq` nor `prev` is in any cell's associated data, so the cells, their
    ids and the sealed key stay as they are: a device that discards an unsent
    capture closes the gap by renumbering the ones after it, without opening them.
    """
    moved = dataclasses.replace(bundle, seq=seq, prev=prev, sig="")
    sig = device_key.sign(labelled(L_BUNDLE_SIG, moved.header(), trusted=True))
    return dataclasses.replace(moved, sig=b64e(sig))


def verify_bundle(bundle: Bundle, device_public: bytes) -> str:
    """What the server can check without any key: the device id, cell ids, the signature.

    Returns the bundle's hash (`bundle_hash`), from the same canonical header the
    signature covers: a verifier needs both, and encoding the header is most of a hash.
    """
    header = _verify(bundle, device_public)[1]
    return b64e(hashlib.sha256(_HASH_PREFIX + header).digest())


def _verify(
    bundle: Bundle, device_public: bytes
) -> tuple[list[tuple[bytes, bytes, bytes, bytes]], bytes]:
    """`verify_bundle`: each cell's raw record id, raw tag, AD and ciphertext, and the
    signed header's canonical JSON."""
    if keys.device_id_for(device_public) != bundle.device_id:
        raise InvalidBundle("device_mismatch", "the bundle's device id is not its signer's key")
    checked: list[tuple[bytes, bytes, bytes, bytes]] = []
    try:
        prefix = bundle_ad_prefix(
            bundle.workspace, bundle.bundle_id, bundle.device_id, bundle.epoch
        )
        pack_ad = _AD_CELL.pack
        sha256 = hashlib.sha256
        record_ids: dict[str, bytes] = {}
        seen: set[str] = set()
        for index, cell in enumerate(bundle.cells):
            # Checked before the id: the index is in the AD, so a repeated cell would
            # otherwise always be reported as a wrong id and this code never seen.
            if cell.cell_id in seen:
                raise InvalidBundle(
                    "duplicate_cell", f"cell {index}: the same cell twice in one bundle"
                )
            seen.add(cell.cell_id)
            rid = record_ids.get(cell.record_id)
            if rid is None:
                rid = record_ids[cell.record_id] = b64d(cell.record_id, length=16, what="record_id")
            sup = cell.supersedes
            sup_raw = b"".join(b64d(x, length=32, what="supersedes") for x in sup) if sup else b""
            tag = b64d(cell.field_tag, length=16, what="field_tag")
            ad = prefix + pack_ad(index, rid, tag, cell.hlc, len(sup)) + sup_raw
            ct = b64d(cell.ct, what="ct")
            if _b64e(sha256(_CELL_ID_PREFIX + ad + ct).digest()) != cell.cell_id:
                raise InvalidBundle("cell_id", f"cell {index}: its id does not match its content")
            checked.append((rid, tag, ad, ct))
    except InvalidEncoding as exc:
        raise InvalidBundle("encoding", exc.reason) from exc
    except struct.error as exc:  # an epoch, hlc or supersedes count out of its field's range
        raise InvalidBundle("encoding", f"a clear field is out of range: {exc}") from exc
    try:
        sig = b64d(bundle.sig, length=keys.SIG_LEN, what="sig")
    except InvalidEncoding as exc:
        raise InvalidBundle("signature", "the bundle signature is malformed") from exc
    header = canonical_json(bundle.header(), trusted=True)
    if not keys.verify_signature(device_public, sig, _SIG_PREFIX + header):
        raise InvalidBundle("signature", "the bundle signature does not verify")
    return checked, header


def open_bundle(
    bundle: Bundle,
    device_public: bytes,
    epoch_private: Mapping[int, bytes],
    tag_key: bytes,
) -> list[OpenedCell]:
    """Verify, then open every cell. `epoch_private` maps epoch number to private key."""
    checked = _verify(bundle, device_public)[0]
    priv = epoch_private.get(bundle.key_epoch)
    if priv is None:
        raise InvalidBundle("unknown_epoch", f"no key for epoch {bundle.key_epoch}")
    data_key = open_data_key(
        bundle.sealed_key, priv, bundle.workspace, bundle.key_epoch, bundle.bundle_id
    )
    if not hmac.compare_digest(key_commitment(data_key), bundle.key_commit):
        raise InvalidBundle("key_commit", "the sealed data key is not the one the device signed")
    decrypt = ChaCha20Poly1305(data_key).decrypt
    tagger = tags.Tagger(tag_key)
    out: list[OpenedCell] = []
    for index, (cell, (rid, tag, ad, ct)) in enumerate(zip(bundle.cells, checked, strict=True)):
        try:
            plain = unpad(decrypt(_nonce_for(index), ct, ad))
            value = _decode_value(plain)
        except (InvalidTag, InvalidEncoding) as exc:
            raise InvalidBundle("cell_decrypt", f"cell {index} does not decrypt") from exc
        rtype, fname = value["type"], value["field"]
        if not hmac.compare_digest(tagger.tag(rid, tags.tag_names(rtype, fname)), tag):
            raise InvalidBundle("field_tag", f"cell {index}: its tag does not match its field")
        out.append(
            OpenedCell(
                record_id=cell.record_id,
                field_tag=cell.field_tag,
                cell_id=cell.cell_id,
                hlc=cell.hlc,
                supersedes=cell.supersedes,
                device_id=bundle.device_id,
                bundle_id=bundle.bundle_id,
                record_type=rtype,
                field=fname,
                value=value["value"],
            )
        )
    return out


def _decode_value(plain: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(plain.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidEncoding("bad_value", "sealed value is not JSON") from exc
    if (
        not isinstance(obj, dict)
        or set(obj) != {"type", "field", "value"}
        or not isinstance(obj["type"], str)
        or not isinstance(obj["field"], str)
        # Checks the names too, and that the sender wrote the one canonical form.
        or encode_value(obj["type"], obj["field"], obj["value"]) != plain
    ):
        raise InvalidEncoding("bad_value", "sealed value is not canonical {type, field, value}")
    return obj


def rekey_sealed_key(bundle: Bundle, old_private: bytes, new_epoch: int, new_public: bytes) -> str:
    """Re-seal a bundle's data key to a new epoch; cells and signature stay untouched."""
    data_key = open_data_key(
        bundle.sealed_key, old_private, bundle.workspace, bundle.key_epoch, bundle.bundle_id
    )
    if not hmac.compare_digest(key_commitment(data_key), bundle.key_commit):
        raise InvalidBundle("key_commit", "the sealed data key is not the one the device signed")
    return seal_data_key(data_key, new_public, bundle.workspace, new_epoch, bundle.bundle_id)


def epoch_key_info(workspace: str, epoch: int, device_id: str) -> bytes:
    return labelled(L_EPOCH_KEY, {"workspace": workspace, "epoch": epoch, "device_id": device_id})


def seal_epoch_key(
    epoch_private: bytes, coordinator_public: bytes, workspace: str, epoch: int, device_id: str
) -> str:
    info = epoch_key_info(workspace, epoch, device_id)
    return b64e(
        keys.SUITE.encrypt(epoch_private, keys.hpke_public_key(coordinator_public), info=info)
    )


def open_epoch_key(
    sealed: str, coordinator_private: bytes, workspace: str, epoch: int, device_id: str
) -> bytes:
    info = epoch_key_info(workspace, epoch, device_id)
    try:
        return keys.SUITE.decrypt(
            b64d(sealed), keys.hpke_private_key(coordinator_private), info=info
        )
    except (InvalidEncoding, InvalidTag, ValueError) as exc:
        raise InvalidBundle(
            "epoch_key", f"the epoch {epoch} key does not open for this device"
        ) from exc
