"""The workbench in a real browser: Debian's chromium driven by Playwright (not a test module).

Nothing downloads a browser: Playwright is launched with `executable_path` set to
the system's chromium (.ci/run installs the `chromium` package when it is missing).
A missing browser fails the browser tests; it never skips them.

`Person` is one device at its own `fieldsync ui` (its own profile directory, its
own browser context, so its own cookies). Every request a page makes is recorded,
so that a test can check that no page reached outside its own origin.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from clientkit import FAST_ENV
from webkit import LiveBench

from client_sync.demo import client_command

CHROMIUM = os.environ.get("FIELDSYNC_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# The flags that keep chromium from calling home: this machine has no network, and a
# test must not depend on what a browser does in the background.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"no chromium at {CHROMIUM}: install Debian's `chromium` (.ci/run does) or set"
            " FIELDSYNC_CHROMIUM; the workbench's browser tests do not skip"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


@dataclass
class Person:
    """One device, its workbench process and its browser tab."""

    name: str
    home: Path
    passphrase: str
    browser: Any
    bench: LiveBench | None = None
    proc: subprocess.Popen[str] | None = None
    page: Any = None
    requests: list[str] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            **FAST_ENV,
            "FIELDSYNC_HOME": str(self.home),
            "FIELDSYNC_PASSPHRASE": self.passphrase,
        }

    def start(self) -> Person:
        """`fieldsync ui --no-browser`, and a fresh browser context that opens its URL."""
        self.proc = subprocess.Popen(
            [*client_command(), "ui", "--no-browser"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        url = self.proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), url
        self.bench = LiveBench(self.proc, url)
        context = self.browser.new_context(accept_downloads=True, locale="en-GB")
        self.page = context.new_page()
        self.page.on("request", lambda req: self.requests.append(req.url))
        self.page.goto(url)
        return self

    @property
    def origin(self) -> str:
        assert self.bench is not None
        return self.bench.origin

    def go(self, path: str) -> Any:
        self.page.goto(self.origin + path)
        return self.page

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The command line on the same profile, while the workbench runs."""
        return subprocess.run(
            [*client_command(), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def stop(self) -> None:
        if self.page is not None:
            self.page.context.close()
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.communicate(timeout=10)  # also closes its pipes
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.communicate(timeout=10)

    def outside_origin(self) -> list[str]:
        return [u for u in self.requests if not u.startswith(self.origin + "/")]


def wait_for_job(page: Any, timeout_s: float = 60) -> None:
    """A job page reloads itself until done: wait until it says so."""
    page.wait_for_selector("p.ok, p.error", timeout=timeout_s * 1000)
