"""Shared fixtures: deterministic keys and a small workspace built through the pure core.

Server fixtures: `app` (a Flask app on a temporary data directory), `client`,
`new_code` (mints a one-time workspace code), and `kit` (a workspace created on
`app`, see tests/serverkit.py).

Session hooks: the log scan (tests/logscan.py) reads every server log at the end and
fails the run on an address, user agent, id or plaintext; the fuzz figures
(tests/fuzzkit.py) are printed in the summary.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from clientkit import proxied  # noqa: F401  (a fixture: the client tests' lying proxy)
from fuzzkit import CASES, FIGURES, LONG, publish
from logscan import pytest_configure, pytest_sessionfinish  # noqa: F401  (the log scan's hooks)
from serverkit import FlaskTransport, Kit
from webkit import web_day  # noqa: F401  (a fixture: one played day for the workbench tests)

from server.app import create_app
from server.store import Paths, server_db


@pytest.fixture
def app(tmp_path: Path) -> Any:
    return create_app({"TESTING": True, "DATA_DIR": tmp_path / "data"})


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


@pytest.fixture
def new_code(app: Any) -> Callable[[], str]:
    paths = Paths(Path(app.config["DATA_DIR"]))
    return lambda: server_db.new_code(paths, int(time.time()))


@pytest.fixture
def kit(client: Any, new_code: Callable[[], str]) -> Kit:
    return Kit.create(FlaskTransport(client), new_code(), seed=1)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if CASES:
        publish("hypothesis", {"cases": dict(sorted(CASES.items())), "long": LONG})
    for name, figures in sorted(FIGURES.items()):
        if name != "hypothesis":  # its cases per test are the line below
            line = ", ".join(f"{k} {v}" for k, v in figures.items())
            terminalreporter.write_line(f"fuzz {name}: {line}")
    if CASES:
        terminalreporter.write_line(
            f"fuzz hypothesis: {sum(CASES.values())} examples in {len(CASES)} tests: "
            + ", ".join(f"{name} {n}" for name, n in sorted(CASES.items()))
        )
