"""Helpers for the client's end-to-end tests (not a test module).

Every test drives the real `fieldsync` command line, in subprocesses with their own
FIELDSYNC_HOME, against a real `fieldsync-server run` on a free loopback port.
`FIELDSYNC_KDF_FAST=1` (test-only) makes each profile's Argon2id trivial so that
hundreds of commands run in seconds; `FIELDSYNC_RETRIES=2` keeps failure tests short.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from client_sync.demo import Device, Result, ServerProcess, start_server

FAST_ENV = {"FIELDSYNC_KDF_FAST": "1", "FIELDSYNC_RETRIES": "2"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("server")
    (root / "data").mkdir()
    proc = start_server(root / "data")
    try:
        yield proc
    finally:
        proc.stop()


@dataclass
class Team:
    """Devices of one fresh workspace on a shared server."""

    server_url: str
    code: str
    root: Path
    ids: dict[str, str] = field(default_factory=dict)

    def device(self, name: str, passphrase: str = "pw", **env: str) -> Device:
        return Device(name, self.root / name, passphrase, env={**FAST_ENV, **env})

    def found(self, name: str = "admin", workspace: str = "Test pickets") -> Device:
        admin = self.device(name)
        admin.run(
            "init", "--server", self.server_url, "--workspace", workspace, "--code", self.code
        )
        self.ids[name] = status(admin)["device_id"]
        return admin

    def enroll(self, admin: Device, name: str, role: str = "volunteer") -> Device:
        dev = self.device(name)
        invite = admin.run("invite", "--role", role).last
        self.ids[name] = dev.run("join", invite).last
        if role == "coordinator":
            admin.run("approve", self.ids[name])
        return dev


def new_team(server: ServerProcess, root: Path, url: str | None = None) -> Team:
    return Team(url or server.url, server.workspace_code(), root)


def as_json(result: Result) -> Any:
    return json.loads(result.out)


def status(dev: Device) -> dict[str, Any]:
    return dict(as_json(dev.run("status", "--format", "json")))


def records(dev: Device, *args: str) -> list[dict[str, Any]]:
    return list(as_json(dev.run("records", "--format", "json", *args)))


def sets(**values: Any) -> list[str]:
    out: list[str] = []
    for name, value in values.items():
        out += ["--set", f"{name}={value}"]
    return out


def assert_one_line_error(result: Result, code: int, *fragments: str) -> None:
    """An expected failure: the exit code, and one `error:` line on stderr, no traceback."""
    assert result.rc == code, (result.rc, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: "), lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


Rewrite = Callable[[int, Any], tuple[int, Any]]


@dataclass
class _Rule:
    method: str
    path: re.Pattern[str]
    rewrite: Rewrite | None
    times: int | None


class Proxy:
    """A loopback proxy in front of the server that can cut answers or rewrite them.

    Requests are forwarded unchanged, the Host header included, so the RFC 9421
    `@target-uri` the client signed is the one the server checks. A cut forwards
    the request (the server commits) and then closes the connection unanswered:
    the worst moment for a client to lose its network.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.rules: list[_Rule] = []
        self.seen: list[tuple[str, str]] = []
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def cut(self, method: str, path: str, times: int | None = 1) -> None:
        self.rules.append(_Rule(method, re.compile(path), None, times))

    def lie(self, method: str, path: str, rewrite: Rewrite, times: int | None = None) -> None:
        self.rules.append(_Rule(method, re.compile(path), rewrite, times))

    def _rule(self, method: str, path: str) -> _Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.method == method and rule.path.search(path):
                    if rule.times is not None:
                        if rule.times <= 0:
                            continue
                        rule.times -= 1
                    return rule
        return None

    def start(self) -> Proxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.seen.append((self.command, self.path.split("?")[0]))
                conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                status, payload = resp.status, resp.read()
                conn.close()
                rule = proxy._rule(self.command, self.path.split("?")[0])
                if rule is not None and rule.rewrite is None:
                    self.close_connection = True
                    self.connection.close()
                    return
                if rule is not None and rule.rewrite is not None:
                    status, doc = rule.rewrite(status, json.loads(payload))
                    payload = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = _forward
            do_POST = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
