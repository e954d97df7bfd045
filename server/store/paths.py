"""Where each database lives under the data directory."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from protocol.attachment import CHUNK_ID_RE

# A workspace id is 16 bytes in canonical unpadded base64url: the last character
# carries 2 data bits and 4 zero bits. Checked before it is ever part of a path.
_WS_RE = re.compile(r"^[A-Za-z0-9_-]{21}[AQgw]\Z")


def valid_workspace_id(ws: str) -> bool:
    return bool(_WS_RE.match(ws))


def valid_chunk_id(chunk_id: str) -> bool:
    return bool(CHUNK_ID_RE.match(chunk_id))


@dataclass(frozen=True)
class Paths:
    data_dir: Path

    @property
    def server_db(self) -> Path:
        return self.data_dir / "server.sqlite"

    @property
    def workspaces(self) -> Path:
        return self.data_dir / "workspaces"

    def workspace_db(self, ws: str) -> Path:
        if not valid_workspace_id(ws):
            raise ValueError("not a workspace id")
        return self.workspaces / f"{ws}.sqlite"

    @property
    def nonces(self) -> Path:
        return self.data_dir / "nonces"

    def nonce_db(self, ws: str) -> Path:
        """A workspace's request nonces: their own file, so that recording one never
        waits for (or holds) the workspace's write lock."""
        if not valid_workspace_id(ws):
            raise ValueError("not a workspace id")
        return self.nonces / f"{ws}.sqlite"

    @property
    def chunks(self) -> Path:
        return self.data_dir / "chunks"

    def chunk_dir(self, ws: str) -> Path:
        """A workspace's attachment chunks: files, never rows of its database."""
        if not valid_workspace_id(ws):
            raise ValueError("not a workspace id")
        return self.chunks / ws

    def chunk_path(self, ws: str, chunk_id: str) -> Path:
        """`chunks/<ws>/<first two characters>/<chunk id>`: the two characters spread
        a workspace's chunks over 4,096 directories. Ids are checked before they are
        ever part of a path."""
        if not valid_chunk_id(chunk_id):
            raise ValueError("not a chunk id")
        return self.chunk_dir(ws) / chunk_id[:2] / chunk_id

    @property
    def slots(self) -> Path:
        return self.data_dir / "slots"

    def ensure(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.workspaces.mkdir(exist_ok=True, mode=0o700)
        self.nonces.mkdir(exist_ok=True, mode=0o700)
        self.slots.mkdir(exist_ok=True, mode=0o700)
        self.chunks.mkdir(exist_ok=True, mode=0o700)

    def all_databases(self) -> list[Path]:
        """Every database file worth a backup: the server's and each workspace's (not
        the nonce files, which matter for a few minutes only)."""
        found = [self.server_db] if self.server_db.exists() else []
        if self.workspaces.is_dir():
            found += sorted(self.workspaces.glob("*.sqlite"))
        return found

    def nonce_databases(self) -> list[Path]:
        return sorted(self.nonces.glob("*.sqlite")) if self.nonces.is_dir() else []


def fsync(path: os.PathLike[str]) -> None:
    """Make what was written at `path` durable: a file's bytes, or a directory's entries
    (files renamed or removed in it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
