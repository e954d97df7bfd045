"""The server's limits through the Flask app: locks, refusals that leak nothing, slots,
query digits, error sizes, pages in bytes, quotas, and what a refusal stores (nothing).

Every refusal is checked as a whole value, with whole-database dumps before and after.
The slow-client and raw-socket cases need a real server: tests/test_server_slow.py.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from serverkit import Kit, Member, Response, db_state

from protocol import keys
from protocol.encoding import b64e
from protocol.keylog import sign_event
from server import auth, inflight
from server.store import Paths, pool
from server.store import bundles as stored


def results(resp: Response) -> list[tuple[str, Any]]:
    assert resp.status == 200, resp
    return [(r["status"], r.get("seq") or r["error"]["code"]) for r in resp.body["results"]]


def paths_of(app: Any) -> Paths:
    return Paths(Path(app.config["DATA_DIR"]))


@pytest.fixture
def vol(kit: Kit) -> Member:
    return kit.member("volunteer")


@pytest.fixture
def coord(kit: Kit) -> Member:
    return kit.member("coordinator")


# --- no lock while reading or verifying ---------------------------------------------


def test_no_read_and_no_refusal_takes_the_workspace_write_lock(
    kit: Kit, app: Any, vol: Member, coord: Member
) -> None:
    """Another connection holds the write lock (a long push, as in issue 8, where a
    `changes?limit=1` waited 34 s): every read route still answers, and so does every
    refusal made before a route runs. With a nonce recorded in the workspace database,
    each of these would need the lock (here: "database is locked" after 50 ms)."""
    assert results(kit.push(vol, [kit.seal(vol, {"n": 1})])) == [("accepted", 1)]
    path = paths_of(app).workspace_db(kit.workspace)
    pool.get(path).execute("PRAGMA busy_timeout = 50")  # this thread's app connection
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        answers = [
            kit.request("GET", kit.path("log"), vol).status,
            kit.changes(coord, limit=1).status,
            kit.request("GET", kit.path("rekey"), kit.founder).status,
            kit.request("GET", kit.path("changes"), vol).code,
            kit.request(
                "POST",
                kit.path("push"),
                keys.signing_key(bytes(32)),
                {},
                keyid=vol.keyid(kit.workspace),
            ).code,
        ]
        replayed = kit.signed_headers("GET", kit.path("log"), vol, b"")
        first = kit.transport.send("GET", kit.path("log"), replayed, b"").status
        again = kit.transport.send("GET", kit.path("log"), replayed, b"").code
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert answers == [200, 200, 200, "wrong_role", "bad_signature"]
    assert (first, again) == (200, "replayed_nonce")


# --- refusals that tell a stranger nothing --------------------------------------------


def test_an_unknown_keyid_and_a_bad_signature_are_one_refusal(
    kit: Kit, vol: Member, monkeypatch: Any
) -> None:
    """Issue 8: a real device id answered `bad_signature`, an unknown one
    `unknown_device`, so anyone who knew a workspace id could list its devices. Now every
    keyid whose signature does not verify gets the same answer after the same work
    (one signature verification), whatever the id names."""
    revoked = kit.member("volunteer")
    kit.revoke(revoked)
    live = kit.invite("volunteer")
    spent = kit.invite("volunteer")
    assert kit.enroll(spent, "volunteer")[1].status == 201
    stranger = keys.signing_key(b"\x09" * 32)
    ws = kit.workspace
    keyids = {
        "no such device": f"{ws}.{keys.device_id_for(keys.public_bytes(stranger))}",
        "a device": vol.keyid(ws),
        "the founder": kit.founder.keyid(ws),
        "a revoked device": revoked.keyid(ws),
        "a live invite": kit.invite_keyid(live),
        "a spent invite": kit.invite_keyid(spent),
        "not an id at all": f"{ws}.x",
    }
    verified: list[str] = []
    real = auth.verify_presented

    def counting(p: Any, key: bytes) -> Any:
        verified.append(p.key_id)
        return real(p, key)

    monkeypatch.setattr(auth, "verify_presented", counting)
    answers = {
        name: kit.request("GET", kit.path("log"), stranger, keyid=keyid)
        for name, keyid in keyids.items()
    }
    same = (401, {"error": {"code": "bad_signature", "message": auth.UNVERIFIED}})
    assert {name: (r.status, r.body) for name, r in answers.items()} == dict.fromkeys(keyids, same)
    assert verified == [k.split(".", 1)[1] for k in keyids.values()]


def test_a_spent_invite_is_told_why_only_to_its_holder(kit: Kit) -> None:
    spent = kit.invite("volunteer")
    assert kit.enroll(spent, "volunteer")[1].status == 201
    own = kit.request("GET", kit.path("log"), spent, keyid=kit.invite_keyid(spent))
    assert (own.status, own.body) == (
        401,
        {
            "error": {
                "code": "unknown_device",
                "message": "this invite was already used: ask for a new one",
            }
        },
    )


# --- slots: at most a few requests in flight per key ------------------------------------


def test_a_key_with_every_slot_taken_is_busy_and_nothing_is_stored(
    kit: Kit, app: Any, vol: Member, coord: Member
) -> None:
    limit = app.config["DEVICE_REQUESTS"]
    assert limit == 2
    taken = [
        inflight.acquire(paths_of(app).slots, kit.workspace, vol.device_id, limit)
        for _ in range(limit)
    ]
    assert (
        all(taken)
        and inflight.acquire(paths_of(app).slots, kit.workspace, vol.device_id, limit) is None
    )
    before = db_state(app.config["DATA_DIR"])
    bundle = kit.seal(vol, {"n": 1})
    busy = kit.push(vol, [bundle])
    assert (busy.status, busy.body) == (
        429,
        {
            "error": {
                "code": "busy",
                "message": "this device already has 2 requests in progress: retry",
            }
        },
    )
    assert db_state(app.config["DATA_DIR"]) == before  # not even the nonce
    headers = kit.signed_headers("GET", kit.path("log"), vol, b"")
    assert kit.transport.client.get(kit.path("log"), headers=headers).headers["Retry-After"] == "1"
    assert kit.changes(coord).status == 200  # another key is not held up
    taken[0].release()
    assert results(kit.push(vol, [bundle])) == [("accepted", 1)]
    taken[1].release()


def test_slots_are_released_after_every_answer(kit: Kit, app: Any, vol: Member) -> None:
    """Refused or answered, each request gives its slot back: many in a row never go busy."""
    codes = [kit.request("GET", kit.path("changes"), vol).code for _ in range(5)]
    codes += [kit.request("POST", kit.path("push"), vol, {"bundles": []}).code for _ in range(5)]
    codes += [kit.request("GET", kit.path("log"), vol).code for _ in range(5)]
    assert codes == ["wrong_role"] * 5 + ["invalid_request"] * 5 + [None] * 5


# --- query integers: ASCII digits only ----------------------------------------------------


DIGITS = ["²", "①", "٣", "３", "-1", "+1", " 1", "1 ", "0x1", "1e3", "", "9" * 17]


@pytest.mark.parametrize("public_url", [None, "https://sync.example.org/fs"])
@pytest.mark.parametrize("route", ["changes?since", "changes?limit", "log?since", "rekey?limit"])
def test_query_integers_are_ascii_digits(
    kit: Kit, app: Any, coord: Member, route: str, public_url: str | None
) -> None:
    """Issue 8: `²` and `①` crashed int() (500, with FIELDSYNC_PUBLIC_URL set as the
    systemd unit sets it) and `٣` was read as 3. Each is now 400, behind a proxy or not."""
    if public_url:
        app.config["PUBLIC_URL"] = public_url
        kit.transport.base = public_url
    name, _, param = route.partition("?")
    signer = kit.founder if name == "rekey" else coord
    high = {"since": 2**53 - 1, "limit": 1000}[param]
    low = 1 if param == "limit" else 0
    refused = (
        400,
        {
            "error": {
                "code": "invalid_request",
                "message": f"{param} must be an integer from {low} to {high}",
            }
        },
    )
    answers = [
        kit.request("GET", kit.path(name, f"{param}={quote(value)}"), signer) for value in DIGITS
    ]
    assert [(r.status, r.body) for r in answers] == [refused] * len(DIGITS)
    assert kit.request("GET", kit.path(name, f"{param}=1"), signer).status == 200


# --- error messages are bounded -----------------------------------------------------------


def test_an_unknown_field_name_is_not_echoed_whole(kit: Kit, vol: Member) -> None:
    """Issue 8: a 2 MB field name came back as a 2 MB answer."""
    name = "n" * 2_000_000
    resp = kit.request("POST", kit.path("push"), vol, {name: 1})
    assert resp.status == 400 and resp.code == "invalid_request"
    message = resp.body["error"]["message"]
    assert len(message) < 1200
    assert ("n" * 40 + "…: Unknown field.") in message


def test_many_errors_are_summed_up(kit: Kit, vol: Member) -> None:
    bad = {f"x{i}": i for i in range(30)}
    resp = kit.request("POST", kit.path("push"), vol, {"bundles": [], **bad})
    message = resp.body["error"]["message"]
    assert message.endswith("; and 26 more") and message.count("Unknown field") == 4


# --- pages bounded in bytes -------------------------------------------------------------------


def raw_page(kit: Kit, member: Member, since: int, limit: int = 1000) -> bytes:
    path = kit.path("changes", f"since={since}&limit={limit}")
    resp = kit.transport.client.get(path, headers=kit.signed_headers("GET", path, member, b""))
    assert resp.status_code == 200
    return bytes(resp.data)


def test_pages_stop_at_the_byte_budget(kit: Kit, app: Any, vol: Member, coord: Member) -> None:
    """Issue 8: twenty 7.6 MB bundles made one 151 MB answer. Pages now stop before
    FIELDSYNC_PAGE_BYTES, with at least one bundle each."""
    big = [kit.seal(vol, {"note": f"{i:02d}" + "x" * 40_000}) for i in range(20)]
    for b in big:
        assert results(kit.push(vol, [b]))[0][0] == "accepted"
    sizes = {
        bid: size
        for bid, size in pool.get(paths_of(app).workspace_db(kit.workspace)).execute(
            "SELECT bundle_id, size FROM bundles"
        )
    }
    budget = 64 + 3 * (max(sizes.values()) + 10)  # room for three bundles, not four
    app.config["PAGE_BYTES"] = budget
    pages, since = [], 0
    while True:
        raw = raw_page(kit, coord, since)
        page = json.loads(raw)
        pages.append((len(raw), [b["bundle_id"] for b in page["bundles"]]))
        for b in page["bundles"]:  # the stored size is exactly what the page serves
            assert len(json.dumps(b, separators=(",", ":"))) == sizes[b["bundle_id"]]
        since = page["next"]
        if page["done"]:
            break
    assert [ids for _, ids in pages] == [
        [b.bundle_id for b in big[i : i + 3]] for i in range(0, 20, 3)
    ]
    assert all(n <= budget for n, _ in pages)
    app.config["PAGE_BYTES"] = 1000  # smaller than one bundle: one bundle per page
    assert [len(json.loads(raw_page(kit, coord, i))["bundles"]) for i in range(20)] == [1] * 20


def test_a_page_reads_no_more_than_it_returns(
    kit: Kit, app: Any, vol: Member, coord: Member
) -> None:
    """The first page costs the same whether 4 or 16 more bundles lie beyond it."""
    conn = pool.get(paths_of(app).workspace_db(kit.workspace))
    steps: list[int] = []
    for batch in (6, 12):
        for _ in range(batch):
            kit.push(vol, [kit.seal(vol, {"note": "y" * 40_000})])
        (size,) = conn.execute("SELECT max(size) FROM bundles").fetchone()
        app.config["PAGE_BYTES"] = 64 + 2 * (size + 10)
        count = [0]

        def step(count: list[int] = count) -> int:
            count[0] += 1
            return 0

        conn.set_progress_handler(step, 1)
        try:
            assert len(json.loads(raw_page(kit, coord, 0))["bundles"]) == 2
        finally:
            conn.set_progress_handler(None, 0)
        steps.append(count[0])
    assert steps[0] == steps[1]


# --- quotas -----------------------------------------------------------------------------------


def used(app: Any, kit: Kit, member: Member) -> tuple[int, int]:
    conn = pool.get(paths_of(app).workspace_db(kit.workspace))
    row = conn.execute(
        "SELECT bytes FROM usage WHERE device_id = ?", (member.device_id,)
    ).fetchone()
    (total,) = conn.execute(
        "SELECT coalesce(sum(size), 0) FROM bundles WHERE device_id = ?", (member.device_id,)
    ).fetchone()
    return (0 if row is None else row[0], total)


def test_a_device_quota_refuses_bundle_by_bundle(kit: Kit, app: Any, vol: Member) -> None:
    other = kit.member("volunteer")
    first = kit.seal(vol, {"n": 1})
    assert results(kit.push(vol, [first])) == [("accepted", 1)]
    small, large, small2 = (
        kit.seal(vol, {"n": 2}),
        kit.seal(vol, {"note": "z" * 20_000}),
        kit.seal(vol, {"n": 3}),
    )
    have = used(app, kit, vol)[0]
    assert have == stored.served_size(1, first)
    app.config["DEVICE_QUOTA"] = have + stored.served_size(2, small) + stored.served_size(3, small2)
    before = db_state(app.config["DATA_DIR"], nonces=False)
    resp = kit.push(vol, [small, large, small2])
    assert results(resp) == [("accepted", 2), ("rejected", "quota_exceeded"), ("accepted", 3)]
    quota = app.config["DEVICE_QUOTA"]
    have2 = have + stored.served_size(2, small)
    assert resp.body["results"][1]["error"]["message"] == (
        f"this device has {have2} bytes stored of its {quota}; this bundle needs"
        f" {stored.served_size(3, large)} more"
    )
    assert used(app, kit, vol) == (quota, quota)  # the usage row is the sum of what is stored
    assert db_state(app.config["DATA_DIR"], nonces=False) != before
    assert results(kit.push(other, [kit.seal(other, {"n": 1})])) == [("accepted", 4)]
    full = kit.seal(vol, {"n": 4})
    before = db_state(app.config["DATA_DIR"], nonces=False)
    assert results(kit.push(vol, [full])) == [("rejected", "quota_exceeded")]
    assert db_state(app.config["DATA_DIR"], nonces=False) == before


def test_below_the_free_disk_floor_a_push_stores_nothing(kit: Kit, app: Any, vol: Member) -> None:
    app.config["MIN_FREE_DISK"] = 2**62
    before = db_state(app.config["DATA_DIR"], nonces=False)
    resp = kit.push(vol, [kit.seal(vol, {"n": 1})])
    assert (resp.status, resp.body) == (
        507,
        {
            "error": {
                "code": "disk_full",
                "message": "the server is short of disk space and stores nothing for now",
            }
        },
    )
    assert db_state(app.config["DATA_DIR"], nonces=False) == before


# --- workspace creation: refusals decided by reads alone -----------------------------------


def test_creating_a_workspace_stores_nothing_when_refused(
    client: Any, app: Any, new_code: Any
) -> None:
    """Issue 8: a founder nonce was stored before the code was checked (100 codeless
    requests, 100 rows). Now each refusal leaves every file as it was, nonce files
    included, and a body over 64 KiB is refused before it is read."""
    from serverkit import FlaskTransport

    kit = Kit(FlaskTransport(client), seed=41)
    before = db_state(app.config["DATA_DIR"])
    for _ in range(3):
        assert kit.create_request("no-such-code-at-all").code == "bad_code"
    huge = json.dumps({"code": "x" * 70_000, "genesis": kit.genesis}).encode()
    headers = kit.signed_headers("POST", "/v1/workspaces", kit.founder, huge)
    resp = kit.transport.send("POST", "/v1/workspaces", headers, huge)
    assert (resp.status, resp.code) == (413, "too_large")
    assert resp.body["error"]["message"] == "the body is larger than 65536 bytes"
    assert db_state(app.config["DATA_DIR"]) == before
    assert not any(paths_of(app).nonces.iterdir())
    code = new_code()
    assert kit.create_request(code).status == 201
    assert [p.name for p in paths_of(app).nonces.glob("*.sqlite")] == [f"{kit.workspace}.sqlite"]


# --- key-log refusals each have their code ---------------------------------------------------


def test_key_log_refusals_name_their_code(kit: Kit) -> None:
    invite_key = kit.invite("volunteer")
    device_key = keys.signing_key(b"\x05" * 32)
    other_id = keys.device_id_for(keys.public_bytes(keys.signing_key(b"\x06" * 32)))
    body = {
        "device_id": other_id,  # not the id of sign_pub
        "sign_pub": b64e(keys.public_bytes(device_key)),
        "hpke_pub": None,
        "role": "volunteer",
    }
    from protocol.keylog import invite_id_for

    event = sign_event(
        seq=kit.state.length,
        prev=kit.state.head,
        kind="enroll",
        at=kit.now(),
        signer=invite_id_for(keys.public_bytes(invite_key)),
        body=body,
        key=invite_key,
    )
    keyid = kit.invite_keyid(invite_key)
    mismatch = kit.request("POST", kit.path("enroll"), invite_key, {"event": event}, keyid=keyid)
    assert (mismatch.status, mismatch.body) == (
        400,
        {
            "error": {
                "code": "invalid_event",
                "message": f"invalid_event: device_mismatch: event {event['seq']} (enroll):"
                " the device id does not match its key",
            }
        },
    )
    wrong_kind = kit.request("POST", kit.path("log"), kit.founder, {"event": event})
    assert wrong_kind.body["error"]["message"] == (
        "invalid_event: wrong_kind: a enroll event does not go here"
    )
    other_invite = kit.invite("volunteer")
    wrong_signer = kit.request(
        "POST",
        kit.path("enroll"),
        other_invite,
        {"event": event},
        keyid=kit.invite_keyid(other_invite),
    )
    assert wrong_signer.body["error"]["message"] == (
        "invalid_event: wrong_signer: signed by another key than the request"
    )


# --- the refusal order of docs/PROTOCOL.md, HTTP API, step by step ------------------------


def test_refusals_come_in_the_documented_order(kit: Kit, app: Any, vol: Member) -> None:
    """Each request breaks two neighbouring steps of the table; the earlier one answers."""
    ws, other = kit.workspace, b64e(b"\x02" * 16)
    coord = kit.member("coordinator")
    pending = kit.member("coordinator", approve=False)
    revoked = kit.member("volunteer")
    old = kit.signed_headers("GET", kit.path("log"), revoked, b"")
    assert kit.transport.send("GET", kit.path("log"), old, b"").status == 200
    kit.revoke(revoked)
    spent = kit.invite("volunteer")
    assert kit.enroll(spent, "volunteer")[1].status == 201
    forged = keys.signing_key(b"\x0b" * 32)
    send = kit.transport.send

    def code(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> str | None:
        return send(method, path, headers, body).code

    got = []
    # 0 before 1: a declared length over the limit, unsigned; a wrong type, unsigned.
    app.config["MAX_CONTENT_LENGTH"] = 1000
    got.append(code("POST", kit.path("push"), {"Content-Type": "application/json"}, b" " * 2000))
    app.config["MAX_CONTENT_LENGTH"] = app.config["MAX_BODY"]
    got.append(code("POST", kit.path("push"), {"Content-Type": "text/plain"}, b"{}"))
    # 2 before 3: another label, and stale.
    h = kit.signed_headers("GET", kit.path("log"), vol, b"", created=kit.now() - 1000)
    got.append(code("GET", kit.path("log"), {k: v.replace("fs=", "xx=", 1) for k, v in h.items()}))
    # 3 before 4: stale, and signed for another workspace.
    got.append(
        code(
            "GET",
            kit.path("log"),
            kit.signed_headers(
                "GET",
                kit.path("log"),
                vol,
                b"",
                keyid=f"{other}.{vol.device_id}",
                created=kit.now() - 1000,
            ),
        )
    )
    # 4 before 5: another workspace's keyid on a path naming no workspace.
    path = f"/v1/w/{other}/log"
    got.append(code("GET", path, kit.signed_headers("GET", path, vol, b"", keyid=vol.keyid(ws))))
    # 5 before 6: no such workspace, and a forged signature.
    got.append(
        code(
            "GET",
            path,
            kit.signed_headers("GET", path, forged, b"", keyid=f"{other}.{vol.device_id}"),
        )
    )
    # 6 before 8: a revoked device's id with a forged signature.
    got.append(
        code(
            "GET",
            kit.path("log"),
            kit.signed_headers("GET", kit.path("log"), forged, b"", keyid=revoked.keyid(ws)),
        )
    )
    # 7 before 9: a spent invite, twice with one nonce.
    h = kit.signed_headers("GET", kit.path("log"), spent, b"", keyid=kit.invite_keyid(spent))
    got += [code("GET", kit.path("log"), h), code("GET", kit.path("log"), h)]
    # 8 before 9: a revoked device replays a request it made before its revocation.
    got.append(code("GET", kit.path("log"), old))
    # 9 before 10: a volunteer reuses a spent nonce on a route it may not use.
    first = kit.signed_headers("GET", kit.path("log"), vol, b"")
    assert send("GET", kit.path("log"), first, b"").status == 200
    nonce = first["Signature-Input"].split('nonce="')[1].split('"')[0]
    got.append(
        code(
            "GET",
            kit.path("changes"),
            kit.signed_headers("GET", kit.path("changes"), vol, b"", nonce=nonce),
        )
    )
    # 10 before 11: a pending coordinator on an admin route.
    got.append(
        code(
            "POST",
            kit.path("log"),
            kit.signed_headers("POST", kit.path("log"), pending, b"{}"),
            b"{}",
        )
    )
    # 11 before 12, and 12 before 14: every slot of the key taken.
    slots = paths_of(app).slots
    held = [inflight.acquire(slots, ws, k.device_id, 2) for k in (pending, coord) for _ in range(2)]
    got.append(
        code(
            "GET", kit.path("changes"), kit.signed_headers("GET", kit.path("changes"), pending, b"")
        )
    )
    h = kit.signed_headers("POST", kit.path("push"), coord, b"{}")
    got.append(code("POST", kit.path("push"), h, b'{"x":1}'))
    for slot in held:
        assert slot is not None
        slot.release()
    # 14 before the route: a body that is not the signed one, and not JSON either.
    got.append(
        code(
            "POST",
            kit.path("push"),
            kit.signed_headers("POST", kit.path("push"), coord, b"{}"),
            b"{",
        )
    )
    assert got == [
        "too_large",
        "unsupported_media_type",
        "bad_signature",
        "stale_signature",
        "wrong_workspace",
        "unknown_workspace",
        "bad_signature",
        "unknown_device",
        "unknown_device",
        "revoked_device",
        "replayed_nonce",
        "wrong_role",
        "not_approved",
        "busy",
        "bad_signature",
    ]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"[" * 30_000 + b"]" * 30_000, "too_deep"),
        (b"{" + b",".join(b'"k%d":0' % i for i in range(3000)) + b"}", "too_many_keys"),
        (b'{"code":"x","code":"y"}', "duplicate_key"),
    ],
)
def test_a_strangers_workspace_body_is_small_and_read_strictly(
    client: Any, app: Any, body: bytes, code: str
) -> None:
    """Issue 8: a deeply nested body was a RecursionError 500, unauthenticated, on
    `POST /v1/workspaces` once any signature headers were present. Its body is now read
    only under well-formed fresh signature headers, at most 64 KiB, by the strict parser."""
    from serverkit import FlaskTransport

    kit = Kit(FlaskTransport(client), seed=42)
    before = db_state(app.config["DATA_DIR"])
    headers = kit.signed_headers("POST", "/v1/workspaces", kit.founder, body)
    resp = kit.transport.send("POST", "/v1/workspaces", headers, body)
    assert (resp.status, resp.code) == (400, code)
    assert db_state(app.config["DATA_DIR"]) == before
