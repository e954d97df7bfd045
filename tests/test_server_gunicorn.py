"""The real thing: `fieldsync-server run` (gunicorn, 4 workers) on a loopback port.

Concurrent pushers, a kill -9 in the middle of pushes, what a seized data
directory and the logs contain, and gunicorn's own limits. Every loop is bounded
in count and time; every server is stopped by its fixture.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from servergun import BIN, Gunicorn, workspace_code
from serverkit import HttpTransport, Kit, Member, Response

from protocol.encoding import b64e
from protocol.model import Bundle
from server.store import Paths
from server.store.inspect import integrity_check


@pytest.fixture
def gun(tmp_path: Path) -> Iterator[Gunicorn]:
    server = Gunicorn(tmp_path / "data", workers=4, log_dir=tmp_path / "logs")
    try:
        yield server.start()
    finally:
        server.stop()


def push_signed(kit: Kit, member: Member, bundles: list[Bundle]) -> Response:
    """A push that is safe from many threads: the nonce comes from os.urandom."""
    path = kit.path("push")
    body = json.dumps({"bundles": [b.to_wire() for b in bundles]}).encode()
    headers = kit.signed_headers("POST", path, member, body, nonce=b64e(os.urandom(16)))
    return kit.transport.send("POST", path, headers, body)


def test_concurrent_pushers_never_lock_and_merge_once(gun: Gunicorn) -> None:
    kit = Kit.create(HttpTransport(gun.url), workspace_code(gun.data_dir), seed=31)
    coord = kit.member("coordinator")
    devices = [kit.member("volunteer") for _ in range(8)]
    outboxes = {
        d.device_id: [
            kit.seal(d, {"place": f"Braskel Lane {i}", "attended": i}) for i in range(120)
        ]
        for d in devices
    }
    answers: dict[str, list[Response]] = {d.device_id: [] for d in devices}
    errors: list[BaseException] = []

    def pusher(member: Member) -> None:
        try:
            box = outboxes[member.device_id]
            for i in range(0, len(box), 12):
                answers[member.device_id].append(push_signed(kit, member, box[i : i + 12]))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=pusher, args=(d,)) for d in devices]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and not any(t.is_alive() for t in threads)
    statuses = [r.status for rs in answers.values() for r in rs]
    assert statuses == [200] * 80
    results = [x for rs in answers.values() for r in rs for x in r.body["results"]]
    assert {x["status"] for x in results} == {"accepted"}
    assert sorted(x["seq"] for x in results) == list(range(1, 961))
    pulled = kit.pull_all(coord, limit=500)
    assert [b["change"] for b in pulled] == list(range(1, 961))
    by_id = {b["bundle_id"]: b for b in pulled}
    assert len(by_id) == 960
    for box in outboxes.values():
        for b in box:
            assert by_id[b.bundle_id] == {**b.to_wire(), "change": by_id[b.bundle_id]["change"]}
    log = gun.log_text()
    assert "database is locked" not in log and "Traceback" not in log


def test_kill_9_during_pushes_loses_no_acknowledged_bundle(tmp_path: Path) -> None:
    server = Gunicorn(tmp_path / "data", workers=4, log_dir=tmp_path / "logs")
    try:
        server.start()
        kit = Kit.create(HttpTransport(server.url), workspace_code(server.data_dir), seed=32)
        coord = kit.member("coordinator")
        devices = [kit.member("volunteer") for _ in range(4)]
        outboxes = {
            d.device_id: [kit.seal(d, {"n": i, "note": "x" * 40}) for i in range(150)]
            for d in devices
        }
        acked: dict[str, int] = {}  # bundle id -> change number first acknowledged
        lock = threading.Lock()
        failures = {"count": 0}
        errors: list[BaseException] = []
        deadline = time.monotonic() + 120

        def pusher(member: Member) -> None:
            try:
                box = outboxes[member.device_id]
                i = 0
                while i < len(box) and time.monotonic() < deadline:
                    batch = box[i : i + 10]
                    try:
                        resp = push_signed(kit, member, batch)
                    except (OSError, http.client.HTTPException):  # the server is down
                        with lock:
                            failures["count"] += 1
                        time.sleep(0.05)
                        continue
                    assert resp.status == 200, resp
                    with lock:
                        for r in resp.body["results"]:
                            assert r["status"] in ("accepted", "stored"), r
                            assert acked.setdefault(r["bundle_id"], r["seq"]) == r["seq"]
                    i += 10
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=pusher, args=(d,)) for d in devices]
        for t in threads:
            t.start()
        for _ in range(200):  # wait until pushes are under way, bounded
            with lock:
                if len(acked) >= 60:
                    break
            time.sleep(0.02)
        server.kill9()
        with lock:
            acked_before_kill = dict(acked)
        time.sleep(0.3)
        server.start()
        for t in threads:
            t.join(timeout=150)
        assert not errors and not any(t.is_alive() for t in threads)
        assert failures["count"] > 0  # the kill did interrupt pushes
        pulled = kit.pull_all(coord, limit=1000)
        changes = [b["change"] for b in pulled]
        assert changes == list(range(1, len(changes) + 1))
        ids = [b["bundle_id"] for b in pulled]
        assert len(ids) == len(set(ids)) == 600  # every bundle once, no duplicate
        by_id = dict(zip(ids, changes, strict=True))
        for bundle_id, change in acked_before_kill.items():
            assert by_id[bundle_id] == change  # acknowledged before the crash: still there
        assert acked == by_id
    finally:
        server.stop()
    for db in Paths(tmp_path / "data").all_databases():
        assert integrity_check(db) == "ok"


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_seized_data_dir_backups_and_logs_hold_no_plaintext(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = Gunicorn(data, workers=2, log_dir=tmp_path / "logs")
    backups = tmp_path / "backups"
    markers: list[str] = []
    try:
        server.start()
        kit = Kit.create(HttpTransport(server.url), workspace_code(data), seed=33)
        coord = kit.member("coordinator")
        vol = kit.member("volunteer")
        rng = kit.rng

        def marker(prefix: str) -> str:
            m = f"{prefix}{rng.randrange(16**12):012x}"
            markers.append(m)
            return m

        sealed: list[Bundle] = []
        for member in (vol, coord, kit.founder):
            for _ in range(5):
                rtype = marker("mkrtype")
                values = {marker("mkrfield"): "Zarela " + marker("MKRVALUE") for _ in range(4)}
                sealed.append(kit.seal(member, values, record_type=rtype))
                assert push_signed(kit, member, [sealed[-1]]).status == 200
        assert len(kit.pull_all(coord)) == len(sealed)
        # Hostile and malformed traffic, which the logs must describe without naming anyone.
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(f"GET /v1/w/{kit.workspace}/log\x01 HTTP/1.1\r\n\r\n".encode())
            s.recv(1000)
        assert kit.request("GET", kit.path("changes"), vol).code == "wrong_role"
        out = subprocess.run(
            [str(BIN), "backup", "--data-dir", str(data), str(backups)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.count(": ok") == 2
        live = files_under(data)
        assert any(p.name.endswith("-wal") for p in live)  # the WAL is among what is searched
        leaked = [
            (str(p), m)
            for p in live + files_under(backups)
            for m in markers
            if m.encode() in p.read_bytes()
        ]
        assert leaked == []
    finally:
        server.stop()
    leaked = [
        (str(p), m) for p in files_under(data) for m in markers if m.encode() in p.read_bytes()
    ]
    assert leaked == []
    log = server.log_text()
    assert "Invalid request" in log  # the malformed request was logged, redacted
    names = [
        *markers,
        "127.0.0.1",
        kit.workspace,
        vol.device_id,
        coord.device_id,
        kit.founder.device_id,
    ]
    assert [n for n in names if n in log] == []


def raw_request(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        chunks = b""
        while True:
            try:
                part = s.recv(65536)
            except ConnectionResetError:
                break
            if not part:
                break
            chunks += part
        return chunks


def test_gunicorn_limits_and_body_limit(tmp_path: Path) -> None:
    server = Gunicorn(
        tmp_path / "data", workers=2, log_dir=tmp_path / "logs", env={"FIELDSYNC_MAX_BODY": "4096"}
    )
    try:
        server.start()
        port = server.port
        long_line = raw_request(
            port, b"GET /v1/health?" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        assert long_line.startswith(b"HTTP/1.1 414")
        many = b"".join(b"X-H%d: v\r\n" % i for i in range(60))
        assert raw_request(
            port, b"GET /v1/health HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n"
        ).startswith(b"HTTP/1.1 431")
        big_field = b"X-Big: " + b"v" * 9000 + b"\r\n"
        assert raw_request(
            port, b"GET /v1/health HTTP/1.1\r\nHost: x\r\n" + big_field + b"\r\n"
        ).startswith(b"HTTP/1.1 431")
        path = "/v1/w/" + "A" * 22 + "/push"
        declared = raw_request(
            port,
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: 100000\r\nConnection: close\r\n\r\n".encode()
            + b"{",
        )
        assert declared.startswith(b"HTTP/1.1 413")
        assert b'"too_large"' in declared
        chunk = b"{" + b" " * 9000 + b"}"
        chunked = raw_request(
            port,
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode()
            + b"%x\r\n" % len(chunk)
            + chunk
            + b"\r\n0\r\n\r\n",
        )
        # Unsigned: refused before the body is read (signed ones: tests/test_server_slow.py).
        assert chunked.split(b"\r\n")[0] == b"HTTP/1.1 401 UNAUTHORIZED"
        assert b'"missing_signature"' in chunked
        wrong_type = raw_request(
            port,
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
            "Connection: close\r\n\r\n{}".encode(),
        )
        assert wrong_type.startswith(b"HTTP/1.1 415") and b"unsupported_media_type" in wrong_type
        assert "Traceback" not in server.log_text()
    finally:
        server.stop()


def test_backup_copies_open_and_check(tmp_path: Path, gun: Gunicorn) -> None:
    kit = Kit.create(HttpTransport(gun.url), workspace_code(gun.data_dir), seed=34)
    vol = kit.member("volunteer")
    push_signed(kit, vol, [kit.seal(vol, {"n": i}) for i in range(20)])
    out = tmp_path / "bk"
    res = subprocess.run(
        [str(BIN), "backup", "--data-dir", str(gun.data_dir), str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    copies = sorted(p.relative_to(out) for p in out.rglob("*.sqlite"))
    assert copies == [Path("server.sqlite"), Path("workspaces") / f"{kit.workspace}.sqlite"]
    import sqlite3

    conn = sqlite3.connect(out / "workspaces" / f"{kit.workspace}.sqlite")
    try:
        assert conn.execute("SELECT count(*) FROM bundles").fetchone() == (20,)
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()
