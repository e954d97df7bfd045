"""Verify and open bundles, on every core when there are many.

`open_bundle` (an Ed25519 verify, an HPKE open, an AEAD per cell) is most of a first
pull's work and does not release the GIL (two threads open 1.1 × what one does on
this machine; two processes 1.9 ×: docs/BENCHMARKS.md), so a large page is opened
in a pool of processes, started once per pull. Each worker gets the keys it needs
(the devices' public keys, the epoch private keys, the tag key) when the pool starts
and returns plain tuples; the merge stays in the one process that writes the
replica, in the order the server gave.

What a worker returns for a cell is an `Opened`: the cell's clear fields, its
decrypted type, field and value (as JSON text) and the value's sort key, so the
writer does no decoding of its own; and for each bundle the hash of its header (what
its device's next bundle names as `prev`), which the writer keeps for the chain.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Sequence
from typing import Any, NamedTuple

from protocol import crypto, keylog
from protocol.errors import InvalidBundle
from protocol.model import Bundle, Cell

from .values import problem, sort_key

# Below this many bundles a page is opened in this process: a pool is not worth starting.
POOL_THRESHOLD = 64
CHUNK = 16  # bundles per task sent to a worker


class Opened(NamedTuple):
    record_id: str
    field_tag: str
    cell_id: str
    hlc: int
    supersedes: tuple[str, ...]
    device_id: str
    bundle_id: str
    record_type: str
    field: str
    value: str  # JSON text
    sort_key: str
    problem: str | None  # why the record schema refuses the value (None: it fits)

    @classmethod
    def of(
        cls,
        record_id: str,
        field_tag: str,
        cell_id: str,
        hlc: int,
        supersedes: tuple[str, ...],
        device_id: str,
        bundle_id: str,
        record_type: str,
        field: str,
        value: Any,
    ) -> Opened:
        """With what the read layer derives from the value, worked out here (in a worker
        when the pool opens the bundle) rather than in the process that writes."""
        return cls(
            record_id, field_tag, cell_id, hlc, supersedes, device_id, bundle_id, record_type,
            field, json.dumps(value, ensure_ascii=False), sort_key(value),
            problem(record_type, field, value),
        )  # fmt: skip


Result = list[Opened] | tuple[str, str]  # the cells, or (code, reason) of the refusal


class Keys(NamedTuple):
    workspace: str
    devices: dict[str, bytes]  # device id -> Ed25519 public key
    epochs: frozenset[int]
    epoch_keys: dict[int, bytes]
    tag_key: bytes

    @classmethod
    def of(cls, log: keylog.KeyLogState, epoch_keys: dict[int, bytes], tag_key: bytes) -> Keys:
        return cls(
            log.workspace,
            {dev_id: dev.sign_pub for dev_id, dev in log.devices.items()},
            frozenset(log.epochs),
            dict(epoch_keys),
            tag_key,
        )


def open_one(bundle: Bundle, keys: Keys) -> Result:
    """Verify and open one bundle; a refusal is returned as (code, reason), not raised."""
    public = keys.devices.get(bundle.device_id)
    try:
        if public is None:
            raise InvalidBundle("unknown_device", "its device is not in the key log")
        if bundle.workspace != keys.workspace:
            raise InvalidBundle("wrong_workspace", "it names another workspace")
        if bundle.epoch not in keys.epochs:
            raise InvalidBundle("unknown_epoch", f"epoch {bundle.epoch} is not in the key log")
        try:
            cells = crypto.open_bundle(bundle, public, keys.epoch_keys, keys.tag_key)
        except (TypeError, ValueError, AttributeError) as exc:
            # Wrong JSON types from the feed: not a bundle any device signed.
            raise InvalidBundle("malformed", f"a field has the wrong type ({exc})") from exc
    except InvalidBundle as exc:
        return (exc.code, exc.reason)
    return [
        Opened.of(
            c.record_id,
            c.field_tag,
            c.cell_id,
            c.hlc,
            tuple(c.supersedes),
            c.device_id,
            c.bundle_id,
            c.record_type,
            c.field,
            c.value,
        )
        for c in cells
    ]


def hash_or_blank(bundle: Bundle) -> str:
    """The bundle's hash (`crypto.bundle_hash`); "" when its header is malformed."""
    try:
        return crypto.bundle_hash(bundle)
    except (TypeError, ValueError):
        return ""


# --- the pool -------------------------------------------------------------------------

_KEYS: Keys | None = None  # a worker's keys, set when it starts


def _start_worker(keys: Keys) -> None:
    global _KEYS
    _KEYS = keys


def _open_chunk(packed: list[tuple[Any, ...]]) -> list[tuple[Result, str]]:
    assert _KEYS is not None
    out = []
    for p in packed:
        bundle = _unpack(p)
        out.append((open_one(bundle, _KEYS), hash_or_blank(bundle)))
    return out


def _pack(b: Bundle) -> tuple[Any, ...]:
    """A bundle as plain tuples for the pipe to a worker: pickling the frozen dataclasses
    themselves cost ~100 µs a bundle, more than opening it on the other side."""
    cells = tuple((c.record_id, c.field_tag, c.cell_id, c.hlc, c.supersedes, c.ct) for c in b.cells)
    return (b.workspace, b.bundle_id, b.device_id, b.seq, b.prev, b.epoch, b.key_commit, cells,
            b.key_epoch, b.sealed_key, b.sig)  # fmt: skip


def _unpack(p: tuple[Any, ...]) -> Bundle:
    cells = tuple(Cell(*c) for c in p[7])
    return Bundle(p[0], p[1], p[2], p[3], p[4], p[5], p[6], cells, p[8], p[9], p[10])


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class Pending:
    """Bundles being opened; `results()` waits for them, in the order given, and
    `hashes()` gives their hashes (worked out beside the opening, off the writer)."""

    def __init__(self, bundles: Sequence[Bundle], job: Any = None, done: Any = None) -> None:
        self.bundles = list(bundles)
        self._job = job
        self._done = done
        self._hashes: list[str] | None = None

    def _wait(self) -> None:
        if self._done is None:
            pairs = [r for chunk in self._job.get() for r in chunk]
            self._done = [r for r, _ in pairs]
            self._hashes = [h for _, h in pairs]

    def results(self) -> list[Result]:
        self._wait()
        return list(self._done)

    def hashes(self) -> list[str]:
        self._wait()
        if self._hashes is None:
            self._hashes = [hash_or_blank(b) for b in self.bundles]
        return list(self._hashes)


class Opener:
    """Opens pages of bundles: in this process, or in a pool of `workers` processes
    (started on the first large page, stopped by `close`)."""

    def __init__(self, keys: Keys, workers: int | None = None) -> None:
        self.keys = keys
        self.workers = cores() if workers is None else workers
        self._pool: Any = None

    def start(self, bundles: Sequence[Bundle]) -> Pending:
        """Begin opening `bundles`; large pages go to the pool and run while the caller
        does other work (fetching the next page, merging the last)."""
        if self.workers < 2 or len(bundles) < POOL_THRESHOLD:
            return Pending(bundles, done=[open_one(b, self.keys) for b in bundles])
        if self._pool is None:
            self._pool = _context().Pool(self.workers, _start_worker, (self.keys,))
        packed = [_pack(b) for b in bundles]
        chunks = [packed[i : i + CHUNK] for i in range(0, len(packed), CHUNK)]
        return Pending(bundles, job=self._pool.map_async(_open_chunk, chunks))

    def update(self, keys: Keys) -> None:
        """New keys (a rotation seen mid-pull): the next pool starts with them."""
        self.close()
        self.keys = keys

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def __enter__(self) -> Opener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _context() -> Any:
    # fork: the workers inherit the keys and the imported core without a new
    # interpreter start; elsewhere the platform's default.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else None)
