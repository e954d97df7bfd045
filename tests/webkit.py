"""Helpers for the workbench's tests (not a test module).

A `Bench` is the workbench app of one device of a real workspace (the day of `make
demo`, played through the real command line against a real server), driven in
process by Flask's test client through the same gate a browser passes: the launch
token exchanged for the session cookie, the Host header checked, CSRF on POSTs.
`LiveBench` runs `fieldsync ui` itself, for the browser tests.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from clientkit import FAST_ENV

from client_sync.demo import (
    Day,
    Device,
    ServerProcess,
    client_command,
    play_day,
    start_server,
)
from client_sync.device import Device as CoreDevice
from client_sync.web.app import create_app
from client_sync.web.security import Gate

PORT = 45678  # the test client's Host; nothing listens on it
HOST = f"127.0.0.1:{PORT}"
BASE = f"http://{HOST}"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def played_day(server: ServerProcess, root: Path) -> Day:
    day = play_day(server, root, env=FAST_ENV)
    day.admin.run("sync")
    day.coordinator.run("sync")
    return day


@pytest.fixture(scope="session")
def web_day(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Day]:
    """One played day on its own server for every read-mostly workbench test."""
    root = tmp_path_factory.mktemp("web-day")
    (root / "data").mkdir()
    proc = start_server(root / "data")
    try:
        yield played_day(proc, root)
    finally:
        proc.stop()


def passphrase_of(dev: Device) -> str:
    return dev.env["FIELDSYNC_PASSPHRASE"]


@dataclass
class Bench:
    """One device's workbench app and a test client that went through the launch."""

    app: Any
    client: Any
    gate: Gate
    device: CoreDevice

    @classmethod
    def open(cls, dev: Device, *, launch: bool = True, idle_minutes: float = 15) -> Bench:
        core = CoreDevice.unlock(passphrase_of(dev), dev.home)
        gate = Gate(PORT)
        app = create_app(core, gate, idle_minutes=idle_minutes, watch=False)
        client = app.test_client()
        bench = cls(app, client, gate, core)
        if launch:
            token = gate.launch_token
            resp = client.get(f"/launch?token={token}", base_url=BASE)
            assert resp.status_code == 302, resp.status_code
        return bench

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get(path, base_url=BASE, **kw)

    def post(self, path: str, data: dict[str, Any] | None = None, **kw: Any) -> Any:
        form = {"csrf": self.gate.csrf, **(data or {})}
        return self.client.post(path, data=form, base_url=BASE, **kw)

    def csrf_in(self, html: str) -> str:
        found = CSRF.search(html)
        assert found, "no CSRF field in the page"
        return found.group(1)


@dataclass
class LiveBench:
    """`fieldsync ui --no-browser` running for one device: its process and its URL."""

    proc: subprocess.Popen[str]
    url: str

    @property
    def origin(self) -> str:
        return self.url.split("/launch", 1)[0]


@contextlib.contextmanager
def live_bench(dev: Device, *args: str) -> Iterator[LiveBench]:
    proc = subprocess.Popen(
        [*client_command(), "ui", "--no-browser", *args],
        env={**dev.env, **os.environ, **FAST_ENV, "FIELDSYNC_HOME": str(dev.home),
             "FIELDSYNC_PASSPHRASE": passphrase_of(dev)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), (url, proc.stderr.read() if proc.stderr else "")
        yield LiveBench(proc, url)
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=10)  # also closes its pipes
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=10)
