"""The app's edges: limits, content types, JSON errors, the OpenAPI document, no egress."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest
from serverkit import Kit

from server.app import config_from_env, create_app
from server.openapi import openapi_path


def test_health(client: Any) -> None:
    resp = client.get("/v1/health")
    assert (resp.status_code, resp.get_json()) == (200, {"status": "ok"})


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/nowhere", 404, "not_found"),
        ("GET", "/v1/w/abc/nowhere", 404, "not_found"),
        ("DELETE", "/v1/health", 405, "method_not_allowed"),
        ("PUT", "/v1/workspaces", 405, "method_not_allowed"),
    ],
)
def test_routing_errors_are_json(
    client: Any, method: str, path: str, status: int, code: str
) -> None:
    resp = client.open(path, method=method)
    assert resp.status_code == status
    assert resp.get_json() == {
        "error": {"code": code, "message": resp.get_json()["error"]["message"]}
    }


def test_too_large_before_reading(kit: Kit, app: Any) -> None:
    app.config["MAX_CONTENT_LENGTH"] = 1000
    vol = kit.member("volunteer")
    resp = kit.push(vol, [kit.seal(vol, {"note": "x" * 2000})])
    assert (resp.status, resp.code) == (413, "too_large")


def test_wrong_content_type(kit: Kit) -> None:
    vol = kit.member("volunteer")
    headers = kit.signed_headers("POST", kit.path("push"), vol, b"bundles=1")
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    resp = kit.transport.send("POST", kit.path("push"), headers, b"bundles=1")
    assert (resp.status, resp.code) == (415, "unsupported_media_type")
    no_type = kit.transport.client.post("/v1/workspaces", data=b"{}")
    assert no_type.status_code == 415


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{", "bad_json"),
        (b"\xff\xfe", "bad_utf8"),
        (b"nul", "bad_json"),
        (b'{"bundles": [1]', "bad_json"),
        (b'{"bundles": [], "bundles": [1]}', "duplicate_key"),
        (b'{"bundles": 1.0}', "bad_type"),
        (b'{"bundles": 9007199254740993}', "bad_integer"),
        (b"[" * 5000 + b"]" * 5000, "too_deep"),
        (b"{" + b",".join(b'"k%d":0' % i for i in range(1025)) + b"}", "too_many_keys"),
    ],
)
def test_every_body_goes_through_parse_json(kit: Kit, app: Any, body: bytes, code: str) -> None:
    """The strict reader's own code, status 400, for every way JSON can be refused;
    nothing is stored but the request's nonce."""
    from serverkit import db_state

    vol = kit.member("volunteer")
    headers = kit.signed_headers("POST", kit.path("push"), vol, body)
    before = db_state(app.config["DATA_DIR"], nonces=False)
    resp = kit.transport.send("POST", kit.path("push"), headers, body)
    assert (resp.status, resp.code) == (400, code)
    assert db_state(app.config["DATA_DIR"], nonces=False) == before


def test_internal_error_is_json_and_names_nobody(
    kit: Kit, monkeypatch: Any, capsys: Any, caplog: Any
) -> None:
    from server import ingest

    message = "leaked-" + kit.workspace

    def boom(*a: Any, **k: Any) -> None:
        raise RuntimeError(message)

    monkeypatch.setattr(ingest, "push", boom)
    vol = kit.member("volunteer")
    resp = kit.push(vol, [kit.seal(vol, {"n": 1})])
    assert (resp.status, resp.body) == (
        500,
        {"error": {"code": "internal", "message": "internal error"}},
    )
    logged = capsys.readouterr().err + caplog.text
    assert "RuntimeError" in logged
    assert message not in logged and kit.workspace not in logged


def test_config_from_env_defaults_and_overrides() -> None:
    mib = 1024 * 1024
    assert config_from_env({}) == {
        "DATA_DIR": "./fieldsync-data",
        "MAX_BODY": 8 * mib,
        "BODY_TIMEOUT": 60.0,
        "DEVICE_REQUESTS": 2,
        "PAGE_BYTES": 4 * mib,
        "DEVICE_QUOTA": 512 * mib,
        "MIN_FREE_DISK": 256 * mib,
        "MAX_SKEW": 300,
        "PUBLIC_URL": None,
    }
    env = {
        "FIELDSYNC_DATA_DIR": "/srv/fs",
        "FIELDSYNC_MAX_BODY": "1000",
        "FIELDSYNC_BODY_TIMEOUT": "5",
        "FIELDSYNC_DEVICE_REQUESTS": "3",
        "FIELDSYNC_PAGE_BYTES": "65536",
        "FIELDSYNC_DEVICE_QUOTA": "1000000",
        "FIELDSYNC_MIN_FREE_DISK": "0",
        "FIELDSYNC_MAX_SKEW": "60",
        "FIELDSYNC_PUBLIC_URL": "https://sync.example.org/fs",
    }
    assert config_from_env(env) == {
        "DATA_DIR": "/srv/fs",
        "MAX_BODY": 1000,
        "BODY_TIMEOUT": 5.0,
        "DEVICE_REQUESTS": 3,
        "PAGE_BYTES": 65536,
        "DEVICE_QUOTA": 1000000,
        "MIN_FREE_DISK": 0,
        "MAX_SKEW": 60,
        "PUBLIC_URL": "https://sync.example.org/fs",
    }


def test_public_url_is_the_signed_target(tmp_path: Any, new_code: Any) -> None:
    from serverkit import FlaskTransport

    app = create_app(
        {"TESTING": True, "DATA_DIR": tmp_path / "p", "PUBLIC_URL": "https://sync.example.org/fs/"}
    )
    from server.store import Paths, server_db

    code = server_db.new_code(Paths(tmp_path / "p"), 0)
    transport = FlaskTransport(app.test_client())
    transport.base = "https://sync.example.org/fs"  # the URL the client used
    kit = Kit.create(transport, code, seed=5)
    vol = kit.member("volunteer")
    assert kit.request("GET", kit.path("log"), vol).status == 200
    transport.base = "http://localhost"  # signed for the address the proxy forwards to
    resp = kit.request("GET", kit.path("log"), vol)
    assert (resp.status, resp.code) == (401, "bad_signature")


def test_openapi_lists_exactly_the_routes(app: Any, client: Any) -> None:
    doc = client.get("/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    routed = {
        (openapi_path(rule.rule), method)
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }
    assert documented == routed
    # 10, delivery: receipts (2), head, heads, chain, bundle, revocation, recreate; and
    # chunks: put, missing, get, release (2)
    assert len(routed) == 23
    push = doc["paths"]["/v1/w/{ws}/push"]["post"]
    assert push["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PushRequest"
    }
    assert "Bundle" in doc["components"]["schemas"]


def test_no_outbound_connection(kit: Kit, monkeypatch: Any) -> None:
    """A whole scenario with every non-loopback connect failing loudly."""
    attempts: list[Any] = []
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        if not (
            isinstance(host, str) and (host.startswith("127.") or host in ("::1", "localhost"))
        ):
            attempts.append(address)
            raise OSError("outbound connection attempted")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setattr(
        socket, "create_connection", lambda *a, **k: attempts.append(a) or guarded(None, a[0])
    )  # type: ignore[arg-type]
    vol = kit.member("volunteer")
    coord = kit.member("coordinator")
    kit.push(vol, [kit.seal(vol, {"place": "Hollin Row"})])
    kit.pull_all(coord)
    kit.rotate()
    kit.request("GET", kit.path("rekey"), kit.founder)
    assert attempts == []


def test_workspace_code_keeps_only_its_hash(tmp_path: Any, capsys: Any) -> None:
    import hashlib
    import stat

    from server.cli import main

    data = tmp_path / "d"
    umask = os.umask(0o022)  # main() sets 077 for the process; put the test's back after
    try:
        assert main(["workspace-code", "--data-dir", str(data)]) == 0
    finally:
        os.umask(umask)
    code = capsys.readouterr().out.strip()
    assert len(code) >= 16
    stored = b"".join(p.read_bytes() for p in data.rglob("*") if p.is_file())
    assert code.encode() not in stored
    assert hashlib.sha256(code.encode()).hexdigest().encode() in stored
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "server.sqlite").stat().st_mode) == 0o600
