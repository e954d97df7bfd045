"""At most a few requests in flight per key, counted across every gunicorn worker.

One stolen key must not occupy every worker thread: each signed request, once
authenticated, takes one of `limit` slots of its key, or is refused `429 busy`.
A slot is an exclusive `flock` on a small file (`slots/<ws>/<key id>.<n>`): flock
locks belong to an open file, so they exclude threads of one process as well as
processes, and the kernel releases them when a worker dies, so a crash can never
leave a slot taken.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from pathlib import Path

_KEY_ID = re.compile(r"^[A-Za-z0-9_-]{22}\Z")


class Slot:
    """One taken slot; `release()` frees it (idempotent)."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def acquire(slots_dir: Path, ws: str, key_id: str, limit: int) -> Slot | None:
    """Take a free slot of `key_id` in workspace `ws`, or None when all `limit` are taken.

    `ws` and `key_id` are checked ids (a verified signer), never raw request text;
    they are matched again here because they become file names.
    """
    if not (_KEY_ID.match(ws) and _KEY_ID.match(key_id)):
        raise ValueError("not an id")
    folder = slots_dir / ws
    folder.mkdir(mode=0o700, exist_ok=True)
    for n in range(limit):
        fd = os.open(folder / f"{key_id}.{n}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        except BaseException:
            os.close(fd)
            raise
        return Slot(fd)
    return None
