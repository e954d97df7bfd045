"""The key log from a device's side: fetch and verify it, append to it, and the admin's
roster changes (approve, revoke, rotate). The re-key that follows a rotation is in
`rekey.py`.

Every log the server serves is verified from the root this device pinned, against
the (length, head) it saw last: a shorter log is a rollback and a different one is
a fork, and either stops the command before anything is sealed or sent.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from marshmallow import ValidationError

from protocol import keylog, keys, roster
from protocol.errors import InvalidKeyLog
from schemas.wire import KeyLogSchema, error_messages

from .errors import CliError, IntegrityError, NetworkError, NotAllowed, ServerError
from .profile import Profile
from .transport import Client

_KEYLOG = KeyLogSchema()


def client_for(prof: Profile) -> Client:
    return Client(prof.server, prof.workspace_id, prof.device_key, prof.device_id)


# Failures that mean no admin (or invite) key of the log signed the event as served.
_UNSIGNED = ("bad_signature", "unknown_signer", "signer_revoked", "signer_not_admin")
_FORGED = ("unknown_signer", "signer_revoked", "signer_not_admin", "unknown_invite")
_DISTRUST = "; do not trust this server"


def _verify_failure(
    exc: InvalidKeyLog, served: list[dict[str, Any]], known: list[dict[str, Any]]
) -> IntegrityError:
    """One message per lie, so that what the server did is said plainly."""
    if exc.code == "rollback":
        return IntegrityError(f"the server's key log was rolled back ({exc.reason}){_DISTRUST}")
    if exc.code == "fork":
        return IntegrityError(
            f"the server's key log is a fork of the one this device saw ({exc.reason}){_DISTRUST}"
        )
    head = "the server's key log does not verify: "
    seq = exc.seq
    event = served[seq] if seq is not None and seq < len(served) else None
    kind = event.get("kind") if isinstance(event, dict) else None
    if kind == "rotate" and exc.code in _UNSIGNED:
        return IntegrityError(
            f"{head}event {seq} (rotate) carries an epoch key that no admin signed;"
            f" nothing was sealed to it{_DISTRUST}"
        )
    if seq is not None and seq < len(known) and event != known[seq]:
        return IntegrityError(
            f"{head}an altered event: event {seq} ({kind}) differs from the copy this device"
            f" verified{_DISTRUST}"
        )
    if exc.code in _FORGED:
        return IntegrityError(f"{head}a forged event: {exc.reason}{_DISTRUST}")
    return IntegrityError(f"{head}{exc.code}: {exc.reason}")


def load_log(client: Client) -> list[dict[str, Any]]:
    """The whole log as the server serves it, shape-checked but not yet verified."""
    answer = client.get(f"/v1/w/{client.workspace}/log", {"since": 0})
    try:
        data = _KEYLOG.load(answer)
    except ValidationError as exc:
        first = error_messages(exc.messages)[0]
        raise IntegrityError(f"the server's key log is malformed: {first}") from None
    events: list[dict[str, Any]] = data["events"]
    if data["length"] != len(events):
        raise IntegrityError("the server's key log is incomplete: its length and events differ")
    return events


def verify_served(
    events: list[dict[str, Any]],
    root: str,
    seen: tuple[int, str] | None = None,
    known: list[dict[str, Any]] | None = None,
) -> keylog.KeyLogState:
    """Verify a served log from `root`; `known` is the copy this device verified before."""
    try:
        return keylog.verify_log(events, root, seen)
    except InvalidKeyLog as exc:
        raise _verify_failure(exc, events, known or []) from None


def fetch_log(
    client: Client,
    root: str,
    seen: tuple[int, str] | None = None,
    known: list[dict[str, Any]] | None = None,
) -> tuple[list[dict[str, Any]], keylog.KeyLogState]:
    """The whole log, verified from `root`. Small: a few events per roster change."""
    events = load_log(client)
    return events, verify_served(events, root, seen, known)


def refresh_log(prof: Profile, client: Client) -> keylog.KeyLogState:
    """Fetch, verify against what this device saw, keep; refuse if this device was revoked."""
    events, state = fetch_log(client, prof.state["root"], prof.seen, prof.state["log"])
    prof.adopt_log(events, state)
    prof.require_active()
    return state


def append(
    prof: Profile, client: Client, build: Callable[[keylog.KeyLogState], dict[str, Any]]
) -> keylog.KeyLogState:
    """Append one admin event; when another admin appended first, rebuild on the new head."""
    for _ in range(3):
        state = prof.log()
        event = build(state)
        try:
            after = keylog.apply_event(state, event, int(time.time()))
        except InvalidKeyLog as exc:
            raise CliError(f"the key-log event would be refused: {exc.reason}") from None
        try:
            answer = client.post(f"/v1/w/{client.workspace}/log", {"event": event})
        except ServerError as exc:
            if exc.code != "log_conflict":
                raise
            refresh_log(prof, client)
            continue
        except NetworkError:
            # The answer may be lost after the server committed: look before failing.
            state2 = refresh_log(prof, client)
            if state2.length > event["seq"] and prof.state["log"][event["seq"]] == event:
                return state2
            raise
        if not isinstance(answer, dict) or answer.get("head") != after.head:
            raise IntegrityError("the server acknowledged a key-log head that is not this event's")
        prof.adopt_log([*prof.state["log"], event], after)
        return after
    raise CliError("the key log keeps changing under this command: try again in a moment")


def approve(prof: Profile, client: Client, device_id: str) -> None:
    prof.require_admin("approve devices")
    state = refresh_log(prof, client)
    target = state.devices.get(device_id)
    if target is None:
        raise CliError(f"no device {device_id} in this workspace: see `fieldsync devices`")
    if not target.is_keyholder:
        raise CliError(f"{device_id} is a volunteer: volunteers need no approval")
    if target.status != "pending":
        raise CliError(f"{device_id} is {target.status}, not waiting for approval")
    epoch_keys = prof.epoch_keys()
    missing = sorted(set(state.epochs) - set(epoch_keys))
    if missing:
        raise NotAllowed(f"this device lacks the key of epoch {missing[0]} and cannot approve")
    append(
        prof,
        client,
        lambda st: roster.approve(st, prof.device_key, device_id, epoch_keys, int(time.time())),
    )


def revoke(prof: Profile, client: Client, device_id: str) -> bool:
    """Revoke a device; a keyholder's revocation rotates the epoch key too. True if rotated."""
    prof.require_admin("revoke devices")
    state = refresh_log(prof, client)
    target = state.devices.get(device_id)
    if target is None:
        raise CliError(f"no device {device_id} in this workspace: see `fieldsync devices`")
    if target.status == "revoked":
        raise CliError(f"{device_id} is already revoked")
    append(prof, client, lambda st: roster.revoke(st, prof.device_key, device_id, int(time.time())))
    if not target.is_keyholder:
        return False
    try:
        rotate(prof, client)
    except CliError as exc:
        # The revocation stands; the keys it held must still be replaced.
        raise CliError(
            f"revoked {device_id}, but rotating the epoch key failed ({exc.message}):"
            " run `fieldsync rotate` now",
            exc.exit_code,
        ) from None
    return True


def rotate(prof: Profile, client: Client) -> int:
    """A new epoch key, sealed to every remaining active keyholder. Returns its number."""
    prof.require_admin("rotate the epoch key")
    refresh_log(prof, client)
    # 96 fresh random bytes: the ML-KEM-768 seed and the X25519 private key.
    pair = keys.HpkeKeyPair.from_seed(os.urandom(keys.HPKE_PRIV_LEN))
    state = append(
        prof, client, lambda st: roster.rotate(st, prof.device_key, pair, int(time.time()))
    )
    return state.current_epoch
