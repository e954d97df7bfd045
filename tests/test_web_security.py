"""The workbench answers only its own browser: each guard, and that it fails when removed.

Every path of the app (taken from its URL map, so a new page is covered without
editing this file) is tried without the session, with another Host, and (POSTs)
without the CSRF token: each answer is 403 and carries no record value, no name
of the workspace or of a device. Each guard is then switched off once to see
the test that watches it fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from webkit import BASE, PORT, Bench

from client_sync.demo import DETENTIONS, NAMES, PICKET, Day
from client_sync.web import security

SECRETS = [PICKET["place"], DETENTIONS[0]["person_name"], "Zhelsiz Lane", *NAMES.values()]


@pytest.fixture
def day(web_day: Day) -> Day:
    return web_day


@pytest.fixture
def bench(day: Day) -> Iterator[Bench]:
    b = Bench.open(day.admin)
    yield b
    b.device.lock()


def _paths(bench: Bench, day: Day) -> list[tuple[str, str]]:
    """(method, path) for every route, its variables filled with real ids."""
    fill = {
        "record_type": "picket",
        "record_id": day.ids["picket"],
        "device_id": day.devices["volunteer_a"],
        "job_id": "nothing",
        "name": "records-picket.csv",
        "filename": "style.css",
        "how": "join",
        "attachment_id": "AAAAAAAAAAAAAAAAAAAAAA",
    }
    out = []
    for rule in bench.app.url_map.iter_rules():
        path = rule.rule
        for arg in rule.arguments:
            path = path.replace(f"<{arg}>", fill[arg])
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            out.append((method, path))
    return sorted(set(out))


def _leaks(body: bytes) -> list[str]:
    text = body.decode("utf-8", "replace")
    return [s for s in SECRETS if s in text]


def test_every_page_answers_the_launched_browser(bench: Bench, day: Day) -> None:
    pages = ["/", "/capture/picket", "/outbox", "/records", f"/records/{day.ids['picket']}",
             "/conflicts", "/devices", "/export"]  # fmt: skip
    for path in pages:
        resp = bench.get(path)
        assert resp.status_code == 200, path
        assert resp.headers["Cache-Control"] == "no-store", path
        csp = resp.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
    assert "Gate of the consulate" in bench.get(f"/records/{day.ids['picket']}").text


def test_without_the_session_every_path_is_403_and_shows_nothing(bench: Bench, day: Day) -> None:
    stranger = bench.app.test_client()  # another browser, another local user
    for method, path in _paths(bench, day):
        if path.startswith(security.OPEN_PATHS):
            continue
        resp = stranger.open(path, method=method, base_url=BASE, data={"csrf": bench.gate.csrf})
        assert resp.status_code == 403, (method, path, resp.status_code)
        assert _leaks(resp.data) == [], (method, path)


@pytest.mark.parametrize("host", ["evil.example", f"127.0.0.1:{PORT + 1}", "localhost", "[::1]"])
def test_another_host_header_is_403(bench: Bench, day: Day, host: str) -> None:
    for method, path in _paths(bench, day):
        resp = bench.client.open(
            path, method=method, base_url=f"http://{host}", data={"csrf": bench.gate.csrf}
        )
        assert resp.status_code == 403, (host, method, path)
        assert _leaks(resp.data) == [], (host, method, path)


def test_localhost_with_the_port_is_the_same_workbench(day: Day) -> None:
    b = Bench.open(day.admin, launch=False)
    try:
        local = f"http://localhost:{PORT}"
        assert (
            b.client.get(f"/launch?token={b.gate.launch_token}", base_url=local).status_code == 302
        )
        assert b.client.get("/", base_url=local).status_code == 200
    finally:
        b.device.lock()


def test_every_post_without_its_csrf_token_is_403_and_changes_nothing(
    bench: Bench, day: Day
) -> None:
    before = bench.get("/outbox").text
    for method, path in _paths(bench, day):
        if method != "POST" or path.startswith(security.OPEN_PATHS):
            continue
        for form in ({}, {"csrf": "a-guess"}):
            resp = bench.client.post(path, data={**form, "date": "2026-12-05", "place": "X"},
                                     base_url=BASE)  # fmt: skip
            assert resp.status_code == 403, (path, form)
    assert bench.get("/outbox").text == before
    assert not bench.device.locked  # not even the Lock button works without the token


def test_the_launch_token_works_once(day: Day) -> None:
    b = Bench.open(day.volunteer_a, launch=False)
    try:
        token = b.gate.launch_token
        first = b.client.get(f"/launch?token={token}", base_url=BASE)
        assert first.status_code == 302
        cookie = first.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        again = b.app.test_client().get(f"/launch?token={token}", base_url=BASE)
        assert again.status_code == 403
        assert b.app.test_client().get("/", base_url=BASE).status_code == 403
        assert b.client.get("/", base_url=BASE).status_code == 200
        wrong = Bench.open(day.volunteer_a, launch=False)
        assert wrong.client.get("/launch?token=guess", base_url=BASE).status_code == 403
        assert wrong.gate.launch_token is not None  # a wrong guess does not spend it
        wrong.device.lock()
    finally:
        b.device.lock()


def test_lock_drops_the_keys_and_the_passphrase_brings_them_back(bench: Bench, day: Day) -> None:
    assert bench.post("/lock").status_code == 302
    assert bench.device.locked
    resp = bench.get(f"/records/{day.ids['picket']}")
    assert resp.status_code == 302 and "/unlock" in resp.headers["Location"]
    page = bench.get("/unlock").text
    assert _leaks(page.encode()) == []
    wrong = bench.post("/unlock", {"passphrase": "not it"})
    assert wrong.status_code == 200 and bench.device.locked
    ok = bench.post(
        "/unlock", {"passphrase": "passphrase of coordinator-dana", "next": "/conflicts"}
    )
    assert (ok.status_code, ok.headers["Location"]) == (302, "/conflicts")
    assert not bench.device.locked


def test_idle_for_the_set_time_locks(day: Day) -> None:
    b = Bench.open(day.admin, idle_minutes=0.0001)  # 6 ms
    import time

    time.sleep(0.05)
    resp = b.get("/")
    assert resp.status_code == 302 and "/unlock" in resp.headers["Location"]
    assert b.device.locked


def test_an_unlock_form_sends_nobody_elsewhere(bench: Bench) -> None:
    bench.post("/lock")
    for target in ("https://evil.example/", "//evil.example/x", "javascript:alert(1)"):
        resp = bench.post(
            "/unlock", {"passphrase": "passphrase of coordinator-dana", "next": target}
        )
        assert resp.headers["Location"] == "/", target
        bench.post("/lock")


def test_guards_fail_their_tests_when_removed(
    bench: Bench, day: Day, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each guard switched off once: the request it stops goes through."""
    stranger = bench.app.test_client()
    monkeypatch.setattr(security.Gate, "has_session", lambda self, cookie: True)
    assert stranger.get("/devices", base_url=BASE).status_code == 200
    monkeypatch.undo()
    # The session cookie set for the rebound name, so that only the Host check stands.
    assert bench.gate.session_id is not None
    bench.client.set_cookie(bench.gate.cookie, bench.gate.session_id, domain="evil.example")
    assert bench.client.get("/", base_url="http://evil.example").status_code == 403
    monkeypatch.setattr(security.Gate, "hosts", lambda self: ("evil.example",))
    assert bench.client.get("/", base_url="http://evil.example").status_code == 200
    monkeypatch.undo()
    monkeypatch.setattr(security.Gate, "csrf_ok", lambda self, token: True)
    assert bench.client.post("/lock", base_url=BASE).status_code == 302
    assert bench.device.locked
