"""Helpers for the replica's own tests (not a test module): a replica in a temporary
directory and cells as a worker would hand them over after opening a bundle."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from itertools import count
from pathlib import Path
from typing import Any

from client_sync.replica import Replica
from client_sync.replica.opening import Opened

COORDINATOR = "device-coordinator"
_ids = count()


@contextlib.contextmanager
def temp_replica() -> Iterator[Replica]:
    with tempfile.TemporaryDirectory(prefix="replica-test-") as tmp:
        replica = Replica(Path(tmp) / "replica.db", os.urandom(32))
        try:
            yield replica
        finally:
            replica.close()


def tag(record_id: str, record_type: str, field: str) -> str:
    return hashlib.sha256(f"{record_id}/{record_type}/{field}".encode()).hexdigest()[:22]


def rid(n: int) -> str:
    """A record id of the right shape (22 characters of base64url)."""
    return f"{n:0>22}"


def cell(
    record_id: str,
    record_type: str,
    field: str,
    value: Any,
    hlc: int,
    device: str = "device-a",
    supersedes: tuple[str, ...] = (),
    cell_id: str | None = None,
) -> Opened:
    cid = cell_id or f"cell-{next(_ids):08d}"
    return Opened.of(
        record_id, tag(record_id, record_type, field), cid, hlc, supersedes, device,
        f"bundle-{cid}", record_type, field, value,
    )  # fmt: skip


def record(
    record_id: str, record_type: str, hlc: int, device: str = "device-a", **values: Any
) -> list[Opened]:
    return [cell(record_id, record_type, f, v, hlc, device) for f, v in values.items()]


def merge(replica: Replica, cells: list[Opened]) -> int:
    n = replica.merge_opened(cells, lambda dev: dev == COORDINATOR)
    replica.save()
    return n


class Steps:
    """SQLite virtual-machine steps run while the block is active: a count of work that
    does not depend on the machine's load."""

    def __init__(self, replica: Replica) -> None:
        self.db = replica.db
        self.n = 0

    def _tick(self) -> int:
        self.n += 1
        return 0

    def __enter__(self) -> Steps:
        self.db.set_progress_handler(self._tick, 1)
        return self

    def __exit__(self, *exc: object) -> None:
        self.db.set_progress_handler(None, 1)
