"""Raw-socket clients for a server on loopback: slow heads, slow bodies, answers as bytes.

    with Trickle(port, head, first=b"{", rest=b" " * 999, every=0.5) as t:
        ...                       # the connection sends one byte of `rest` per `every` s
    t.answer                      # what the server sent back (b"" if it only closed)

Used by tests/test_server_slow.py and bench/flood.py. Every socket has a timeout and
every thread stops when its connection is answered or closed.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import urllib.parse
from types import TracebackType
from typing import Any

from serverkit import Kit, Member


def send_raw(port: int, data: bytes, timeout: float = 30.0) -> bytes:
    """Send `data` on a new connection and return everything the server sends back."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(data)
        return read_all(s)


def read_all(s: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            part = s.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not part:
            break
        out += part
    return out


def status_of(answer: bytes) -> int | None:
    if not answer.startswith(b"HTTP/1.1 "):
        return None
    return int(answer[9:12])


def json_of(answer: bytes) -> Any:
    _, _, body = answer.partition(b"\r\n\r\n")
    return json.loads(body)


def signed_head(
    kit: Kit,
    member: Member,
    method: str,
    path: str,
    body: bytes,
    *,
    chunked: bool = False,
    nonce: str | None = None,
) -> bytes:
    """A request head signed for `body` (which the caller then sends, as it likes)."""
    headers = kit.signed_headers(method, path, member, body, nonce=nonce)
    host = urllib.parse.urlsplit(kit.transport.base).netloc  # part of the signed URL
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunked(body: bytes, size: int = 4096) -> bytes:
    parts = [b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size])
             for i in range(0, len(body), size)]  # fmt: skip
    return b"".join(parts) + b"0\r\n\r\n"


class Trickle:
    """One connection that sends `first` at once, then `rest` one byte every `every` s,
    until the server answers or closes; `answer` holds what came back."""

    def __init__(
        self, port: int, first: bytes, rest: bytes, every: float = 0.5, timeout: float = 120.0
    ) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.first = first
        self.rest = rest
        self.every = every
        self.answer = b""
        self.done = threading.Event()  # the server answered or closed the connection
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.sock.sendall(self.first)
            reader = threading.Thread(target=self._read, daemon=True)
            reader.start()
            for i in range(len(self.rest)):
                if self._stop.wait(self.every) or self.done.is_set():
                    break
                self.sock.sendall(self.rest[i : i + 1])
            reader.join()
        except OSError:
            self.done.set()

    def _read(self) -> None:
        self.answer = read_all(self.sock)
        self.done.set()

    def __enter__(self) -> Trickle:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=30)
        self.sock.close()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def wait_all(trickles: list[Trickle], timeout: float = 120.0) -> None:
    """Wait until every connection was answered or closed (bounded: a safety net)."""
    deadline = time.monotonic() + timeout
    for t in trickles:
        t.done.wait(max(0.0, deadline - time.monotonic()))
