"""The key log from a device's side: fetch and verify it, append to it, and the admin's
roster changes (approve, revoke, rotate) and the re-key that follows a rotation.

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

from protocol import crypto, keylog, keys, roster
from protocol.errors import InvalidBundle, InvalidKeyLog
from protocol.model import ZERO_HASH, Bundle
from schemas.wire import KeyLogSchema, RekeyPendingResponseSchema, error_messages

from .errors import CliError, IntegrityError, NetworkError, NotAllowed, ServerError
from .profile import Profile
from .progress import Progress
from .transport import Client

_KEYLOG = KeyLogSchema()
_REKEY_PAGE = RekeyPendingResponseSchema()
REKEY_PAGE = 200


def client_for(prof: Profile) -> Client:
    return Client(prof.server, prof.workspace_id, prof.device_key, prof.device_id)


def _verify_failure(exc: InvalidKeyLog) -> IntegrityError:
    if exc.code == "rollback":
        return IntegrityError(
            f"the server's key log was rolled back ({exc.reason}); do not trust this server"
        )
    if exc.code == "fork":
        return IntegrityError(
            f"the server's key log is a fork of the one this device saw ({exc.reason});"
            " do not trust this server"
        )
    return IntegrityError(f"the server's key log does not verify: {exc.code}: {exc.reason}")


def fetch_log(
    client: Client, root: str, seen: tuple[int, str] | None = None
) -> tuple[list[dict[str, Any]], keylog.KeyLogState]:
    """The whole log, verified from `root`. Small: a few events per roster change."""
    answer = client.get(f"/v1/w/{client.workspace}/log", {"since": 0})
    try:
        data = _KEYLOG.load(answer)
    except ValidationError as exc:
        first = error_messages(exc.messages)[0]
        raise IntegrityError(f"the server's key log is malformed: {first}") from None
    events: list[dict[str, Any]] = data["events"]
    if data["length"] != len(events):
        raise IntegrityError("the server's key log is incomplete: its length and events differ")
    try:
        state = keylog.verify_log(events, root, seen)
    except InvalidKeyLog as exc:
        raise _verify_failure(exc) from None
    return events, state


def refresh_log(prof: Profile, client: Client) -> keylog.KeyLogState:
    """Fetch, verify against what this device saw, keep; refuse if this device was revoked."""
    events, state = fetch_log(client, prof.state["root"], prof.seen)
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
    if target.is_keyholder:
        rotate(prof, client)
        return True
    return False


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


def rekey(prof: Profile, client: Client, page_size: int = REKEY_PAGE) -> int:
    """Re-seal every stored bundle's data key to the current epoch; resumable. Returns count."""
    prof.require_admin("re-key the workspace")
    ws = client.workspace
    done = 0
    with Progress("re-keying") as bar:
        while True:
            try:
                page = _REKEY_PAGE.load(client.get(f"/v1/w/{ws}/rekey", {"limit": page_size}))
            except ValidationError as exc:
                first = error_messages(exc.messages)[0]
                raise IntegrityError(f"the server's re-key page is malformed: {first}") from None
            if not page["bundles"]:
                return done
            if bar.total is None:
                bar.total = page["remaining"] or len(page["bundles"])
            state = prof.log()
            target = page["target_epoch"]
            if target != state.current_epoch:
                state = refresh_log(prof, client)
            if target != state.current_epoch:
                raise IntegrityError("the server re-keys to an epoch that is not the log's current")
            epoch_keys = prof.epoch_keys()
            items = []
            failed = []
            for item in page["bundles"]:
                old = epoch_keys.get(item["key_epoch"])
                if item["workspace"] != ws or old is None:
                    failed.append(item["bundle_id"])
                    continue
                stub = Bundle(
                    workspace=ws,
                    bundle_id=item["bundle_id"],
                    device_id=prof.device_id,
                    seq=1,
                    prev=ZERO_HASH,
                    epoch=item["key_epoch"],
                    key_commit=item["key_commit"],
                    cells=(),
                    key_epoch=item["key_epoch"],
                    sealed_key=item["sealed_key"],
                    sig="",
                )
                try:
                    sealed = crypto.rekey_sealed_key(stub, old, target, state.epochs[target])
                except InvalidBundle:
                    failed.append(item["bundle_id"])
                    continue
                items.append(
                    {"bundle_id": item["bundle_id"], "key_epoch": target, "sealed_key": sealed}
                )
            if not items:
                raise IntegrityError(
                    f"{len(failed)} stored bundle keys do not open with this device's epoch"
                    f" keys (first: {failed[0]}); the re-key cannot finish"
                )
            answer = client.post(f"/v1/w/{ws}/rekey", {"items": items}, retry=True)
            updated = int(answer.get("updated", 0)) if isinstance(answer, dict) else 0
            if updated == 0:
                raise CliError("the server re-keyed nothing on this page: run it again later")
            done += updated
            bar.advance(updated)
