"""What the server tells no one: no outbound connection, and logs that name nobody.

The server process gets tests/netaudit/sitecustomize.py on its PYTHONPATH: an audit
hook (PEP 578) records every socket it creates, binds or connects and every name it
resolves, from any thread and any library. Through a realistic session (create a
workspace, enroll, approve, push, pull, revoke, rotate, re-key) it must bind one
listening socket on loopback and do nothing else on the network. A snapshot of the
sockets the master and workers hold (/proc, which sees sockets opened from C too)
must show only that listener and connections accepted on it.

Why an audit hook and not a network namespace: a namespace without routes would
make an outbound attempt fail, possibly silently (a library that swallows
ENETUNREACH); the hook reports the attempt itself, names its arguments, and runs
in the real deploy configuration without privileges.

The log scan (tests/logscan.py) runs after every session; here it is also run on
purpose against a server whose log is not redacted, to see it fail the session.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from logscan import Scan, leaks
from servergun import Gunicorn, workspace_code
from serverkit import HttpTransport, Kit

NETAUDIT = Path(__file__).parent / "netaudit"
TESTS = Path(__file__).parent


def server_pids(master: int) -> list[int]:
    pids = [master]
    for task in Path(f"/proc/{master}/task").iterdir():
        children = (task / "children").read_text().split()
        pids += [int(c) for c in children]
    return pids


def _addr(hexaddr: str) -> tuple[str, int]:
    host, port = hexaddr.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        ip = socket.inet_ntop(socket.AF_INET, raw[::-1])
    else:  # four little-endian 32-bit words
        ip = socket.inet_ntop(
            socket.AF_INET6, b"".join(raw[i : i + 4][::-1] for i in (0, 4, 8, 12))
        )
    return ip, int(port, 16)


def open_sockets(pids: list[int]) -> tuple[list[tuple[str, tuple[str, int], tuple[str, int]]], int]:
    """The inet sockets these processes hold (protocol, local, remote), and how many other
    sockets (unix, netlink, packet). A socket in no table at all is one being closed
    (an accepted connection its client just ended): the kernel lists it with inode 0."""
    inodes: set[str] = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                match = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(fd))
            except OSError:
                continue
            if match:
                inodes.add(match[1])
    found = []
    for proto in ("tcp", "tcp6", "udp", "udp6", "raw", "raw6"):
        table = Path(f"/proc/net/{proto}")
        for line in table.read_text().splitlines()[1:] if table.exists() else []:
            cols = line.split()
            if cols[9] in inodes:
                found.append((proto, _addr(cols[1]), _addr(cols[2])))
    other = 0
    for kind in ("unix", "netlink", "packet"):
        table = Path(f"/proc/net/{kind}")
        for line in table.read_text().splitlines()[1:] if table.exists() else []:
            other += any(token in inodes for token in line.split())
    return found, other


def realistic_session(kit: Kit) -> None:
    coordinator = kit.member("coordinator")
    volunteer = kit.member("volunteer")
    bundles = [kit.seal(volunteer, {"place": "Kaskyr Corner", "attended": n}) for n in range(3)]
    assert kit.push(volunteer, bundles).status == 200
    assert len(kit.pull_all(coordinator)) == 3
    kit.revoke(volunteer)
    kit.rotate()
    assert kit.request("GET", kit.path("rekey"), kit.founder).status == 200
    assert kit.request("GET", kit.path("log"), coordinator).status == 200


def test_the_server_opens_no_outbound_connection(tmp_path: Path) -> None:
    audit = tmp_path / "net-audit.jsonl"
    server = Gunicorn(
        tmp_path / "data",
        workers=2,
        log_dir=tmp_path / "logs",
        env={"PYTHONPATH": str(NETAUDIT), "FIELDSYNC_NET_AUDIT": str(audit)},
    )
    server.env["FIELDSYNC_PUBLIC_URL"] = server.url
    try:
        server.start()
        assert server.proc is not None
        kit = Kit.create(HttpTransport(server.url), workspace_code(server.data_dir), seed=71)
        realistic_session(kit)
        inet, other = open_sockets(server_pids(server.proc.pid))
    finally:
        server.stop()
    listener = ("127.0.0.1", server.port)
    assert other == 0
    assert {local for _, local, _ in inet} == {listener}  # listening, or accepted on it
    assert {proto for proto, _, _ in inet} == {"tcp"}
    events = [json.loads(line) for line in audit.read_text().splitlines()]
    kinds = Counter(e["event"] for e in events)
    assert set(kinds) == {"socket.__new__", "socket.bind"}, kinds
    binds = [e["args"][1] for e in events if e["event"] == "socket.bind"]
    assert binds == [repr(listener)]
    # Every socket made is a TCP/IPv4 stream: the listener, and those accept() returns.
    made = {tuple(e["args"]) for e in events if e["event"] == "socket.__new__"}
    assert made == {(str(int(socket.AF_INET)), str(int(socket.SOCK_STREAM)), "0")}
    assert kinds["socket.__new__"] > 10  # the hook did watch the whole session


def test_the_scan_names_each_kind_of_leak() -> None:
    ids = {"Q2xlYXJseUFuSWRPZjE2Qg", "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"}
    assert leaks("Invalid request from ip=192.0.2.7: bad line", ids, set()) == [
        "an IP address (192.0.2.7)"
    ]
    assert leaks("peer 2001:db8::1 closed", ids, set()) == ["an IP address (2001:db8::1)"]
    assert leaks("agent python-requests/2.32", ids, set()) == ["a user agent (python-requests)"]
    assert leaks("GET /v1/w/Q2xlYXJseUFuSWRPZjE2Qg/push", ids, set()) == [
        "a stored id (Q2xlYXJseUFuSWRPZjE2Qg)"
    ]
    assert leaks("id 7hX0b9Qk2mZr8PaLw3yT1c", ids, set()) == [
        "something shaped like an id (7hX0b9Qk2mZr8PaLw3yT1c)"
    ]
    assert leaks("value Orlen Gate 4 arrived", ids, {"Orlen Gate 4"}) == [
        "a plaintext value ('Orlen Gate 4')"
    ]
    clean = [
        "[2026-11-30 10:07:17 +0000] [19877] [INFO] Booting worker with pid: 19877",
        "[2026-11-30 10:07:17 +0000] [19874] [INFO] Listening at: http://[addr]:46495 (19874)",
        "[2026-11-30 10:07:17 +0000] [19874] [INFO] Starting gunicorn 27.0.1",
        "2026-11-30 10:07:17,944 ERROR fieldsync.server: internal error UnicodeEncodeError",
        '  File "/srv/server/api/workspaces.py", line 64, in full_dispatch_request_',
        "Invalid request from ip=[addr]: Invalid HTTP request line: 'GET /v1/w/[id]/log'",
    ]
    assert [line for line in clean if leaks(line, ids, {"Orlen Gate 4"})] == []


def test_a_stopped_server_is_scanned_with_the_ids_it_stored(tmp_path: Path) -> None:
    server = Gunicorn(tmp_path / "data", workers=1, log_dir=tmp_path / "logs")
    with server:
        kit = Kit.create(HttpTransport(server.url), workspace_code(server.data_dir), seed=72)
    scan = Scan()
    scan.server_stopped(server.log_dir, server.data_dir)
    assert kit.workspace in scan.ids and kit.founder.device_id in scan.ids
    assert sorted(Path(p).name for p in scan.texts) == ["stderr.1", "stdout.1"]
    assert scan.findings() == []


LEAKING_TEST = """
from pathlib import Path
import socket

from servergun import workspace_code
from servergun import Gunicorn
from serverkit import HttpTransport, Kit


def test_a_session_that_passes(tmp_path: Path) -> None:
    with Gunicorn(tmp_path / "data", workers=1, log_dir=tmp_path / "logs") as server:
        kit = Kit.create(HttpTransport(server.url), workspace_code(server.data_dir), seed=73)
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(f"GET /v1/w/{kit.workspace}/log\\x01 HTTP/1.1\\r\\n\\r\\n".encode())
            s.recv(1000)
"""

PLAIN_LOGGER = """
import runpy
globals().update(runpy.run_path({conf!r}))
logger_class = "gunicorn.glogging.Logger"  # gunicorn's own: addresses and paths, unredacted
"""


def inner_session(root: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A pytest session of its own, with the log scan, running LEAKING_TEST under `root`."""
    (root / "test_leak.py").write_text(LEAKING_TEST)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "logscan", "-p", "no:cacheprovider",
         "-p", "no:schemathesis", "-q", "--rootdir", str(root),
         "--basetemp", str(root / "base"), str(root / "test_leak.py")],
        capture_output=True, text=True, timeout=240, cwd=root,
        env={**os.environ, "PYTHONPATH": str(TESTS), **env},
    )  # fmt: skip


def test_a_session_whose_server_log_names_a_client_fails(tmp_path: Path) -> None:
    """Break it once: a passing test whose server runs gunicorn's own, unredacting logger.
    (The same test with the deploy configuration is what every other session is.)"""
    deploy = TESTS.parent / "deploy" / "gunicorn.conf.py"
    conf = tmp_path / "plain.conf.py"
    conf.write_text(PLAIN_LOGGER.format(conf=str(deploy)))
    # Outside this session's temporary directory: its own scan must not read these logs.
    with tempfile.TemporaryDirectory(prefix="fieldsync-leak-") as root:
        leaking = inner_session(Path(root), {"FIELDSYNC_GUNICORN_CONF": str(conf)})
    assert "1 passed" in leaking.stdout, leaking.stdout + leaking.stderr
    assert leaking.returncode == 1, leaking.stdout
    hits = [line for line in leaking.stdout.splitlines() if line.startswith("log scan: LEAK")]
    assert any("an IP address (127.0.0.1)" in line for line in hits), leaking.stdout
    assert any("a stored id" in line for line in hits), leaking.stdout
