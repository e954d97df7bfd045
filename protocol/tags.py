"""Field tags and derived record ids: what names a register without saying what it is.

Pure: no I/O. A field tag is an HMAC under the workspace's tag key, so the server,
which never holds it, cannot tell which field or type a cell belongs to; a derived
record id (a device's name, a "not duplicates" judgment) is one every member computes
from other ids and the server cannot tell from a random one.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from .encoding import b64d, b64e

TAG_KEY_LEN = 32
FIELD_TAG_LEN = 16
L_FIELD_TAG = "fieldsync/v1/field-tag"
L_DEVICE_NAME = "fieldsync/v1/device-name"
L_DISTINCT_PAIR = "fieldsync/v1/distinct-pair"
NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,63}\Z")

_FIELD_TAG_PREFIX = L_FIELD_TAG.encode("ascii") + b"\x00"


def field_tag(tag_key: bytes, record_id: str, record_type: str, field: str) -> str:
    """HMAC-SHA-256 over the record id, type and field name, truncated to 16 bytes.

    The record id is inside the MAC (DESIGN.md had only `type.field`) so that two
    records share no tag: a server cannot cluster records by type from their tags.
    Type and field names match `NAME_RE`, so the zero separators are unambiguous.
    """
    rid = b64d(record_id, length=16, what="record_id")
    return b64e(Tagger(tag_key).tag(rid, tag_names(record_type, field)))


_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))


class Tagger:
    """HMAC-SHA-256 (RFC 2104) under one tag key, its padded-key states computed once.

    The same construction as the standard library's `hmac` module; done by hand
    because a fresh HMAC per cell costs three times the two hash copies this does.
    """

    __slots__ = ("inner", "outer")

    def __init__(self, tag_key: bytes) -> None:
        key = hashlib.sha256(tag_key).digest() if len(tag_key) > 64 else tag_key
        key = key.ljust(64, b"\x00")
        self.inner = hashlib.sha256(key.translate(_IPAD))
        self.inner.update(_FIELD_TAG_PREFIX)
        self.outer = hashlib.sha256(key.translate(_OPAD))

    def tag(self, record_id: bytes, names: bytes) -> bytes:
        inner = self.inner.copy()
        inner.update(record_id + names)
        outer = self.outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:FIELD_TAG_LEN]


def derived_record_id(tag_key: bytes, label: str, *ids: str) -> str:
    """A record id every member derives from other ids (16 bytes each), which the
    server, holding no tag key, cannot tell from a random one:
    `HMAC-SHA-256(tag_key, label || 0x00 || id_1 || … || id_n)[:16]`."""
    mac = hmac.new(tag_key, label.encode("ascii") + b"\x00", hashlib.sha256)
    for ident in ids:
        mac.update(b64d(ident, length=16, what="id"))
    return b64e(mac.digest()[:16])


def device_name_record(tag_key: bytes, device_id: str) -> str:
    """The record under which a device's name is sealed (type `_device`, field `name`)."""
    return derived_record_id(tag_key, L_DEVICE_NAME, device_id)


def distinct_pair_record(tag_key: bytes, a: str, b: str) -> str:
    """The record that says two records are not duplicates (type `_distinct`)."""
    first, second = sorted((a, b))
    return derived_record_id(tag_key, L_DISTINCT_PAIR, first, second)


def tag_names(record_type: str, field: str) -> bytes:
    return record_type.encode("ascii") + b"\x00" + field.encode("ascii")
