"""hypothesis on the core's verifiers, fed mutated versions of valid input.

A key log with one event mutated, a signed request with one header (or the method,
URL or body) mutated, a sealed bundle with one field mutated. Each verifier either
accepts, and then only when nothing it covers changed, or refuses with its own
typed error and a code from a known list: never another exception.
"""

from __future__ import annotations

import copy
from typing import Any

from corekit import T0, TAG_KEY, WORKSPACE, Log, Member, device_id, hpke_pair, sign_key
from fuzzkit import counted, fuzz_settings, json_values
from hypothesis import given
from hypothesis import strategies as st
from marshmallow import ValidationError
from mutate import RESPELL, mutated_value, pick

from protocol import crypto
from protocol.encoding import b64e
from protocol.errors import InvalidBundle, InvalidKeyLog
from protocol.httpsig import AuthError, sign_request, verify_request
from protocol.keylog import apply_event, verify_log
from protocol.model import ZERO_HASH, Bundle, CellInput
from schemas.wire import AppendEventSchema, BundleSchema

# --- the key log ---------------------------------------------------------------------

FOUNDER = Member("fuzz-founder", True)
COORDINATOR = Member("fuzz-coordinator", True)
VOLUNTEER = Member("fuzz-volunteer", False)


def build() -> Log:
    """Every kind of event: genesis, invite, enroll, approve, revoke, rotate."""
    log = Log(FOUNDER)
    log.join(FOUNDER, COORDINATOR, "coordinator")
    log.join(FOUNDER, VOLUNTEER, "volunteer")
    log.revoke(FOUNDER, VOLUNTEER)
    log.rotate(FOUNDER)
    return log


LOG = build()
KEYLOG_CODES = {
    "bad_genesis", "bad_chain", "bad_signature", "malformed", "bad_epoch", "bad_sealing",
    "unknown_signer", "signer_revoked", "signer_not_admin", "bad_role", "invite_reused",
    "invite_expired", "unknown_invite", "invite_used", "device_exists", "bad_target",
    "last_admin", "genesis_mismatch", "fork", "empty", "rollback",
}  # fmt: skip


@st.composite
def mutated_log(draw: st.DrawFn) -> tuple[int, list[Any]]:
    i = draw(st.integers(0, len(LOG.events) - 1))
    events = list(LOG.events)
    events[i] = draw(mutated_value(events[i]))
    return i, events


# What an event's signature and hash cover; other members are ignored by the verifier
# (and refused on the wire by KeyLogEventSchema).
SIGNED_MEMBERS = ("seq", "prev", "kind", "at", "signer", "body", "sig")


def signed_part(event: Any) -> Any:
    if not isinstance(event, dict):
        return event
    return {k: event.get(k, "(absent)") for k in SIGNED_MEMBERS}


@fuzz_settings(short=150, long=10_000)
@given(mutated_log())
@counted
def test_a_mutated_key_log_verifies_only_unchanged(case: tuple[int, list[Any]]) -> None:
    i, events = case
    try:
        state = verify_log(events, LOG.root)
    except InvalidKeyLog as exc:
        assert exc.code in KEYLOG_CODES, exc
        # The event that was changed is the one named (a null genesis reads as "empty").
        assert exc.seq == i or (exc.code, i, events[0]) == ("empty", 0, None), exc
        return
    assert signed_part(events[i]) == signed_part(LOG.events[i])
    assert state.head == LOG.state.head


@fuzz_settings(short=150, long=10_000)
@given(st.data())
@counted
def test_an_event_the_server_would_load_is_applied_or_refused(data: st.DataObject) -> None:
    """The server's path: AppendEventSchema, then apply_event with the server's clock."""
    i = data.draw(st.integers(1, len(LOG.events) - 1))
    event = data.draw(mutated_value(LOG.events[i]) | json_values)
    try:
        loaded = AppendEventSchema().load({"event": event})["event"]
    except ValidationError:
        return
    try:
        apply_event(LOG.states[i - 1], loaded, now=Log.at(i))
    except InvalidKeyLog as exc:
        assert exc.code in KEYLOG_CODES, exc
        return
    assert signed_part(loaded) == signed_part(LOG.events[i])


# --- request signatures --------------------------------------------------------------

KEY = sign_key("fuzz-request")
KEYID = f"{WORKSPACE}.{device_id(KEY)}"
URL = f"https://sync.example.org/v1/w/{WORKSPACE}/push?n=1"
BODY = b'{"bundles":[]}'
SIGNED = sign_request(
    method="POST", url=URL, body=BODY, key=KEY, keyid=KEYID, created=T0, nonce=b64e(bytes(16))
)
AUTH_CODES = {"missing_signature", "bad_signature", "stale_signature", "unknown_device"}


def lookup(keyid: str) -> bytes:
    if keyid != KEYID:
        raise AuthError("unknown_device", "no such device")
    return KEY.public_key().public_bytes_raw()


@st.composite
def header_value(draw: st.DrawFn, value: str) -> str:
    how = draw(st.sampled_from(["char", "cut", "insert", "any", "sf"]))
    i = pick(draw, list(range(len(value))))
    if how == "char":
        return (
            value[:i]
            + pick(draw, [*RESPELL, "A", ";", ",", '"', ":", "(", ")", "="])
            + value[i + 1 :]
        )
    if how == "cut":
        return value[:i] + value[i + 1 :]
    if how == "insert":
        return value[:i] + draw(st.text(max_size=8)) + value[i:]
    if how == "sf":  # another structured-field member or parameter
        extra = draw(
            st.sampled_from([", fs2=:AAAA:", ";alg=1", ";created=1", ';keyid=""', ", fs=?0"])
        )
        return value + extra
    return draw(st.text(max_size=100))


@st.composite
def mutated_request(draw: st.DrawFn) -> tuple[str, str, bytes, list[tuple[str, str]]]:
    headers = list(SIGNED.items())
    method, url, body = "POST", URL, BODY
    what = draw(st.sampled_from(["header", "drop", "duplicate", "rename", "method", "url", "body"]))
    i = draw(st.integers(0, len(headers) - 1))
    name, value = headers[i]
    if what == "header":
        headers[i] = (name, draw(header_value(value)))
    elif what == "drop":
        del headers[i]
    elif what == "duplicate":
        headers.append((name, draw(header_value(value)) if draw(st.booleans()) else value))
    elif what == "rename":
        headers[i] = (draw(st.sampled_from([name.upper(), name.lower(), name + "x"])), value)
    elif what == "method":
        method = draw(st.sampled_from(["GET", "post", "PUT", "POST ", "", "P\u00d6ST"]))
    elif what == "url":
        url = draw(header_value(URL))
    else:
        body = draw(st.binary(max_size=30) | st.just(BODY + b" "))
    return method, url, body, headers


@fuzz_settings(short=300, long=20_000)
@given(mutated_request())
@counted
def test_a_mutated_request_verifies_only_when_what_it_signs_is_unchanged(
    req: tuple[str, str, bytes, list[tuple[str, str]]],
) -> None:
    method, url, body, headers = req
    try:
        signer = verify_request(
            method=method, url=url, headers=headers, body=body, public_key_for=lookup, now=T0
        )
    except AuthError as exc:
        assert exc.code in AUTH_CODES, exc
        return
    assert (method.upper(), url, body, signer.keyid) == ("POST", URL, BODY, KEYID)


# --- sealed bundles ------------------------------------------------------------------

DEVICE = sign_key("fuzz-bundle-device")
EPOCH = hpke_pair("epoch-1")
BUNDLE = crypto.seal_bundle(
    workspace=WORKSPACE,
    device_key=DEVICE,
    seq=1,
    prev=ZERO_HASH,
    epoch=1,
    epoch_public=EPOCH.public_bytes,
    tag_key=TAG_KEY,
    cells=[
        CellInput(b64e(bytes(16)), "picket", "place", "Sarybel Yard", T0 * 1000, ()),
        CellInput(b64e(bytes(16)), "picket", "attendance", 12, T0 * 1000, ()),
    ],
    random=lambda n: bytes(n),
)
WIRE = BUNDLE.to_wire()
BUNDLE_CODES = {
    "device_mismatch", "duplicate_cell", "cell_id", "encoding", "signature", "unknown_epoch",
    "key_commit", "cell_decrypt", "field_tag", "sealed_key",
}  # fmt: skip
# A re-key swaps these two: the signature does not cover them, the key commitment does.
UNSIGNED = ("key_epoch", "sealed_key")


@fuzz_settings(short=150, long=10_000)
@given(mutated_value(WIRE))
@counted
def test_a_mutated_bundle_opens_only_unchanged(wire: Any) -> None:
    try:
        bundle = Bundle.from_wire(BundleSchema().load(wire))
    except ValidationError:
        return
    public = DEVICE.public_key().public_bytes_raw()
    try:
        crypto.verify_bundle(bundle, public)
    except InvalidBundle as exc:
        assert exc.code in BUNDLE_CODES, exc
        return
    signed = {k: v for k, v in wire.items() if k not in UNSIGNED}
    assert signed == {k: v for k, v in WIRE.items() if k not in UNSIGNED}
    try:
        opened = crypto.open_bundle(bundle, public, {1: EPOCH.private_bytes}, TAG_KEY)
    except InvalidBundle as exc:
        assert exc.code in BUNDLE_CODES, exc
        return
    assert wire == WIRE
    assert [(c.field, c.value) for c in opened] == [("place", "Sarybel Yard"), ("attendance", 12)]


def test_the_unmutated_inputs_verify() -> None:
    """The fixtures above are valid, so every refusal in this file comes from a mutation."""
    assert verify_log(copy.deepcopy(LOG.events), LOG.root).head == LOG.state.head
    assert (
        verify_request(
            method="POST",
            url=URL,
            headers=list(SIGNED.items()),
            body=BODY,
            public_key_for=lookup,
            now=T0,
        ).keyid
        == KEYID
    )
    crypto.verify_bundle(
        Bundle.from_wire(BundleSchema().load(WIRE)), DEVICE.public_key().public_bytes_raw()
    )
