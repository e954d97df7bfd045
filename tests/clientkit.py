"""Helpers for the client's end-to-end tests (not a test module).

Every test drives the real `fieldsync` command line, in subprocesses with their own
FIELDSYNC_HOME, against a real `fieldsync-server run` on a free loopback port.
`FIELDSYNC_KDF_FAST=1` (test-only) makes each profile's Argon2id trivial so that
hundreds of commands run in seconds; `FIELDSYNC_RETRIES=2` keeps failure tests short.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from logscan import register_marker
from lying_proxy import LyingProxy

from client_sync.demo import Device, Result, ServerProcess, start_server

FAST_ENV = {"FIELDSYNC_KDF_FAST": "1", "FIELDSYNC_RETRIES": "2"}
PASSPHRASE = "four random words here"  # not weak: `init` and `join` say nothing of it
# What every new picket needs (schemas/records.py: its required fields).
PICKET_REQUIRED = {"date": "2026-12-04", "place": "Invented Square"}
PICKET = [arg for name, value in PICKET_REQUIRED.items() for arg in ("--set", f"{name}={value}")]


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

    def device(self, name: str, passphrase: str = PASSPHRASE, **env: str) -> Device:
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


@pytest.fixture
def proxied(server: ServerProcess, tmp_path: Path) -> Iterator[tuple[Team, LyingProxy]]:
    """A fresh team whose devices reach the server through a proxy that can lie."""
    proxy = LyingProxy("127.0.0.1", server.port).start()
    try:
        yield new_team(server, tmp_path, url=proxy.url), proxy
    finally:
        proxy.stop()


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
    register_marker(*(str(v) for v in values.values()))  # never in a server log
    return out


def assert_one_line_error(result: Result, code: int, *fragments: str) -> None:
    """An expected failure: the exit code, and one `error:` line on stderr, no traceback."""
    assert result.rc == code, (result.rc, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: "), lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
