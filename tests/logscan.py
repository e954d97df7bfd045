"""The log scan: every server log written during a test session is read at its very end.

A pytest plugin (its hooks are imported by tests/conftest.py; `-p logscan` loads it in
any other session). What it reads:

- gunicorn's stdout and stderr of every `servergun.Gunicorn`, read (with the ids its
  data directory holds) when the server stops, because some live in directories
  that are gone by the end (bench/rekey.py's), and again at the end if still there;
- every file under the session's base temporary directory named like a server log:
  `logs/stdout.N`, `logs/stderr.N` (servergun) and `server-PORT.log`
  (client_sync/demo.start_server, the client tests' servers);
- the app's own log ("fieldsync" logger) of in-process Flask apps, copied to a file.

What counts as a leak: an IP address; a user agent; a workspace, device, record,
bundle or cell id (every base64url id or hash stored in the databases beside the log,
and anything shaped like one); a plaintext value sealed during the session
(`serverkit.SEALED_TEXT`, `clientkit.sets`) or a marker a test registers.

Why a `pytest_sessionfinish` hook rather than a test ordered last: it runs after
every test and after session fixtures have stopped their servers (so the logs are
complete), whatever `-k`, `-x` or file selection ran; a test can be deselected or
reordered, this hook cannot. It sets a failing exit status and prints each hit.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

USER_AGENTS = ("python-requests", "python-urllib", "fieldsync-client", "fieldsync-fuzz-ua",
               "schemathesis", "curl/", "mozilla/")  # fmt: skip
_IPV4 = re.compile(r"(?<![0-9.])\d{1,3}(?:\.\d{1,3}){3}(?![0-9.]*\d)")
_IPV6 = re.compile(r"(?<![0-9A-Za-z:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![0-9A-Za-z:])")
_ID = re.compile(r"(?<![A-Za-z0-9_-])(?:[A-Za-z0-9_-]{22}|[A-Za-z0-9_-]{43})(?![A-Za-z0-9_-])")
_LOG_NAMES = ("logs/stdout.*", "logs/stderr.*", "server-*.log")


def id_shaped(token: str) -> bool:
    """A random base64url id or hash: upper and lower case letters and a digit (an
    identifier in a traceback, such as `full_dispatch_request`, has not all three)."""
    return (
        any(c.isupper() for c in token)
        and any(c.islower() for c in token)
        and any(c.isdigit() for c in token)
    )


def stored_ids(data_dir: Path) -> set[str]:
    """Every id and hash the server holds under `data_dir`: what a log must never name."""
    import sqlite3

    out: set[str] = set()
    if not data_dir.is_dir():
        return out
    for db in data_dir.rglob("*.sqlite"):
        if _ID.fullmatch(db.stem):  # a workspace's file is named by its id
            out.add(db.stem)
        try:
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        except sqlite3.Error:
            continue
        try:
            tables = [
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            ]
            for table in tables:
                for row in conn.execute(f'SELECT * FROM "{table}"'):
                    for value in row:
                        if isinstance(value, str):
                            out.update(_ID.findall(value))
        except sqlite3.Error:
            pass
        finally:
            conn.close()
    return out


@dataclass
class Scan:
    texts: dict[str, str] = field(default_factory=dict)  # source -> text, read at stop
    ids: set[str] = field(default_factory=set)
    markers: set[str] = field(default_factory=set)

    def read(self, path: Path) -> None:
        if path.is_file():
            self.texts[str(path)] = path.read_text(errors="replace")

    def server_stopped(self, log_dir: Path, data_dir: Path) -> None:
        for pattern in ("stdout.*", "stderr.*"):
            for path in sorted(log_dir.glob(pattern)):
                self.read(path)
        self.ids |= stored_ids(data_dir)

    def sweep(self, root: Path) -> None:
        """Every server log under `root`, and the ids of the data directories beside them."""
        for pattern in _LOG_NAMES:
            for path in root.rglob(pattern):
                self.read(path)
        for db in root.rglob("server.sqlite"):
            self.ids |= stored_ids(db.parent)

    def findings(self) -> list[str]:
        markers = {m for m in self.markers if len(m) >= 6}
        out = []
        for source, text in sorted(self.texts.items()):
            for n, line in enumerate(text.splitlines(), 1):
                for hit in leaks(line, self.ids, markers):
                    out.append(f"{source}:{n}: {hit}: {line.strip()[:200]}")
        return out


def leaks(line: str, ids: set[str], markers: set[str]) -> list[str]:
    hits = []
    for candidate in _IPV4.findall(line) + _IPV6.findall(line):
        try:
            ipaddress.ip_address(candidate)
        except ValueError:
            continue
        hits.append(f"an IP address ({candidate})")
    lower = line.lower()
    hits += [f"a user agent ({ua})" for ua in USER_AGENTS if ua in lower]
    for token in _ID.findall(line):
        if token in ids:
            hits.append(f"a stored id ({token})")
        elif id_shaped(token):
            hits.append(f"something shaped like an id ({token})")
    hits += [f"a plaintext value ({m!r})" for m in markers if m in line]
    return hits


SCAN = Scan()


def register_marker(*texts: str) -> None:
    """A plaintext value a test wrote: no server log may contain it."""
    SCAN.markers.update(texts)


class _AppLog(logging.FileHandler):
    """A copy of what the app's own logger writes, in the form it writes it."""


def pytest_configure(config: pytest.Config) -> None:
    import servergun

    from server.logs import RedactingFormatter

    servergun.STOPPED.append(lambda server: SCAN.server_stopped(server.log_dir, server.data_dir))
    factory = getattr(config, "_tmp_path_factory", None)
    if factory is not None:
        path = factory.getbasetemp() / "app-log" / "fieldsync.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = _AppLog(path, encoding="utf-8", delay=True)
        handler.setFormatter(RedactingFormatter())
        # On the child the app logs to ("fieldsync.server"), so that configure_app_logging
        # still finds "fieldsync" without handlers and sets its own up as it would.
        logging.getLogger("fieldsync.server").addHandler(handler)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    import serverkit

    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is not None:
        SCAN.sweep(factory.getbasetemp())
    for handler in logging.getLogger("fieldsync.server").handlers:
        if isinstance(handler, _AppLog):
            handler.flush()
            SCAN.read(Path(handler.baseFilename))
    SCAN.markers |= serverkit.SEALED_TEXT
    found = SCAN.findings()
    reporter: Any = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write("\n")
        reporter.write_line(
            f"log scan: {len(SCAN.texts)} server logs, {len(SCAN.ids)} stored ids,"
            f" {len(SCAN.markers)} plaintext markers: {len(found)} leaks"
        )
        for line in found[:50]:
            reporter.write_line(f"log scan: LEAK {line}", red=True)
    if found:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
