"""A client socket whose reads stop at a deadline and whose writes are bounded in time.

gunicorn's threaded worker reads a request body and writes an answer with blocking
socket calls in a worker thread, with no limit on how long they take: a client
that sends one byte every few seconds, or reads its answer as slowly, holds that
thread for as long as it likes. `server.worker.Worker` wraps every client socket in
a `DeadlineSocket`; the application finds it as `environ["gunicorn.socket"]` and
sets `read_deadline` while it reads a body (`server.body`), and every write gets
`SEND_BASE` seconds plus one second per `SEND_RATE` bytes.

A per-call socket timeout is not enough on its own: a body is read in many
`recv` calls, each of which a trickling client can satisfy just in time, so the
remaining time to the deadline is set before every call.

No gunicorn import here: the application imports this module under any server.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any, TypeVar

SEND_BASE = 10.0  # seconds any write may take
SEND_RATE = 32 * 1024  # ... plus one second per this many bytes

T = TypeVar("T")


class DeadlineSocket:
    """Wraps a socket: `read_deadline` (a `time.monotonic()` value, or None) bounds
    every read; writes are bounded by their size; `close_after` asks the worker to
    close the connection after this answer (its body was not read)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._timeout: float | None = sock.gettimeout()
        self.read_deadline: float | None = None
        self.close_after = False

    @property
    def raw(self) -> socket.socket:
        return self._sock

    # --- what gunicorn sets and asks ----------------------------------------------

    def settimeout(self, value: float | None) -> None:
        self._sock.settimeout(value)
        self._timeout = value

    def gettimeout(self) -> float | None:
        return self._timeout

    def setblocking(self, flag: bool) -> None:
        self._sock.setblocking(flag)
        self._timeout = None if flag else 0.0

    def fileno(self) -> int:
        return self._sock.fileno()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    # --- bounded reads and writes --------------------------------------------------

    def _bounded(self, limit: float | None, call: Callable[[], T]) -> T:
        caller = self._timeout
        if limit is None or caller == 0.0:  # no bound, or a non-blocking socket
            return call()
        timeout = limit if caller is None else min(limit, caller)
        if timeout <= 0:
            raise TimeoutError("the deadline has passed")
        self._sock.settimeout(timeout)
        try:
            return call()
        finally:
            self._sock.settimeout(caller)

    def _read_limit(self) -> float | None:
        if self.read_deadline is None:
            return None
        return self.read_deadline - time.monotonic()

    def recv(self, size: int, flags: int = 0) -> bytes:
        return self._bounded(self._read_limit(), lambda: self._sock.recv(size, flags))

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        return self._bounded(
            self._read_limit(), lambda: self._sock.recv_into(buffer, nbytes, flags)
        )

    def send(self, data: Any, flags: int = 0) -> int:
        limit = SEND_BASE + len(data) / SEND_RATE
        return self._bounded(limit, lambda: self._sock.send(data, flags))

    def sendall(self, data: Any, flags: int = 0) -> None:
        # Since Python 3.5 a timeout bounds the whole sendall, not each send in it.
        limit = SEND_BASE + len(data) / SEND_RATE
        self._bounded(limit, lambda: self._sock.sendall(data, flags))
