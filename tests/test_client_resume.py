"""A sync cut off mid-push or mid-pull is finished by a rerun, and nothing arrives twice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clientkit import (
    PICKET,
    PICKET_REQUIRED,
    assert_one_line_error,
    new_team,
    records,
    server,  # noqa: F401  (a fixture)
    status,
)
from lying_proxy import LyingProxy

from client_sync.demo import ServerProcess
from client_sync.errors import NETWORK


def _unchanged(status_code: int, body: Any) -> tuple[int, Any]:
    return status_code, body


def test_push_cut_off_then_resumed(server: ServerProcess, tmp_path: Path) -> None:  # noqa: F811
    proxy = LyingProxy("127.0.0.1", server.port).start()
    try:
        team = new_team(server, tmp_path, url=proxy.url)
        admin = team.found()
        vol = team.enroll(admin, "vol")
        ids = [vol.run("add", "picket", *PICKET, "--set", f"attendance={n}").last for n in range(5)]
        # The first batch of two goes through; the second reaches the server, which
        # stores it, but every answer is lost (FIELDSYNC_RETRIES=2: both tries).
        proxy.lie("POST", r"/push$", _unchanged, times=1)
        proxy.cut("POST", r"/push$", times=2)
        result = vol.run("sync", "--batch-size", "2", check=False)
        assert_one_line_error(result, NETWORK, "rerun")
        assert status(vol)["outbox"] == 3  # the acknowledged batch left; the rest waits
        pushes = [p for m, p in proxy.seen if m == "POST" and p.endswith("/push")]
        assert len(pushes) == 3

        result = vol.run("sync", "--batch-size", "2")
        assert "pushed 3 bundle(s): 1 accepted, 2 already stored, 0 rejected" in result.out
        assert status(vol)["outbox"] == 0
        assert "pushed 0 bundle(s)" in vol.run("sync").out

        # The coordinator's pull is cut as well; the rerun resumes from its cursor.
        proxy.cut("GET", r"/changes$", times=2)
        assert_one_line_error(admin.run("sync", check=False), NETWORK)
        assert "pulled 5 new bundle(s), 15 cell(s)" in admin.run("sync").out
        got = records(admin)
        assert [(r["id"], r["fields"]) for r in got] == [
            (rid, {**PICKET_REQUIRED, "attendance": n}) for n, rid in enumerate(ids)
        ]
        assert status(admin)["replica"] == {"records": 5, "bundles": 5, "cells": 15}
        assert status(admin)["problems"] == []
    finally:
        proxy.stop()


def test_a_pull_of_many_pages_asks_for_each_once_in_order(
    proxied: tuple[Any, LyingProxy],
) -> None:
    """The next page is fetched while this one is merged: every page is still asked for
    once, in order, each from where the page before ended, and everything arrives."""
    team, proxy = proxied
    admin = team.found()
    vol = team.enroll(admin, "vol")
    ids = [vol.run("add", "picket", *PICKET, "--set", f"attendance={n}").last for n in range(7)]
    vol.run("sync")
    served: list[int] = []

    def two_a_page(status_code: int, body: Any) -> tuple[int, Any]:
        if len(body["bundles"]) > 2:
            body["bundles"] = body["bundles"][:2]
            body["next"], body["done"] = body["bundles"][-1]["change"], False
        served.append(body["next"])
        return status_code, body

    proxy.lie("GET", r"/changes$", two_a_page)
    assert "pulled 7 new bundle(s), 21 cell(s)" in admin.run("sync").out
    asked = [
        int(path.split("since=")[1].split("&")[0])
        for method, path in proxy.seen
        if method == "GET" and "/changes?" in path
    ]
    assert len(served) == 4 and served == sorted(served)
    assert asked == [0, *served[:-1]]
    got = records(admin)
    assert [(r["id"], r["fields"]) for r in got] == [
        (rid, {**PICKET_REQUIRED, "attendance": n}) for n, rid in enumerate(ids)
    ]
