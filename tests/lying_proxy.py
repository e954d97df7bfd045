"""A proxy between a client and the real server that can lie: the coerced-operator fixture.

It forwards every request unchanged (the Host header included, so the client's
RFC 9421 `@target-uri` still matches what the server sees) and lets a test rewrite
the JSON the server answers, or cut a connection, per route. Loopback only.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Rewrite = Callable[[int, Any], tuple[int, Any]]


@dataclass
class Rule:
    method: str
    path: re.Pattern[str]
    rewrite: Rewrite | None = None
    cut: bool = False  # close the connection without answering, after forwarding
    times: int | None = None  # apply this many times, then stop (None: always)


@dataclass
class LyingProxy:
    upstream_host: str
    upstream_port: int
    rules: list[Rule] = field(default_factory=list)
    seen: list[tuple[str, str]] = field(default_factory=list)
    budget: int | None = None  # request body bytes to pass before the line goes dead
    passed: int = 0  # request body bytes forwarded so far
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def lie(self, method: str, path: str, rewrite: Rewrite, times: int | None = None) -> None:
        """Rewrite the JSON answer of requests matching `method` and the `path` regex."""
        self.rules.append(Rule(method, re.compile(path), rewrite=rewrite, times=times))

    def cut(self, method: str, path: str, times: int | None = 1) -> None:
        """Forward matching requests, then drop the connection before the answer."""
        self.rules.append(Rule(method, re.compile(path), cut=True, times=times))

    def cut_after(self, nbytes: int) -> None:
        """A connection that dies after `nbytes` more bytes of request bodies: the
        request that crosses the line is cut mid-body (never forwarded), and every
        request after it is cut before its body, until `clear()`."""
        with self._lock:
            self.budget = self.passed + nbytes

    def clear(self) -> None:
        self.rules.clear()
        self.budget = None

    def _rule_for(self, method: str, path: str) -> Rule | None:
        for rule in self.rules:
            if rule.method == method and rule.path.search(path):
                if rule.times is not None:
                    if rule.times <= 0:
                        continue
                    rule.times -= 1
                return rule
        return None

    def start(self) -> LyingProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return  # quiet: tests read their own assertions, not access logs

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                with proxy._lock:
                    room = None if proxy.budget is None else proxy.budget - proxy.passed
                    if room is not None and length > room:
                        proxy.passed += max(room, 0)
                    else:
                        proxy.passed += length
                if room is not None and length > room:
                    # The line dies mid-upload: part of the body, then nothing.
                    if room > 0:
                        self.rfile.read(room)
                    self.close_connection = True
                    self.connection.close()
                    return
                body = self.rfile.read(length) if length else b""
                proxy.seen.append((self.command, self.path))
                conn = http.client.HTTPConnection(
                    proxy.upstream_host, proxy.upstream_port, timeout=30
                )
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    status, payload = resp.status, resp.read()
                except (OSError, http.client.HTTPException):
                    # The server died mid-request (a kill -9): so does this answer.
                    self.close_connection = True
                    return
                finally:
                    conn.close()
                resp_headers = [
                    (k, v)
                    for k, v in resp.getheaders()
                    if k.lower()
                    not in ("content-length", "connection", "transfer-encoding", "server", "date")
                ]
                rule = proxy._rule_for(self.command, self.path.split("?")[0])
                if rule is not None and rule.cut:
                    self.close_connection = True
                    self.connection.close()
                    return
                if rule is not None and rule.rewrite is not None:
                    binary = resp.getheader("Content-Type", "").startswith("application/octet")
                    status, doc = rule.rewrite(status, payload if binary else json.loads(payload))
                    if isinstance(doc, bytes):  # a chunk's bytes, rewritten as bytes
                        payload = doc
                    else:
                        payload = json.dumps(doc).encode()
                self.send_response(status)
                for k, v in resp_headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = _forward
            do_POST = _forward
            do_PUT = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
