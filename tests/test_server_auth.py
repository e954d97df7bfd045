"""Every signed route refuses every kind of bad caller with its code, and stores nothing.

flaskr's `login_required` test, parametrised over routes x failures; the whole
database state is compared before and after each refusal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from serverkit import FlaskTransport, Kit, Member, Response, db_state

from protocol import attachment, keys
from protocol.encoding import b64e


@dataclass
class World:
    kit: Kit
    other: Kit  # a second workspace on the same server
    volunteer: Member
    coordinator: Member
    pending: Member  # a coordinator not approved yet
    revoked: Member
    other_member: Member
    invite_key: Any
    data_dir: Any


@pytest.fixture
def world(app: Any, client: Any, new_code: Callable[[], str]) -> World:
    kit = Kit.create(FlaskTransport(client), new_code(), seed=11)
    other = Kit.create(FlaskTransport(client), new_code(), seed=12)
    volunteer = kit.member("volunteer")
    coordinator = kit.member("coordinator")
    pending = kit.member("coordinator", approve=False)
    revoked = kit.member("admin")
    kit.revoke(revoked)
    return World(
        kit=kit,
        other=other,
        volunteer=volunteer,
        coordinator=coordinator,
        pending=pending,
        revoked=revoked,
        other_member=other.member("admin"),
        invite_key=kit.invite("volunteer"),
        data_dir=app.config["DATA_DIR"],
    )


CHUNK = b"\x01" * 64  # any bytes: a chunk's id is their hash
CHUNK_ID = attachment.chunk_id(CHUNK)


@dataclass(frozen=True)
class Route:
    method: str
    route: str  # under /v1/w/<ws>/
    query: str
    good: str  # attribute of World that may call it
    wrong_role: str | None  # attribute of World whose role may not


ROUTES = [
    Route("GET", "log", "since=0", "volunteer", None),
    Route("POST", "log", "", "founder", "volunteer"),
    Route("POST", "enroll", "", "invite_key", "volunteer"),
    Route("POST", "push", "", "volunteer", "invite_key"),
    Route("GET", "changes", "since=0", "coordinator", "volunteer"),
    Route("GET", "rekey", "limit=10", "founder", "coordinator"),
    Route("POST", "rekey", "", "founder", "coordinator"),
    Route("PUT", f"chunks/{CHUNK_ID}", "", "volunteer", "invite_key"),
    Route("POST", "chunks/missing", "", "volunteer", "invite_key"),
    Route("POST", "chunks/release", "", "volunteer", "invite_key"),
    Route("GET", f"chunks/{CHUNK_ID}", "", "coordinator", "volunteer"),
    Route("GET", f"chunks/{CHUNK_ID}/release", "", "coordinator", "volunteer"),
]


def signer_of(w: World, name: str) -> tuple[Any, str]:
    """The key and keyid of a named caller."""
    if name == "invite_key":
        return w.invite_key, w.kit.invite_keyid(w.invite_key)
    member = w.kit.founder if name == "founder" else getattr(w, name)
    return member.key, member.keyid(w.kit.workspace)


def _body(r: Route) -> tuple[bytes, str]:
    """A request body past which authentication must decide, and its type."""
    if r.method == "PUT":
        return CHUNK, "application/octet-stream"
    return (b"{}" if r.method == "POST" else b""), "application/json"


def signed(
    w: World, r: Route, path: str, signer: Any, body: bytes | None = None, **sign: Any
) -> Response:
    raw, ctype = _body(r)
    raw = raw if body is None else body
    headers = w.kit.signed_headers(r.method, path, signer, raw, **sign)
    headers["Content-Type"] = ctype
    return w.kit.transport.send(r.method, path, headers, raw)


def send(w: World, r: Route, case: str) -> Response:
    kit = w.kit
    path = kit.path(r.route, r.query)
    raw, ctype = _body(r)
    key, keyid = signer_of(w, r.good)
    if case == "no_signature":
        return kit.transport.send(r.method, path, {"Content-Type": ctype}, raw)
    if case == "bad_signature":
        return signed(w, r, path, keys.signing_key(bytes(32)), keyid=keyid)
    if case == "tampered_body":
        headers = kit.signed_headers(r.method, path, key, raw, keyid=keyid)
        headers["Content-Type"] = ctype
        return kit.transport.send(r.method, path, headers, raw + b" ")
    if case == "stale_time":
        return signed(w, r, path, key, keyid=keyid, created=kit.now() - 1000)
    if case == "future_time":
        return signed(w, r, path, key, keyid=keyid, created=kit.now() + 1000)
    if case == "unknown_device":
        stranger = keys.signing_key(b"\x07" * 32)
        sid = keys.device_id_for(keys.public_bytes(stranger))
        return signed(w, r, path, stranger, keyid=f"{kit.workspace}.{sid}")
    if case == "revoked_device":
        return signed(w, r, path, w.revoked)
    if case == "other_workspace":
        return signed(w, r, path, w.other_member, keyid=w.other_member.keyid(w.other.workspace))
    if case == "unknown_workspace":
        ghost = b64e(b"\x01" * 16)
        gpath = f"/v1/w/{ghost}/{r.route}" + (f"?{r.query}" if r.query else "")
        return signed(w, r, gpath, key, keyid=f"{ghost}.{keyid.split('.')[1]}")
    if case == "wrong_role":
        assert r.wrong_role is not None
        wkey, wkeyid = signer_of(w, r.wrong_role)
        return signed(w, r, path, wkey, keyid=wkeyid)
    raise AssertionError(case)


CASES = {
    "no_signature": (401, "missing_signature"),
    "bad_signature": (401, "bad_signature"),
    "tampered_body": (401, "bad_signature"),
    "stale_time": (401, "stale_signature"),
    "future_time": (401, "stale_signature"),
    # An unknown keyid is refused exactly as a bad signature is (see below).
    "unknown_device": (401, "bad_signature"),
    "revoked_device": (403, "revoked_device"),
    "other_workspace": (403, "wrong_workspace"),
    "unknown_workspace": (404, "unknown_workspace"),
    "wrong_role": (403, "wrong_role"),
}

MATRIX = [
    pytest.param(r, case, id=f"{r.method}-{r.route}-{case}")
    for r in ROUTES
    for case in CASES
    if not (case == "wrong_role" and r.wrong_role is None)
]


@pytest.mark.parametrize(("route", "case"), MATRIX)
def test_refused_and_nothing_stored(world: World, route: Route, case: str) -> None:
    before = db_state(world.data_dir)
    resp = send(world, route, case)
    assert (resp.status, resp.code) == CASES[case]
    assert set(resp.body) == {"error"} and set(resp.body["error"]) == {"code", "message"}
    assert db_state(world.data_dir) == before


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method}-{r.route}")
def test_replayed_request_is_refused_and_changes_nothing(world: World, route: Route) -> None:
    kit = world.kit
    key, keyid = signer_of(world, route.good)
    path = kit.path(route.route, route.query)
    body, ctype = _body(route)
    headers = kit.signed_headers(route.method, path, key, body, keyid=keyid)
    headers["Content-Type"] = ctype
    first = kit.transport.send(route.method, path, headers, body)
    # Past authentication: an empty POST body is then an invalid request, an unknown
    # chunk is not found.
    assert first.status in (200, 400, 404), first
    before = db_state(world.data_dir)
    again = kit.transport.send(route.method, path, headers, body)
    assert (again.status, again.code) == (401, "replayed_nonce")
    assert db_state(world.data_dir) == before


@pytest.mark.parametrize(
    ("method", "route", "query"),
    [("GET", "changes", "since=0"), ("GET", "rekey", ""), ("POST", "rekey", "")],
)
def test_pending_keyholder_is_not_approved(
    world: World, method: str, route: str, query: str
) -> None:
    pending = world.pending
    if route == "rekey":  # a pending admin, for the admin routes
        pending = world.kit.member("admin", approve=False)
    before = db_state(world.data_dir)
    resp = world.kit.request(
        method, world.kit.path(route, query), pending, {} if method == "POST" else None
    )
    assert (resp.status, resp.code) == (403, "not_approved")
    assert db_state(world.data_dir) == before


def test_pending_keyholder_may_read_the_log_and_push(world: World) -> None:
    kit = world.kit
    assert kit.request("GET", kit.path("log"), world.pending).status == 200
    resp = kit.push(world.pending, [kit.seal(world.pending, {"place": "Orvel Gate"})])
    assert resp.body["results"][0]["status"] == "accepted"


def test_revoke_takes_effect_on_the_next_request(world: World) -> None:
    kit = world.kit
    assert kit.changes(world.coordinator).status == 200
    kit.revoke(world.coordinator)
    resp = kit.changes(world.coordinator)
    assert (resp.status, resp.code) == (403, "revoked_device")


def test_revocation_is_told_only_to_the_key_holder(world: World) -> None:
    """Someone who knows a revoked device's id, but not its key, learns nothing of it."""
    kit = world.kit
    forged = kit.request(
        "GET",
        kit.path("log"),
        keys.signing_key(bytes(32)),
        None,
        keyid=world.revoked.keyid(kit.workspace),
    )
    assert (forged.status, forged.code) == (401, "bad_signature")
    own = kit.request("GET", kit.path("log"), world.revoked)
    assert (own.status, own.code) == (403, "revoked_device")


def test_used_or_expired_invite_is_unknown(world: World) -> None:
    kit = world.kit
    _, resp = kit.enroll(world.invite_key, "volunteer")
    assert resp.status == 201
    again = kit.request(
        "GET", kit.path("log"), world.invite_key, keyid=kit.invite_keyid(world.invite_key)
    )
    assert (again.status, again.code) == (401, "unknown_device")
    short = kit.invite("volunteer", expires_in=1)
    late = kit.request(
        "GET", kit.path("log"), short, keyid=kit.invite_keyid(short), created=kit.now()
    )
    assert late.status == 200  # still live
    kit.transport.client.application.config["CLOCK"] = lambda: kit.now() + 5.0
    gone = kit.request(
        "GET", kit.path("log"), short, keyid=kit.invite_keyid(short), created=kit.now() + 5
    )
    assert (gone.status, gone.code) == (401, "unknown_device")


def test_live_invite_key_reads_the_log(world: World) -> None:
    kit = world.kit
    resp = kit.request(
        "GET", kit.path("log"), world.invite_key, keyid=kit.invite_keyid(world.invite_key)
    )
    assert resp.status == 200
    assert resp.body == {"events": kit.events, "length": len(kit.events)}


CREATE_CASES = {
    "no_signature": (401, "missing_signature"),
    "bad_signature": (401, "bad_signature"),
    "stale_time": (401, "stale_signature"),
    "not_the_founder": (401, "bad_signature"),
    "other_workspace": (403, "wrong_workspace"),
}


@pytest.mark.parametrize("case", list(CREATE_CASES))
def test_create_workspace_refusals(
    client: Any, app: Any, new_code: Callable[[], str], case: str
) -> None:
    kit = Kit(FlaskTransport(client), seed=21)
    code = new_code()
    payload = {"code": code, "genesis": kit.genesis}
    keyid = kit.founder.keyid(kit.workspace)
    before = db_state(app.config["DATA_DIR"])
    if case == "no_signature":
        resp = kit.request("POST", "/v1/workspaces", None, payload)
    elif case == "bad_signature":
        resp = kit.request(
            "POST", "/v1/workspaces", keys.signing_key(bytes(32)), payload, keyid=keyid
        )
    elif case == "stale_time":
        resp = kit.create_request(code, created=kit.now() - 1000)
    elif case == "not_the_founder":
        resp = kit.request(
            "POST",
            "/v1/workspaces",
            kit.founder,
            payload,
            keyid=f"{kit.workspace}.{kit.record_id()}",
        )
    else:
        resp = kit.request(
            "POST",
            "/v1/workspaces",
            kit.founder,
            payload,
            keyid=f"{kit.record_id()}.{kit.founder.device_id}",
        )
    assert (resp.status, resp.code) == CREATE_CASES[case]
    assert db_state(app.config["DATA_DIR"]) == before
    assert kit.create_request(code).status == 201  # the code is still usable


def test_create_workspace_replay_code_and_conflicts(
    client: Any, app: Any, new_code: Callable[[], str]
) -> None:
    kit = Kit(FlaskTransport(client), seed=22)
    code = new_code()
    body = b'{"code": "%s", "genesis": %s}' % (
        code.encode(),
        __import__("json").dumps(kit.genesis).encode(),
    )
    headers = kit.signed_headers("POST", "/v1/workspaces", kit.founder, body)
    first = kit.transport.send("POST", "/v1/workspaces", headers, body)
    assert (first.status, first.body) == (201, {"workspace": kit.workspace, "root": kit.state.root})
    replay = kit.transport.send("POST", "/v1/workspaces", headers, body)
    assert (replay.status, replay.code) == (401, "replayed_nonce")
    assert (kit.create_request(code).status, kit.create_request(code).code) == (403, "bad_code")
    assert kit.create_request("not-a-code-at-all").code == "bad_code"
    exists = kit.create_request(new_code())
    assert (exists.status, exists.code) == (409, "workspace_exists")
    forged = Kit(FlaskTransport(client), seed=23)
    forged.genesis = {**forged.genesis, "at": forged.genesis["at"] + 1}  # signature breaks
    bad = forged.create_request(new_code())
    assert (bad.status, bad.code) == (400, "invalid_event")
