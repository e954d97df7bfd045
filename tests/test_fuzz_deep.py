"""Valid requests with one mutation each, signed and sent to the real server.

schemathesis' generated bodies stop at the wire schema (a random string is not a
sealed key). Here every request starts valid (a sealed bundle, a signed key-log
event, an enroll, a re-key page, a genesis with a real code), then hypothesis
changes one thing: a value replaced, a member removed or added, a value moved to
another field, the JSON bytes themselves flipped, a duplicate member, a wrapper.
The request is signed over the mutated bytes, so it reaches every check behind
the signature. Each answer must be documented in /v1/openapi.json, and none a 5xx.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from fuzzkit import (
    LONG,
    Role,
    Tally,
    budget,
    error_code,
    fuzz_settings,
    publish,
    worker_figures,
)
from hypothesis import given
from hypothesis import strategies as st
from mutate import mutated_json
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from servergun import Gunicorn
from serverkit import HttpTransport, Kit, Member, db_state

from protocol import keys, roster
from protocol.encoding import b64e
from protocol.keylog import verify_log
from server.store import Paths, server_db

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
WORKERS = budget(2, 4)


@dataclass
class Route:
    """One signed POST: a fresh valid request, and what to do once one is accepted."""

    operation: str
    path: str
    make: Callable[[], tuple[Role, Any]]
    after: Callable[[int, Any], None] = lambda status, answer: None


@dataclass
class DeepEnv:
    server: Gunicorn
    kit: Kit
    schema: Any
    session: requests.Session
    routes: list[Route]


def resync(kit: Kit) -> None:
    """After an accepted event: take the log the server holds (it may differ from ours)."""
    resp = kit.request("GET", kit.path("log"), kit.founder)
    assert resp.status == 200, resp
    kit.state = verify_log(resp.body["events"], kit.state.root)
    kit.events = resp.body["events"]


def routes(kit: Kit, data_dir: Path, bundle_ids: list[str]) -> list[Route]:
    ws = kit.workspace
    admin = Role("admin", kit.founder.key, kit.founder.keyid(ws))
    author = kit.member("volunteer")
    chain: dict[str, Any] = {}

    def push() -> tuple[Role, Any]:
        chain["before"] = (author.seq, author.prev)
        bundle = kit.seal(author, {"place": "Terek Bridge", "note": "mutated", "attended": 7})
        return Role("volunteer", author.key, author.keyid(ws)), {"bundles": [bundle.to_wire()]}

    def pushed(status: int, answer: Any) -> None:
        results = answer.get("results", []) if isinstance(answer, dict) else []
        if not (status == 200 and [r.get("status") for r in results] == ["accepted"]):
            author.seq, author.prev = chain["before"]  # not taken: the chain goes on from before

    def invite() -> tuple[Role, Any]:
        event = roster.invite(
            kit.state,
            kit.founder.key,
            keys.signing_key(kit.random(32)),
            "volunteer",
            expires=kit.now() + 3600,
            at=kit.now(),
        )
        return admin, {"event": event}

    def enroll() -> tuple[Role, Any]:
        invite_key = kit.invite("volunteer")
        device: Member = kit._member("volunteer", with_hpke=False)
        event = roster.enroll(kit.state, invite_key, device.key, "volunteer", None, at=kit.now())
        return Role("invite", invite_key, kit.invite_keyid(invite_key)), {"event": event}

    def rekey() -> tuple[Role, Any]:
        items = [
            {
                "bundle_id": bid,
                "key_epoch": kit.state.current_epoch,
                "sealed_key": b64e(kit.random(1168)),
            }
            for bid in bundle_ids
        ]
        return admin, {"items": items}

    def create() -> tuple[Role, Any]:
        founder = Kit(kit.transport, seed=kit.rng.randrange(2**32))
        code = server_db.new_code(Paths(data_dir), int(time.time()))
        keyid = founder.founder.keyid(founder.workspace)
        return Role("founder", founder.founder.key, keyid), {
            "code": code,
            "genesis": founder.genesis,
        }

    # Attachment chunks: a few uploaded, and the author's capture that would remove them.
    from protocol.attachment import seal_file, sign_release

    _, chunks = seal_file(
        kit.random(700),
        name="van.jpg",
        media_type="image/jpeg",
        captured_at="2026-12-04T18:30:05Z",
        random=kit.random,
        chunk_size=256,
    )
    for cid, ct in chunks:
        assert kit.put_chunk(author, cid, ct).status == 200
    removal = kit.push(author, [kit.seal(author, {"place": "Terek Bridge", "note": "removed"})])
    change = removal.body["results"][0]["seq"]
    chunk_ids = [cid for cid, _ in chunks]
    volunteer = Role("volunteer", author.key, author.keyid(ws))

    def missing() -> tuple[Role, Any]:
        return volunteer, {"chunks": chunk_ids}

    def release() -> tuple[Role, Any]:
        signed = sign_release(
            workspace=ws, device_key=author.key, change=change, chunks=chunk_ids, purge=False,
            at=kit.now(),
        )  # fmt: skip
        return volunteer, {"release": signed}

    log_path = kit.path("log")
    return [
        Route("POST /v1/w/{ws}/push", kit.path("push"), push, pushed),
        Route(
            "POST /v1/w/{ws}/log", log_path, invite, lambda status, _: status == 201 and resync(kit)
        ),
        Route(
            "POST /v1/w/{ws}/enroll",
            kit.path("enroll"),
            enroll,
            lambda status, _: status == 201 and resync(kit),
        ),
        Route("POST /v1/w/{ws}/rekey", kit.path("rekey"), rekey),
        Route("POST /v1/workspaces", "/v1/workspaces", create),
        Route("POST /v1/w/{ws}/chunks/missing", kit.path("chunks/missing"), missing),
        Route("POST /v1/w/{ws}/chunks/release", kit.path("chunks/release"), release),
    ]


@pytest.fixture(scope="module")
def deep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DeepEnv]:
    root = tmp_path_factory.mktemp("fuzz-deep")
    server = Gunicorn(root / "data", workers=WORKERS, log_dir=root / "logs")
    server.env["FIELDSYNC_PUBLIC_URL"] = server.url
    server.start()
    try:
        kit = Kit.create(
            HttpTransport(server.url),
            server_db.new_code(Paths(server.data_dir), int(time.time())),
            seed=91,
        )
        kit.member("coordinator")
        author = kit.member("volunteer")
        sealed = [kit.seal(author, {"place": f"Ayak Steps {i}", "attended": i}) for i in range(2)]
        assert kit.push(author, sealed).status == 200
        kit.rotate()
        schema = schemathesis.openapi.from_url(server.url + "/v1/openapi.json")
        with requests.Session() as session:
            session.headers["User-Agent"] = "fieldsync-fuzz-ua/1"
            yield DeepEnv(
                server,
                kit,
                schema,
                session,
                routes(kit, server.data_dir, [b.bundle_id for b in sealed]),
            )
    finally:
        server.stop()


@pytest.mark.parametrize(
    "route", range(7), ids=["push", "log", "enroll", "rekey", "create", "missing", "release"]
)
def test_mutated_valid_requests_get_documented_answers(deep: DeepEnv, route: int) -> None:
    r = deep.routes[route]
    op = deep.schema[r.operation.split(" ")[1]][r.operation.split(" ")[0]]
    tally = Tally(f"mutations-{r.operation}")
    ws = {"ws": deep.kit.workspace} if "{ws}" in r.operation else None

    @fuzz_settings(short=25, long=400)
    @given(data=st.data())
    def one(data: st.DataObject) -> None:
        role, body = r.make()
        raw = data.draw(mutated_json(body), label="body")
        resp = deep.session.post(
            deep.server.url + r.path,
            data=raw,
            headers={"Content-Type": "application/json"},
            auth=role.auth(),
            timeout=60,
        )
        try:
            answer = resp.json()
        except ValueError:
            answer = None
        code = error_code(answer)
        if isinstance(answer, dict) and isinstance(answer.get("results"), list):
            code = ",".join(f"{x.get('status')}:{error_code(x)}" for x in answer["results"])
        tally.record(role.name, r.operation, resp.status_code, code)
        r.after(resp.status_code, answer)
        case = op.Case(path_parameters=ws, body=body, media_type="application/json")
        try:
            case.validate_response(resp, checks=CHECKS)
        except (AssertionError, FailureGroup) as exc:
            tally.fail(resp.status_code, f"{r.operation} with body {raw[:300]!r}: {exc}")

    one()
    tally.publish()
    assert tally.server_errors == [], "\n\n".join(tally.server_errors[:3])
    assert tally.off_schema == [], "\n\n".join(tally.off_schema[:3])


def test_no_worker_was_lost(deep: DeepEnv) -> None:
    assert deep.server.proc is not None and deep.server.proc.poll() is None
    figures = worker_figures(deep.server.log_text(), WORKERS)
    publish("mutations-server", {**figures, "long": LONG})
    assert (figures["workers_lost"], figures["worker_timeouts"]) == (0, 0)
    assert "Traceback" not in deep.server.log_text()


def test_a_code_that_is_not_unicode_is_refused_and_stores_nothing(deep: DeepEnv) -> None:
    """Found while building this suite: a lone surrogate (JSON `\\ud800`) in the workspace
    code reached the code's UTF-8 hash and gave a 500, to anyone with a fresh key, after
    the founder's nonce was stored."""
    before = db_state(deep.server.data_dir)
    answers = []
    for code in ("\ud800" + "x" * 10, "x" * 10 + "\udfff"):
        founder = Kit(deep.kit.transport, seed=len(code) + ord(code[0]))
        resp = founder.create_request(code)
        answers.append((resp.status, resp.code))
    # Refused where JSON is read: a string from the network is valid Unicode or nothing.
    assert answers == [(400, "bad_string")] * 2
    assert db_state(deep.server.data_dir) == before
