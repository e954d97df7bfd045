"""gunicorn's threaded worker, hardened against slow clients (`worker_class` in
deploy/gunicorn.conf.py).

gunicorn's `gthread` worker gives each connection to a thread as soon as it is
accepted (the thread waits up to 5 s for a first byte), then reads the request
head and body with blocking calls and no overall limit; it closes a connection
with a blocking 2 s "lingering" read on its event loop. A stranger who opens a few
connections and sends a byte every few seconds holds every thread, and with them
every worker, without ever being authenticated. This worker changes four things:

1. **Heads are read by the event loop.** A connection goes to a thread only once
   its request head (up to the blank line) has arrived. Until then it costs a
   socket and a buffer, never a thread; a head not complete within
   `FIELDSYNC_HEADER_TIMEOUT` seconds (default 10) is dropped, and one larger than
   `MAX_HEAD` is answered `431` and closed.
2. **Reads and writes have deadlines** (`server.sockets.DeadlineSocket`): the
   application bounds the body it reads (`FIELDSYNC_BODY_TIMEOUT`, `408 slow_body`);
   writes are bounded by their size.
3. **An answer given without reading the body closes the connection** (a refusal
   before authentication, a `413`): the worker neither drains a stranger's body to
   keep the connection alive nor waits for it.
4. **Connections are closed without blocking the event loop**: the write side is
   shut (the client sees the whole answer, then end of stream), and what the client
   still sends is drained by the event loop for at most `LINGER_SECONDS` or
   `LINGER_BYTES`, so the client does not get a reset before it reads the answer.

Everything else (accepting, keep-alive, the thread pool, graceful shutdown) is
gunicorn's. gunicorn's heartbeat comes from the event loop, which no request ever
blocks, so a slow client cannot get a worker killed for a timeout.
"""

from __future__ import annotations

import collections
import contextlib
import os
import selectors
import socket
import time
from functools import partial
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

from .sockets import DeadlineSocket

MAX_HEAD = 32 * 1024  # request line and headers; fieldsync's requests need about 1 KiB
LINGER_SECONDS = 2.0
LINGER_BYTES = 64 * 1024  # as gunicorn's own drain: enough for the small bodies it saves
_END_OF_HEAD = b"\r\n\r\n"
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: application/json\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s"
)
_TOO_LARGE_BODY = (
    b'{"error":{"code":"headers_too_large","message":"the request line and headers'
    b' are larger than %d bytes"}}' % MAX_HEAD
)


def header_timeout() -> float:
    return float(os.environ.get("FIELDSYNC_HEADER_TIMEOUT", "10"))


class Worker(ThreadWorker):
    """`gthread` with heads read by the event loop, deadlines, and non-blocking closes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_timeout = header_timeout()
        # Both in deadline order: every entry gets the same timeout when appended.
        self.heading: collections.deque[Any] = collections.deque()
        self.lingering: collections.deque[Any] = collections.deque()

    # --- 1. a thread only for a complete head -------------------------------------

    def enqueue_req(self, conn: Any) -> None:
        if not isinstance(conn.sock, DeadlineSocket):
            conn.sock = DeadlineSocket(conn.sock)
        if getattr(conn, "fs_head_ready", False):
            conn.fs_head_ready = False
            super().enqueue_req(conn)
            return
        # Bytes already read ahead (a pipelined request) count towards the head.
        head = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
        conn.fs_head = head
        if _END_OF_HEAD in head:
            conn.fs_head_ready = True
            self.enqueue_req(conn)
            return
        try:
            conn.sock.setblocking(False)
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_head, conn))
        except (OSError, ValueError, KeyError):  # closed under us: nothing to wait for
            self._close_now(conn)
            return
        conn.fs_deadline = time.monotonic() + self.head_timeout
        self.heading.append(conn)

    def _on_head(self, conn: Any, _fileobj: Any) -> None:
        data = _receive(conn)
        if data is None:
            return
        if not data:
            self._stop_heading(conn)
            self._close_now(conn)
            return
        conn.fs_head += data
        if _END_OF_HEAD in conn.fs_head[: MAX_HEAD + len(_END_OF_HEAD)]:
            self._stop_heading(conn)
            conn.fs_head_ready = True
            self.enqueue_req(conn)
        elif len(conn.fs_head) > MAX_HEAD:
            self._stop_heading(conn)
            conn.fs_head = b""
            with contextlib.suppress(OSError):
                conn.sock.raw.send(_TOO_LARGE % (len(_TOO_LARGE_BODY), _TOO_LARGE_BODY))
            self._linger(conn)

    def _stop_heading(self, conn: Any) -> None:
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)
        with contextlib.suppress(ValueError):
            self.heading.remove(conn)

    def handle(self, conn: Any) -> Any:
        """In a thread: hand the buffered head to gunicorn's parser, then serve as gthread."""
        head = getattr(conn, "fs_head", b"")
        conn.fs_head = b""
        sock = conn.sock
        sock.read_deadline = None
        sock.close_after = False
        if head:
            sock.setblocking(True)
            conn.init()
            conn.parser.unreader.unread(head)
        conn.data_ready = True  # gthread would otherwise wait for a first byte
        return super().handle(conn)

    # --- 3. no drain of a body the application did not read -----------------------

    def _keepalive_after(self, conn: Any, keepalive: Any) -> Any:
        if getattr(conn.sock, "close_after", False):
            return False
        return super()._keepalive_after(conn, keepalive)

    # --- 4. closing without blocking the event loop -------------------------------

    def finish_request(self, conn: Any, fs: Any) -> None:
        if not fs.cancelled() and fs.exception() is None and fs.result() is False:
            self._linger(conn)
            return
        super().finish_request(conn, fs)

    def _linger(self, conn: Any) -> None:
        sock = conn.sock
        try:
            sock.setblocking(False)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close_now(conn)
            return
        try:
            self.poller.register(sock, selectors.EVENT_READ, partial(self._on_linger, conn))
        except (OSError, ValueError, KeyError):
            self._close_now(conn)
            return
        conn.fs_deadline = time.monotonic() + LINGER_SECONDS
        conn.fs_drained = 0
        self.lingering.append(conn)

    def _on_linger(self, conn: Any, _fileobj: Any) -> None:
        data = _receive(conn)
        if data is None:
            return
        conn.fs_drained += len(data)
        if not data or conn.fs_drained >= LINGER_BYTES:
            self._stop_lingering(conn)
            self._close_now(conn)

    def _stop_lingering(self, conn: Any) -> None:
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)
        with contextlib.suppress(ValueError):
            self.lingering.remove(conn)

    def _close_now(self, conn: Any) -> None:
        self.nr_conns -= 1
        with contextlib.suppress(OSError):
            conn.sock.close()

    def murder_pending(self) -> None:
        """Each turn of the event loop: also drop heads and lingering closes past their time
        (all of them once the worker is stopping)."""
        super().murder_pending()
        now = time.monotonic()
        queues = ((self.heading, self._stop_heading), (self.lingering, self._stop_lingering))
        for queue, stop in queues:
            while queue and (not self.alive or queue[0].fs_deadline <= now):
                conn = queue[0]
                stop(conn)
                self._close_now(conn)


def _receive(conn: Any) -> bytes | None:
    """What the socket holds now: None when nothing yet, b"" when closed or broken."""
    try:
        data: bytes = conn.sock.raw.recv(65536)
    except BlockingIOError:
        return None
    except OSError:
        return b""
    return data
