"""Invite strings: they decode, and a tampered, foreign, used, expired or unknown one is refused."""

from __future__ import annotations

import json
from typing import Any

import pytest
from corekit import TAG_KEY, Log, Member, seed, sign_key

from protocol import keys, roster
from protocol.encoding import b64d, b64e, canonical_json
from protocol.errors import InvalidInvite
from protocol.invite import PREFIX, check_invite, decode_invite, encode_invite
from protocol.keylog import apply_event

FOUNDER = Member("founder", True)
COORDINATOR = Member("coordinator", True)
INVITE_KEY = sign_key("invite/volunteer")

LOG = Log(FOUNDER)
LOG.join(FOUNDER, COORDINATOR, "coordinator")
EXPIRES = Log.at(4) + Log.WEEK
LOG.add(roster.invite(LOG.state, FOUNDER.key, INVITE_KEY, "volunteer", EXPIRES, Log.at(4)))
BEFORE_ENROLL = LOG.state
NOW = Log.at(5)


def fields(**changes: Any) -> dict[str, Any]:
    out = {
        "server": "https://sync.example.org",
        "workspace": LOG.state.workspace,
        "root": LOG.root,
        "role": "volunteer",
        "expires": EXPIRES,
        "tag_key": b64e(TAG_KEY),
        "invite_seed": b64e(seed("invite/volunteer")),
        "admin": FOUNDER.id,
    }
    out.update(changes)
    return out


TEXT = encode_invite(fields(), FOUNDER.key)


def refusal(invite: dict[str, Any], state: Any = BEFORE_ENROLL, now: int = NOW) -> str:
    with pytest.raises(InvalidInvite) as info:
        check_invite(invite, state, now)
    return info.value.code


def reencoded(body: dict[str, Any]) -> str:
    return PREFIX + b64e(canonical_json(body))


def test_round_trip_and_check() -> None:
    invite = decode_invite(TEXT)
    assert invite == {**fields(), "sig": invite["sig"]}
    check_invite(invite, BEFORE_ENROLL, NOW)
    assert decode_invite("  " + TEXT + "\n") == invite  # pasted with whitespace


@pytest.mark.parametrize("field", ["server", "workspace", "root", "tag_key", "admin"])
def test_tampered_field(field: str) -> None:
    body = decode_invite(TEXT)
    body[field] = {
        "server": "https://evil.example.net",
        "workspace": b64e(seed("other workspace", 16)),
        "root": b64e(seed("other root")),
        "tag_key": b64e(seed("other tag key")),
        "admin": COORDINATOR.id,
    }[field]
    tampered = decode_invite(reencoded(body))
    expected = "wrong_workspace" if field in ("workspace", "root") else "tampered"
    assert refusal(tampered) == expected


def test_role_or_expiry_raised_by_the_inviting_admin_itself() -> None:
    # Signed by the admin, but the key log says otherwise: the log wins.
    for change in ({"role": "admin"}, {"expires": EXPIRES + 1}):
        forged = decode_invite(encode_invite(fields(**change), FOUNDER.key))
        assert refusal(forged) == "tampered"


def test_signature_of_a_non_admin() -> None:
    by_coordinator = decode_invite(encode_invite(fields(admin=COORDINATOR.id), COORDINATOR.key))
    assert refusal(by_coordinator) == "tampered"


def test_other_workspace() -> None:
    other = Log(FOUNDER, workspace=b64e(seed("other workspace", 16)))
    assert refusal(decode_invite(TEXT), state=other.state) == "wrong_workspace"


def test_used() -> None:
    volunteer = Member("volunteer", False)
    enroll = roster.enroll(BEFORE_ENROLL, INVITE_KEY, volunteer.key, "volunteer", None, NOW)
    after = apply_event(BEFORE_ENROLL, enroll)
    assert refusal(decode_invite(TEXT), state=after) == "used"


def test_expired() -> None:
    assert refusal(decode_invite(TEXT), now=EXPIRES + 1) == "expired"
    check_invite(decode_invite(TEXT), BEFORE_ENROLL, EXPIRES)  # the last valid second


def test_unknown() -> None:
    never_logged = fields(invite_seed=b64e(seed("never logged")))
    assert refusal(decode_invite(encode_invite(never_logged, FOUNDER.key))) == "unknown"


def test_invite_id_is_what_the_log_names() -> None:
    seed_bytes = b64d(fields()["invite_seed"])
    public = keys.public_bytes(keys.signing_key(seed_bytes))
    assert LOG.events[-1]["body"]["invite_key"] == b64e(public)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "fieldsync-invite",
        "https://sync.example.org/join",
        PREFIX + "not base64!",
        PREFIX + b64e(b"not json"),
        PREFIX + b64e(b"[]"),
        TEXT[:-4],
        TEXT + "A",
    ],
    ids=[
        "empty",
        "prefix only",
        "url",
        "bad base64",
        "not json",
        "a list",
        "truncated",
        "extended",
    ],
)
def test_malformed_strings(text: str) -> None:
    with pytest.raises(InvalidInvite) as info:
        decode_invite(text)
    assert info.value.code == "malformed"


@pytest.mark.parametrize(
    "change",
    [
        lambda b: b.update(extra="field"),
        lambda b: b.pop("admin"),
        lambda b: b.update(expires=1.5),
        lambda b: b.update(expires=2**60),
    ],
    ids=["extra field", "missing field", "float", "huge integer"],
)
def test_malformed_bodies(change: Any) -> None:
    body = decode_invite(TEXT)
    change(body)
    with pytest.raises(InvalidInvite) as info:
        decode_invite(PREFIX + b64e(json.dumps(body).encode()))
    assert info.value.code == "malformed"


def test_non_canonical_json_is_refused() -> None:
    body = decode_invite(TEXT)
    spaced = json.dumps(body, indent=1).encode()
    with pytest.raises(InvalidInvite) as info:
        decode_invite(PREFIX + b64e(spaced))
    assert info.value.code == "malformed"
