"""Deterministic keys and builders for the pure-core tests (not a test module).

Every secret is SHAKE-256 of a label, so a failing test names the same keys on
every run. Names and places are invented.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import crypto, hlc, keylog, keys, roster
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


class Member:
    """A device in a test workspace: its signing key and, for keyholders, an HPKE pair."""

    def __init__(self, label: str, keyholder: bool) -> None:
        self.label = label
        self.key = sign_key(label)
        self.id = device_id(self.key)
        self.hpke = hpke_pair(label + "/hpke") if keyholder else None

    @property
    def hpke_public(self) -> bytes | None:
        return None if self.hpke is None else self.hpke.public_bytes

    @property
    def hpke_private(self) -> bytes:
        assert self.hpke is not None
        return self.hpke.private_bytes


class Log:
    """A key log built event by event through `protocol.roster`, verified as it grows.

    `states[i]` is the state after `events[i]`; `at(i)` the time of event i.
    """

    WEEK = 7 * 24 * 3600

    def __init__(self, founder: Member, workspace: str = WORKSPACE) -> None:
        self.epochs = {1: hpke_pair("epoch-1")}
        self.founder = founder
        assert founder.hpke is not None
        genesis = roster.genesis(
            workspace=workspace,
            admin_key=founder.key,
            admin_hpke=founder.hpke,
            epoch=self.epochs[1],
            at=self.at(0),
        )
        self.events: list[dict[str, Any]] = [genesis]
        self.states = [keylog.genesis_state(genesis)]

    @staticmethod
    def at(i: int) -> int:
        return T0 + 60 * i

    @property
    def state(self) -> Any:
        return self.states[-1]

    @property
    def root(self) -> str:
        return str(self.states[0].root)

    def add(self, event: dict[str, Any]) -> dict[str, Any]:
        self.states.append(keylog.apply_event(self.state, event))
        self.events.append(event)
        return event

    def join(self, admin: Member, member: Member, role: str) -> Member:
        """Invite, enroll and (for a keyholder) approve `member`."""
        invite_key = sign_key("invite/" + member.label)
        n = len(self.events)
        self.add(
            roster.invite(
                self.state, admin.key, invite_key, role, self.at(n) + self.WEEK, self.at(n)
            )
        )
        self.add(
            roster.enroll(
                self.state, invite_key, member.key, role, member.hpke_public, self.at(n + 1)
            )
        )
        if member.hpke is not None:
            self.approve(admin, member)
        return member

    def approve(self, admin: Member, member: Member) -> None:
        privs = {n: p.private_bytes for n, p in self.epochs.items()}
        self.add(roster.approve(self.state, admin.key, member.id, privs, self.at(len(self.events))))

    def revoke(self, admin: Member, member: Member) -> None:
        self.add(roster.revoke(self.state, admin.key, member.id, self.at(len(self.events))))

    def rotate(self, admin: Member) -> None:
        n = max(self.epochs) + 1
        self.epochs[n] = hpke_pair(f"epoch-{n}")
        self.add(roster.rotate(self.state, admin.key, self.epochs[n], self.at(len(self.events))))
