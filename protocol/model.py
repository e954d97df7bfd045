"""The wire-native data types of a bundle and its cells.

Pure: no I/O, no clock, no randomness.

Fields keep their wire spelling (base64url strings, integers) so that hashing and
signing, which work on canonical JSON of exactly these strings, never re-encode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ZERO_HASH = "A" * 43  # b64e(bytes(32)): the `prev` of a device's first bundle


@dataclass(frozen=True, slots=True)
class Cell:
    record_id: str  # 16 bytes, b64url
    field_tag: str  # 16 bytes, b64url
    cell_id: str  # 32 bytes, b64url
    hlc: int
    supersedes: tuple[str, ...]
    ct: str  # AEAD ciphertext, b64url

    def to_wire(self) -> dict[str, Any]:
        return {
            "record_id": self.record_id,
            "field_tag": self.field_tag,
            "cell_id": self.cell_id,
            "hlc": self.hlc,
            "supersedes": list(self.supersedes),
            "ct": self.ct,
        }


@dataclass(frozen=True, slots=True)
class Bundle:
    workspace: str
    bundle_id: str
    device_id: str
    seq: int
    prev: str
    epoch: int  # the epoch the bundle was sealed in; signed, never changes
    key_commit: str
    cells: tuple[Cell, ...]
    key_epoch: int  # the epoch `sealed_key` is sealed to now; changes on re-key
    sealed_key: str
    sig: str

    def header(self) -> dict[str, Any]:
        """The signed header: everything but the sealed key, which a re-key swaps."""
        return {
            "v": 1,
            "workspace": self.workspace,
            "bundle_id": self.bundle_id,
            "device_id": self.device_id,
            "seq": self.seq,
            "prev": self.prev,
            "epoch": self.epoch,
            "key_commit": self.key_commit,
            "cells": [c.cell_id for c in self.cells],
        }

    def to_wire(self) -> dict[str, Any]:
        return {
            "workspace": self.workspace,
            "bundle_id": self.bundle_id,
            "device_id": self.device_id,
            "seq": self.seq,
            "prev": self.prev,
            "epoch": self.epoch,
            "key_commit": self.key_commit,
            "key_epoch": self.key_epoch,
            "sealed_key": self.sealed_key,
            "sig": self.sig,
            "cells": [c.to_wire() for c in self.cells],
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Bundle:
        """Build from a dict already validated by `schemas.wire.BundleSchema`."""
        return cls(
            workspace=data["workspace"],
            bundle_id=data["bundle_id"],
            device_id=data["device_id"],
            seq=data["seq"],
            prev=data["prev"],
            epoch=data["epoch"],
            key_commit=data["key_commit"],
            key_epoch=data["key_epoch"],
            sealed_key=data["sealed_key"],
            sig=data["sig"],
            cells=tuple(
                Cell(
                    record_id=c["record_id"],
                    field_tag=c["field_tag"],
                    cell_id=c["cell_id"],
                    hlc=c["hlc"],
                    supersedes=tuple(c["supersedes"]),
                    ct=c["ct"],
                )
                for c in data["cells"]
            ),
        )


@dataclass(frozen=True, slots=True)
class CellInput:
    """One field write before sealing: what a volunteer typed, plus where it goes."""

    record_id: str
    record_type: str
    field: str
    value: Any  # str | int | bool | None, JSON-encodable
    hlc: int
    supersedes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OpenedCell:
    """A cell after a keyholder opened and checked it."""

    record_id: str
    field_tag: str
    cell_id: str
    hlc: int
    supersedes: tuple[str, ...]
    device_id: str
    bundle_id: str
    record_type: str
    field: str
    value: Any
