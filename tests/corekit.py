"""Deterministic keys and builders for the pure-core tests (not a test module).

Every secret is SHAKE-256 of a label, so a failing test names the same keys on
every run. Names and places are invented.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import crypto, hlc, keys
from protocol.encoding import b64e
from protocol.model import ZERO_HASH, Bundle, CellInput

T0 = 1_795_600_000  # unix seconds, 2026-11-25
HLC0 = hlc.pack(T0 * 1000, 0)


def seed(label: str, n: int = 32) -> bytes:
    return hashlib.shake_256(b"fieldsync tests/" + label.encode()).digest(n)


def sign_key(label: str) -> Ed25519PrivateKey:
    return keys.signing_key(seed(label))


def hpke_pair(label: str) -> keys.HpkeKeyPair:
    return keys.HpkeKeyPair.from_seed(seed(label, keys.HPKE_PRIV_LEN))


def device_id(key: Ed25519PrivateKey) -> str:
    return keys.device_id_for(keys.public_bytes(key))


def new_id(label: str) -> str:
    return b64e(seed(label, 16))


class Counter:
    """A `random` callable for seal_bundle that is reproducible: labelled, counted bytes."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.n = 0

    def __call__(self, size: int) -> bytes:
        self.n += 1
        return seed(f"{self.label}/{self.n}", size)


WORKSPACE = new_id("workspace")
TAG_KEY = seed("tag-key")
EPOCH1 = hpke_pair("epoch-1")
VOLUNTEER = sign_key("volunteer")


def seal(
    cells: Iterable[CellInput],
    *,
    seq: int = 1,
    prev: str = ZERO_HASH,
    device: Ed25519PrivateKey = VOLUNTEER,
    label: str = "bundle",
    **kw: Any,
) -> Bundle:
    return crypto.seal_bundle(
        workspace=kw.get("workspace", WORKSPACE),
        device_key=device,
        seq=seq,
        prev=prev,
        epoch=kw.get("epoch", 1),
        epoch_public=kw.get("epoch_public", EPOCH1.public_bytes),
        tag_key=kw.get("tag_key", TAG_KEY),
        cells=cells,
        random=Counter(label),
    )
