"""A device's captures until a keyholder, not the server, confirms it holds them.

The server's acknowledgement means "stored for now": an acknowledged bundle moves
from the vault's `outbox` to `sent`, still sealed (this device cannot open it),
and stays there until a receipt it verifies against its own key log covers it
(`protocol.receipts`). So a server that is restored from an old backup, loses its
disk or holds bundles back cannot make a device forget what it recorded:

- on every sync the device asks the server for its stored head of this device's
  chain and re-sends the sent bundles the server no longer has (`lost_on_server`);
- after pushing it posts its own signed chain head, which keyholders compare with
  what they were served (client_sync/watch.py);
- captures sent longer than FIELDSYNC_RECEIPT_WARN_HOURS ago (default 48) without a
  receipt are named in `status` and after `sync`: the server may be holding them back;
- what it keeps is bounded (FIELDSYNC_KEEP_DAYS, FIELDSYNC_KEEP_MB): past the bound
  the oldest sent captures are dropped, with a warning, never silently;
- a device that learns, from its verified key log, that it was revoked destroys what
  it still keeps (it can never deliver it) and refuses new captures.

Vault state kept here (profile.py lists the rest):

    sent [{bundle, hash, sent_at}]   acknowledged by the server, no receipt yet
    sent_head [seq, hash]            the last bundle the server acknowledged
    acked                            the highest seq a verified receipt covered
    unconfirmed {count, first, last, through}   sent captures dropped by the bound
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NoReturn

from marshmallow import ValidationError

from protocol import receipts
from protocol.crypto import bundle_hash
from protocol.errors import InvalidReceipt
from protocol.model import ZERO_HASH, Bundle
from schemas.wire import ChainResponseSchema, RevocationResponseSchema

from .errors import CliError, IntegrityError, NotAllowed, ServerError
from .keyring import refresh_log, verify_served
from .profile import Profile
from .transport import Client

WARN_HOURS = 48.0
KEEP_DAYS = 60.0
KEEP_MB = 20.0
REVOKED = "this device was revoked by a coordinator; it can no longer sync"
_CHAIN = ChainResponseSchema()
_REVOCATION = RevocationResponseSchema()


def now() -> float:
    """The clock of delivery decisions (warnings, the retention bound).

    FIELDSYNC_TEST_CLOCK_SHIFT (seconds) moves it, for the test suite only: honoured
    under pytest alone (like FIELDSYNC_KDF_FAST), so a stray variable cannot make a
    real device drop captures early. Request signatures always use the real clock.
    """
    shift = os.environ.get("FIELDSYNC_TEST_CLOCK_SHIFT")
    if shift and os.environ.get("PYTEST_CURRENT_TEST"):
        return time.time() + float(shift)
    return time.time()


def setting(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise CliError(f"{name} must be a number of at least 0, not {raw!r}")
    return value


# --- what is kept -------------------------------------------------------------------------


def sent(prof: Profile) -> list[dict[str, Any]]:
    kept: list[dict[str, Any]] = prof.state.setdefault("sent", [])
    return kept


def sent_head(prof: Profile) -> tuple[int, str]:
    seq, h = prof.state.get("sent_head") or (0, ZERO_HASH)
    return int(seq), str(h)


def mark_sent(prof: Profile, bundles: list[dict[str, Any]]) -> None:
    """The server acknowledged these bundles (accepted, or stored before): keep them
    sealed until a receipt covers them."""
    t = int(now())
    kept = sent(prof)
    known = {e["bundle"]["bundle_id"] for e in kept}
    seq, _ = sent_head(prof)
    for wire in bundles:
        h = bundle_hash(Bundle.from_wire(wire))
        if wire["bundle_id"] not in known:
            kept.append({"bundle": wire, "hash": h, "sent_at": t})
        if wire["seq"] > seq:
            seq = wire["seq"]
            prof.state["sent_head"] = [seq, h]
    kept.sort(key=lambda e: int(e["bundle"]["seq"]))


def _own_hash(prof: Profile, seq: int) -> str | None:
    """This device's bundle hash at `seq`, while it still knows it."""
    head_seq, head_hash = sent_head(prof)
    if seq == head_seq:
        return head_hash
    for e in sent(prof):
        if e["bundle"]["seq"] == seq:
            return str(e["hash"])
    return None


def _date(prof: Profile, entry: dict[str, Any]) -> str:
    note = prof.state.get("notes", {}).get(entry["bundle"]["bundle_id"], {})
    at = note.get("at")
    if isinstance(at, str) and len(at) >= 10:
        return at[:10]
    return datetime.fromtimestamp(entry["sent_at"], tz=UTC).strftime("%Y-%m-%d")


def _span(first: str, last: str) -> str:
    return first if first == last else f"{first} to {last}"


def _forget(prof: Profile, entries: list[dict[str, Any]]) -> None:
    gone = {e["bundle"]["bundle_id"] for e in entries}
    prof.state["sent"] = [e for e in sent(prof) if e["bundle"]["bundle_id"] not in gone]
    notes = prof.state.get("notes", {})
    for bid in gone:
        notes.pop(bid, None)


# --- one sync ------------------------------------------------------------------------------


@dataclass
class Settled:
    """What a sync's receipts and the retention bound did to what this device keeps."""

    confirmed: int = 0  # sent captures a verified receipt covered (dropped here)
    refused: list[str] = field(default_factory=list)  # one line per receipt refused
    dropped: list[str] = field(default_factory=list)  # the retention bound's warnings


def refresh_or_revoked(prof: Profile, client: Client) -> None:
    """Fetch and verify the key log; when this device turns out revoked, act on it."""
    try:
        refresh_log(prof, client)
    except ServerError as exc:
        if exc.code != "revoked_device":
            raise
        learn_revocation(prof, client)
    except NotAllowed:
        if prof.me().status != "revoked":
            raise
        destroy_and_refuse(prof)


def learn_revocation(prof: Profile, client: Client) -> NoReturn:
    """The server refuses this device as revoked. Believe only the key log: the server
    serves it up to the revoke event, and an admin's signature on that event is what
    lets this device destroy what it keeps. A server that says so without proof only
    gets refused."""
    try:
        answer = client.get(f"/v1/w/{client.workspace}/revocation")
        events = _REVOCATION.load(answer)["events"]
    except ServerError as exc:
        if exc.code in ("wrong_role", "revoked_device", "not_found"):
            raise IntegrityError(
                "the server refuses this device as revoked but does not show a revocation in"
                " its key log; nothing was destroyed; do not trust this server"
            ) from None
        raise
    except ValidationError:
        raise IntegrityError("the server's revocation answer is malformed") from None
    state = verify_served(events, prof.state["root"], prof.seen, prof.state["log"])
    me = state.devices.get(prof.device_id)
    if me is None or me.status != "revoked":
        raise IntegrityError(
            "the server refuses this device as revoked but its key log does not revoke it;"
            " nothing was destroyed; do not trust this server"
        )
    prof.adopt_log(events, state)
    destroy_and_refuse(prof)


def destroy_and_refuse(prof: Profile) -> NoReturn:
    """Revoked: nothing this device keeps can be delivered by it any more."""
    n = len(prof.state["outbox"]) + len(sent(prof)) + len(prof.state.get("rejected", []))
    prof.state["outbox"] = []
    prof.state["sent"] = []
    prof.state["rejected"] = []
    prof.state["notes"] = {}
    from .attachments import destroy

    destroy(prof)  # the chunks of those captures go with them
    prof.save()
    if n:
        raise NotAllowed(
            f"{REVOKED}; the {n} sealed capture(s) it still kept were destroyed, as it can"
            " no longer deliver them"
        )
    raise NotAllowed(REVOKED)


def check_can_capture(prof: Profile) -> None:
    if prof.me().status == "revoked":
        raise NotAllowed(
            "this device was revoked by a coordinator: it can no longer record; nothing was sealed"
        )


def lost_on_server(prof: Profile, client: Client) -> tuple[list[dict[str, Any]], list[str]]:
    """The sent bundles this device keeps that the server no longer has (a restore, a
    lost disk), to send again; and a warning when it lost some this device no longer keeps.
    Asks only while something is kept."""
    kept = sent(prof)
    head_seq, _ = sent_head(prof)
    if not kept:
        return [], []
    try:
        stored = _CHAIN.load(client.get(f"/v1/w/{client.workspace}/chain"))
    except ValidationError:
        raise IntegrityError("the server's chain answer is malformed") from None
    if stored["seq"] >= head_seq:
        return [], []
    again = [e["bundle"] for e in kept if e["bundle"]["seq"] > stored["seq"]]
    first_kept = int(kept[0]["bundle"]["seq"])
    warnings = []
    if first_kept > stored["seq"] + 1 and int(prof.state.get("acked", 0)) < first_kept - 1:
        warnings.append(
            f"the server lost bundles {stored['seq'] + 1}-{first_kept - 1} of this device,"
            " which it no longer keeps and no coordinator confirmed"
        )
    return again, warnings


def post_head(prof: Profile, client: Client) -> None:
    """Publish this device's signed chain head, for keyholders to compare with their pull."""
    seq, h = sent_head(prof)
    # Again while something is kept (a restored server has lost it), else once per change.
    if seq < 1 or (not sent(prof) and prof.state.get("head_posted") == seq):
        return
    head = receipts.sign_chain_head(
        prof.device_key, workspace=prof.workspace_id, seq=seq, hash=h, at=int(time.time())
    )
    client.post(f"/v1/w/{client.workspace}/head", {"head": head}, retry=True)
    prof.state["head_posted"] = seq


def listed(answer: Any, name: str) -> list[Any]:
    """The list an answer carries; its items are checked one by one by the caller (a
    malformed one is refused by name, and the others still count)."""
    if not isinstance(answer, dict) or set(answer) != {name} or not isinstance(answer[name], list):
        raise IntegrityError(f"the server's {name} answer is malformed")
    return list(answer[name])


def settle(prof: Profile, client: Client, own: dict[str, Any] | None = None) -> Settled:
    """Apply the receipts about this device (and `own`, a keyholder's receipt of itself):
    drop what a verified one covers; then hold to the retention bound."""
    out = Settled()
    if not sent(prof) and own is None and not prof.state.get("unconfirmed"):
        return out  # nothing kept that a receipt could confirm: no request
    served = listed(client.get(f"/v1/w/{client.workspace}/receipts"), "receipts")
    candidates = [*served, *([own] if own else [])]
    log = prof.log()
    head_seq, _ = sent_head(prof)
    best = int(prof.state.get("acked", 0))
    for r in candidates:
        claim = r.get("seq") if isinstance(r, dict) else None
        signer = r.get("signer", "?") if isinstance(r, dict) else "?"
        try:
            seq = receipts.verify_receipt(
                r,
                log,
                device_id=prof.device_id,
                sent_seq=head_seq,
                own_hash=_own_hash(prof, claim) if type(claim) is int else None,
            )
        except InvalidReceipt as exc:
            out.refused.append(
                f"a receipt signed by {signer} for bundle {claim} was refused:"
                f" {exc.code}: {exc.reason}; nothing was dropped"
            )
            continue
        best = max(best, seq)
    covered = [e for e in sent(prof) if e["bundle"]["seq"] <= best]
    _forget(prof, covered)
    out.confirmed = len(covered)
    prof.state["acked"] = best
    lost = prof.state.get("unconfirmed")
    if lost and best >= lost["through"]:
        del prof.state["unconfirmed"]  # a keyholder holds them after all
    out.dropped = hold_bound(prof)
    return out


def hold_bound(prof: Profile) -> list[str]:
    """Drop the oldest sent captures past FIELDSYNC_KEEP_DAYS or FIELDSYNC_KEEP_MB."""
    days = setting("FIELDSYNC_KEEP_DAYS", KEEP_DAYS)
    mb = setting("FIELDSYNC_KEEP_MB", KEEP_MB)
    kept = sent(prof)
    sizes = [len(json.dumps(e["bundle"], separators=(",", ":"))) for e in kept]
    total = sum(sizes)
    t = now()
    n = 0
    while n < len(kept) and (t - kept[n]["sent_at"] > days * 86400 or total > mb * 1024 * 1024):
        total -= sizes[n]
        n += 1
    if not n:
        return []
    gone = kept[:n]
    first, last = _date(prof, gone[0]), _date(prof, gone[-1])
    _forget(prof, gone)
    before = prof.state.get("unconfirmed") or {"count": 0, "first": first}
    prof.state["unconfirmed"] = {
        "count": before["count"] + n,
        "first": before["first"],
        "last": last,
        "through": int(gone[-1]["bundle"]["seq"]),
    }
    return [
        f"{n} sent capture(s) from {_span(first, last)} were dropped from this device without"
        f" a coordinator's receipt (kept at most {days:g} days and {mb:g} MB:"
        " FIELDSYNC_KEEP_DAYS, FIELDSYNC_KEEP_MB); if no coordinator received them, they are lost"
    ]


# --- what a person is told ----------------------------------------------------------------


def warnings(prof: Profile, *, dropped: bool = True) -> list[str]:
    """Offline: what `status` and `sync` say about captures not yet confirmed (`dropped`:
    also those the retention bound dropped earlier)."""
    out = []
    if prof.me().status == "revoked":
        out.append(
            "this device was revoked by a coordinator: it can no longer record or sync,"
            " and it keeps no captures"
        )
    hours = setting("FIELDSYNC_RECEIPT_WARN_HOURS", WARN_HOURS)
    t = now()
    late = [e for e in sent(prof) if t - e["sent_at"] >= hours * 3600]
    if late:
        dates = sorted(_date(prof, e) for e in late)
        out.append(
            f"{len(late)} capture(s) from {_span(dates[0], dates[-1])} have not reached a"
            " coordinator; the server may be holding them back"
        )
    lost = prof.state.get("unconfirmed")
    if lost and dropped:
        out.append(
            f"{lost['count']} sent capture(s) from {_span(lost['first'], lost['last'])} were"
            " dropped from this device without a coordinator's receipt; if no coordinator"
            " received them, they are lost"
        )
    return out
