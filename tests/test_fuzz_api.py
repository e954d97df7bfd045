"""schemathesis against the real server: every answer is documented, none is a 5xx.

One `fieldsync-server run` (gunicorn with deploy/gunicorn.conf.py, and
FIELDSYNC_PUBLIC_URL set as the systemd unit sets it) hosts a workspace with real
devices of every standing. For each of them, and for a stranger, a member of another
workspace and nobody at all, schemathesis generates requests for every operation of
`/v1/openapi.json` (valid ones, and in negative mode invalid ones), each signed by
that device's key over the final URL and body `requests` sends (fuzzkit.SignRequest).
Each answer must have a documented status, content type and body
(`{"error": {"code", "message"}}` for refusals), and no worker may be lost.

Generated bodies rarely get past the wire schema, so test_fuzz_deep.py sends
valid requests with one mutation each, to reach the checks behind it. Stateful
fuzzing is not used: the document has no links, and every state change needs a
signature over data the server chose, which the signer here supplies but a link
could not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
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
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)
from servergun import Gunicorn, workspace_code
from serverkit import HttpTransport, Kit

from protocol import keys

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
WORKERS = budget(2, 4)


@dataclass
class FuzzEnv:
    server: Gunicorn
    kit: Kit
    roles: list[Role]
    schema: Any
    session: requests.Session
    # While the server engineer's fix is pending, a 500 for a query integer written in
    # other Unicode digits is a known bug, asserted in its own xfail test below; cases
    # that would only re-find it are filtered out, and only while the probe finds it.
    unicode_digits_bug: bool


def build_roles(kit: Kit, other: Kit) -> list[Role]:
    """A device of every standing, and three callers who are none of them."""
    coordinator = kit.member("coordinator")
    volunteer = kit.member("volunteer")
    pending = kit.member("coordinator", approve=False)
    revoked = kit.member("volunteer")
    kit.revoke(revoked)
    invite = kit.invite("volunteer")
    stranger = keys.signing_key(kit.random(32))
    stranger_id = keys.device_id_for(keys.public_bytes(stranger))
    ws = kit.workspace
    return [
        Role("admin", kit.founder.key, kit.founder.keyid(ws)),
        Role("coordinator", coordinator.key, coordinator.keyid(ws)),
        Role("volunteer", volunteer.key, volunteer.keyid(ws)),
        Role("pending", pending.key, pending.keyid(ws)),
        Role("revoked", revoked.key, revoked.keyid(ws)),
        Role("invite", invite, kit.invite_keyid(invite)),
        Role("stranger", stranger, f"{ws}.{stranger_id}"),
        Role("other_workspace", other.founder.key, other.founder.keyid(other.workspace)),
        Role("unsigned"),
    ]


def probe_unicode_digits(env_url: str, kit: Kit, role: Role) -> bool:
    resp = requests.get(
        f"{env_url}{kit.path('changes')}", params={"limit": "²"}, auth=role.auth(), timeout=60
    )
    return resp.status_code >= 500


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzEnv]:
    root = tmp_path_factory.mktemp("fuzz-api")
    server = Gunicorn(root / "data", workers=WORKERS, log_dir=root / "logs")
    server.env["FIELDSYNC_PUBLIC_URL"] = server.url  # as deploy/fieldsync.service sets it
    server.start()
    try:
        kit = Kit.create(HttpTransport(server.url), workspace_code(server.data_dir), seed=81)
        other = Kit.create(HttpTransport(server.url), workspace_code(server.data_dir), seed=82)
        roles = build_roles(kit, other)
        # Real bundles, and an epoch they are not sealed to: changes and rekey pages
        # then carry whole bundles, and their schemas are checked on real answers.
        author = kit.member("volunteer")
        sealed = [kit.seal(author, {"place": f"Orlen Gate {i}", "attended": i}) for i in range(3)]
        assert kit.push(author, sealed).status == 200
        kit.rotate()
        schema = schemathesis.openapi.from_url(server.url + "/v1/openapi.json")
        # Signatures come from the roles, not from generated `Signature` headers.
        schema.config.generation.update(with_security_parameters=False)
        coordinator = next(r for r in roles if r.name == "coordinator")
        with requests.Session() as session:
            session.headers["User-Agent"] = "fieldsync-fuzz-ua/1"
            yield FuzzEnv(
                server,
                kit,
                roles,
                schema,
                session,
                probe_unicode_digits(server.url, kit, coordinator),
            )
    finally:
        server.stop()


def has_other_digits(case: Any) -> bool:
    query = case.query or {}
    return any(
        any(ch.isdigit() and not ch.isascii() for ch in str(v))
        for v in (query.values() if isinstance(query, dict) else [query])
    )


def answer_code(resp: Any) -> str | None:
    try:
        return error_code(json.loads(resp.content))
    except ValueError:
        return "(not json)"


def fuzz_operation(env: FuzzEnv, op: Any, role: Role, mode: GenerationMode, tally: Tally) -> None:
    params = {"ws": env.kit.workspace} if "{ws}" in op.path else None
    strategy = op.as_strategy(generation_mode=mode, path_parameters=params)
    if env.unicode_digits_bug:
        strategy = strategy.filter(lambda c: not has_other_digits(c))
    checks = CHECKS + ([negative_data_rejection] if mode.is_negative else [])

    @fuzz_settings(short=4 if mode.is_positive else 3, long=120)
    @given(case=strategy)
    def one(case: Any) -> None:
        resp = case.call(base_url=env.server.url, session=env.session, auth=role.auth(), timeout=60)
        tally.record(role.name, op.label, resp.status_code, answer_code(resp))
        try:
            case.validate_response(resp, checks=checks)
        except (AssertionError, FailureGroup) as exc:
            tally.fail(resp.status_code, f"{role.name} {mode.value}: {exc}")

    one()


@pytest.mark.parametrize("mode", MODES, ids=[m.value for m in MODES])
def test_every_role_gets_documented_answers(fuzz: FuzzEnv, mode: GenerationMode) -> None:
    tally = Tally(f"schemathesis-{mode.value}")
    operations = [result.ok() for result in fuzz.schema.get_all_operations()]
    documented = {
        f"{m.upper()} {p}" for p, ops in fuzz.schema.raw_schema["paths"].items() for m in ops
    }
    # schemathesis leaves out the operation that serves the document it loaded.
    assert {op.label for op in operations} == documented - {"GET /v1/openapi.json"}
    for role in fuzz.roles:
        for op in operations:
            raw = op.definition.raw
            # The workspace in the path is always the fuzzed one (`path_parameters`).
            free = [p for p in raw.get("parameters", []) if p.get("name") != "ws"]
            if mode.is_negative and not free and "requestBody" not in raw:
                continue  # nothing in the request that could be made invalid
            fuzz_operation(fuzz, op, role, mode, tally)
    tally.publish(roles=len(fuzz.roles), operations=len(operations))
    assert tally.server_errors == [], "\n\n".join(tally.server_errors[:3])
    assert tally.off_schema == [], "\n\n".join(tally.off_schema[:3])
    # Whatever was generated: outsiders never got a workspace route to answer 2xx, and
    # every member got at least one (the key log, which any member may read). A revoked
    # device gets one, and only that one: the key log up to its revocation, so that it
    # can verify it before it destroys what it keeps (docs/PROTOCOL.md, Delivery).
    answered = [
        key.split(" ")
        for key in tally.answers
        if "/v1/w/{ws}/" in key and key.split(" ")[3].startswith("2")
    ]
    revocation = "/v1/w/{ws}/revocation"
    assert {path for role, _, path, *_ in answered if role == "revoked"} <= {revocation}
    granted = {role for role, _, path, *_ in answered if (role, path) != ("revoked", revocation)}
    members = {"admin", "coordinator", "volunteer", "pending", "invite"}
    assert granted == (members if mode.is_positive else granted & members)


def signed_get(env: FuzzEnv, role: str, path: str, query: dict[str, str]) -> tuple[int, Any]:
    auth = next(r for r in env.roles if r.name == role).auth()
    resp = env.session.get(env.server.url + path, params=query, auth=auth, timeout=60)
    try:
        return resp.status_code, error_code(resp.json())
    except ValueError:
        return resp.status_code, resp.text[:80]


def refused(answer: tuple[int, Any]) -> tuple[int, bool]:
    """A 400 with a coded error body (whichever code the fix picks)."""
    status, code = answer
    return status, isinstance(code, str) and code != "internal"


def test_query_integer_bounds(fuzz: FuzzEnv) -> None:
    path = fuzz.kit.path("changes")
    cases = [
        ({"limit": "0"}, (400, "invalid_request")),
        ({"limit": "1001"}, (400, "invalid_request")),
        ({"limit": "-1"}, (400, "invalid_request")),
        ({"limit": "+1"}, (400, "invalid_request")),
        ({"limit": " 1"}, (400, "invalid_request")),
        ({"limit": "1_0"}, (400, "invalid_request")),
        ({"limit": "0x10"}, (400, "invalid_request")),
        ({"since": "9" * 17}, (400, "invalid_request")),
        ({"since": str(2**53)}, (400, "invalid_request")),
        ({"limit": "1000", "since": str(2**53 - 1)}, (200, None)),
    ]
    got = [signed_get(fuzz, "coordinator", path, query) for query, _ in cases]
    assert got == [want for _, want in cases]


def test_query_integers_in_other_digits_are_refused(fuzz: FuzzEnv) -> None:
    path = fuzz.kit.path("changes")
    got = [signed_get(fuzz, "coordinator", path, {"limit": d}) for d in ("²", "①", "٣", "１")]
    assert [refused(answer) for answer in got] == [(400, True)] * 4


def test_deeply_nested_bodies_are_refused(fuzz: FuzzEnv) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    answers = []
    for role, label in (("admin", "POST /v1/workspaces"), ("volunteer", "POST /v1/w/{ws}/push")):
        op = fuzz.schema[label.split(" ")[1]]["POST"]
        path = label.split(" ")[1].replace("{ws}", fuzz.kit.workspace)
        auth = next(r for r in fuzz.roles if r.name == role).auth()
        resp = fuzz.session.post(
            fuzz.server.url + path,
            data=deep,
            headers={"Content-Type": "application/json"},
            auth=auth,
            timeout=60,
        )
        case = op.Case(path_parameters={"ws": fuzz.kit.workspace} if "{ws}" in label else None)
        case.validate_response(resp, checks=CHECKS)  # documented (400 or 413), no 5xx
        answers.append(resp.status_code < 500)
    assert answers == [True, True]


def test_no_worker_was_lost(fuzz: FuzzEnv) -> None:
    """Last in this module: the server survived everything above without losing a worker."""
    assert fuzz.server.proc is not None and fuzz.server.proc.poll() is None
    figures = worker_figures(fuzz.server.log_text(), WORKERS)
    publish("schemathesis-server", {**figures, "long": LONG})
    assert (figures["workers_lost"], figures["worker_timeouts"]) == (0, 0)
    assert "Traceback" not in fuzz.server.log_text()
