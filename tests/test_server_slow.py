"""Slow and oversized clients against the real thing: `fieldsync-server run` with
deploy/gunicorn.conf.py (the hardened threaded worker), on raw sockets.

Issue 8: four connections announcing 1,000 bytes and sending one every 5 s blocked
`/v1/health` for 61 s and got all four workers killed. Here slow heads and slow
bodies are held open while health, another device's push and a coordinator's
pull are answered; nothing is asserted about time, only about order (the answers
come back while every slow connection is still being held) and outcome (no worker
killed, each slow client refused by name).
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from servergun import Gunicorn, workspace_code
from serverkit import HttpTransport, Kit, db_state
from slowkit import Trickle, chunked, json_of, send_raw, signed_head, status_of, wait_all

from protocol.encoding import b64e

SLOW = {"FIELDSYNC_HEADER_TIMEOUT": "8", "FIELDSYNC_BODY_TIMEOUT": "8"}


@pytest.fixture
def gun(tmp_path: Path) -> Iterator[Gunicorn]:
    server = Gunicorn(
        tmp_path / "data",
        workers=2,
        log_dir=tmp_path / "logs",
        env={**SLOW, "FIELDSYNC_MAX_BODY": "65536"},
    )
    try:
        yield server.start()
    finally:
        server.stop()


def nonce() -> str:
    return b64e(os.urandom(16))


def test_slow_heads_and_bodies_hold_no_worker(gun: Gunicorn) -> None:
    kit = Kit.create(HttpTransport(gun.url), workspace_code(gun.data_dir), seed=91)
    thief, other = kit.member("volunteer"), kit.member("volunteer")
    coord = kit.member("coordinator")
    push = kit.path("push").encode()
    body = json.dumps({"bundles": [kit.seal(thief, {"n": 1}).to_wire()]}).encode()
    heads = [  # strangers: a request line, then a header one byte at a time
        Trickle(gun.port, b"POST " + push + b" HTTP/1.1\r\n", b"X-Slow: " + b"a" * 500)
        for _ in range(4)
    ]
    stranger_bodies = [  # strangers: a whole head, then a body one byte at a time
        Trickle(
            gun.port,
            b"POST " + push + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{",
            b" " * 999,
        )
        for _ in range(2)
    ]
    thief_bodies = [  # a stolen key: signed heads, then the body one byte at a time
        Trickle(
            gun.port,
            signed_head(kit, thief, "POST", push.decode(), body, nonce=nonce()) + body[:1],
            body[1:],
        )
        for _ in range(4)
    ]
    slow = heads + stranger_bodies + thief_bodies
    for t in slow:
        t.__enter__()
    try:
        wait_all(stranger_bodies, 60)  # refused at once: the body is never read
        time.sleep(0.5)  # every slow connection is in (bounded: nothing is asserted on it)
        with urllib.request.urlopen(gun.url + "/v1/health", timeout=60) as resp:
            health = resp.status
        pushed = kit.push(other, [kit.seal(other, {"place": "Velder Gate"})])
        pulled = kit.changes(coord)
        held = [t.done.is_set() for t in heads] + [t.done.is_set() for t in thief_bodies]
        wait_all(slow, 60)
    finally:
        for t in slow:
            t.stop()
    assert (health, pushed.status, pulled.status) == (200, 200, 200)
    assert [r["status"] for r in pushed.body["results"]] == ["accepted"]
    assert [b["device_id"] for b in pulled.body["bundles"]] == [other.device_id]
    # Answered while the four slow heads and two of the thief's bodies were still held
    # (the thief's other two were refused `busy` at once).
    assert held.count(False) == 6
    assert [t.answer for t in heads] == [b""] * 4  # dropped at the header deadline
    assert [json_of(t.answer)["error"]["code"] for t in stranger_bodies] == [
        "missing_signature"
    ] * 2
    codes = sorted(json_of(t.answer)["error"]["code"] for t in thief_bodies)
    assert codes == ["busy", "busy", "slow_body", "slow_body"]
    assert [status_of(t.answer) for t in thief_bodies].count(408) == 2
    log = gun.log_text()
    assert "WORKER TIMEOUT" not in log and "Traceback" not in log
    assert log.count("Booting worker") == 2  # the two it started with: none was killed
    named = [kit.workspace, thief.device_id, other.device_id, coord.device_id, "127.0.0.1"]
    assert [n for n in named if n in log] == []
    # The thief's slots are free again once its requests were answered.
    again = kit.push(thief, [kit.seal(thief, {"n": 2})])
    assert again.status == 200


def test_over_limit_bodies_are_413_and_heads_431(gun: Gunicorn) -> None:
    """Issue 8: an over-limit chunked body got `bad_signature` or a reset. Now every body
    the server reads past the limit is `413 too_large`, answered in full before the
    connection closes; an unsigned one is refused before it is read at all."""
    kit = Kit.create(HttpTransport(gun.url), workspace_code(gun.data_dir), seed=92)
    vol = kit.member("volunteer")
    path = kit.path("push")
    before = db_state(gun.data_dir)
    big = b'{"bundles":[' + b" " * 100_000 + b"]}"
    too_large = {"error": {"code": "too_large", "message": "the body is larger than 65536 bytes"}}
    declared = send_raw(
        gun.port,
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(big)}\r\nConnection: close\r\n\r\n".encode()
        + big,
    )
    assert (status_of(declared), json_of(declared)) == (413, too_large)
    signed = send_raw(gun.port, signed_head(kit, vol, "POST", path, big, nonce=nonce()) + big)
    assert (status_of(signed), json_of(signed)) == (413, too_large)
    signed_chunked = signed_head(kit, vol, "POST", path, big, chunked=True, nonce=nonce())
    answer = send_raw(gun.port, signed_chunked + chunked(big))
    assert (status_of(answer), json_of(answer)) == (413, too_large)
    unsigned_chunked = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode()
    ) + chunked(big)
    answer = send_raw(gun.port, unsigned_chunked)
    assert (status_of(answer), json_of(answer)["error"]["code"]) == (401, "missing_signature")
    assert db_state(gun.data_dir) == before  # no refusal stored anything, not even a nonce
    # A chunked body within the limit is read and verified like any other.
    small = json.dumps({"bundles": [kit.seal(vol, {"n": 1}).to_wire()]}).encode()
    ok = send_raw(
        gun.port,
        signed_head(kit, vol, "POST", path, small, chunked=True, nonce=nonce()) + chunked(small),
    )
    assert status_of(ok) == 200 and json_of(ok)["results"][0]["status"] == "accepted"
    head = send_raw(
        gun.port,
        b"GET /v1/health HTTP/1.1\r\n"
        + b"".join(b"X-F%d: %s\r\n" % (i, b"v" * 1000) for i in range(40)),
    )
    assert (status_of(head), json_of(head)["error"]["code"]) == (431, "headers_too_large")
    assert "Traceback" not in gun.log_text()


def test_the_shipped_proxy_buffers_whole_bodies_and_answers() -> None:
    """deploy/Caddyfile reads each body whole before passing it on (Caddy streams by
    default), at least up to the server's body limit, and takes each answer whole up to
    a page's byte budget. (Checked by hand with Caddy 2.11.7: four bodies trickled
    through it held no slot of their key; without `request_buffers`, two did and a
    fifth request was `429 busy`; docs/RELIABILITY.md.)"""
    import re

    from server.app import config_from_env

    text = (Path(__file__).resolve().parents[1] / "deploy" / "Caddyfile").read_text()
    sizes = {
        name: int(float(value) * 1_000_000)
        for name, value in re.findall(
            r"^\s*(max_size|request_buffers|response_buffers) (\d+)MB$", text, re.M
        )
    }
    defaults = config_from_env({})
    assert sizes["request_buffers"] >= sizes["max_size"] > defaults["MAX_BODY"]
    assert sizes["response_buffers"] > defaults["PAGE_BYTES"]
    assert re.search(r"read_header 10s\s+read_body 60s", text)


def test_the_client_retries_busy_and_says_so(
    gun: Gunicorn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`429 busy` stored nothing: the client retries it (after its back-off) like a
    failure, and names it plainly when it persists."""
    from client_sync import transport
    from client_sync.errors import ServerError
    from server import inflight
    from server.store import Paths

    kit = Kit.create(HttpTransport(gun.url), workspace_code(gun.data_dir), seed=93)
    vol = kit.member("volunteer")
    slots = Paths(gun.data_dir).slots
    held = [inflight.acquire(slots, kit.workspace, vol.device_id, 2) for _ in range(2)]
    client = transport.Client(gun.url, kit.workspace, vol.key, vol.device_id, attempts=3)
    sleeps: list[float] = []

    def free_then_sleep(seconds: float) -> None:  # the first back-off: the other request ends
        sleeps.append(seconds)
        for slot in held:
            assert slot is not None
            slot.release()

    monkeypatch.setattr(transport.time, "sleep", free_then_sleep)
    answer = client.get(f"/v1/w/{kit.workspace}/log")
    assert (len(sleeps), answer["length"]) == (1, len(kit.events))
    # The server frees its slot once its answer is sent, which may be a moment after the
    # client read it: take both slots as soon as they are free.
    again = []
    deadline = time.monotonic() + 30
    while len(again) < 2 and time.monotonic() < deadline:
        slot = inflight.acquire(slots, kit.workspace, vol.device_id, 2)
        if slot is None:
            time.sleep(0.01)
        else:
            again.append(slot)
    assert len(again) == 2
    monkeypatch.setattr(transport.time, "sleep", lambda s: None)
    with pytest.raises(ServerError) as info:
        client.get(f"/v1/w/{kit.workspace}/log")
    assert (info.value.code, info.value.status, str(info.value)) == (
        "busy",
        429,
        "the server is still busy with another request from this device: retry",
    )
    for slot in again:
        assert slot is not None
        slot.release()


def test_a_replay_is_refused_by_any_worker_and_after_a_restart(gun: Gunicorn) -> None:
    """Nonces live in a file, not in a worker: a replay is refused whichever worker
    gets it, and after the server restarted within the signature window."""
    kit = Kit.create(HttpTransport(gun.url), workspace_code(gun.data_dir), seed=94)
    vol = kit.member("volunteer")
    path = kit.path("log")
    headers = kit.signed_headers("GET", path, vol, b"", nonce=nonce())
    assert kit.transport.send("GET", path, headers, b"").status == 200
    again = [kit.transport.send("GET", path, headers, b"").code for _ in range(6)]
    gun.stop()
    gun.start()
    after = kit.transport.send("GET", path, headers, b"")
    assert [*again, after.code] == ["replayed_nonce"] * 7
