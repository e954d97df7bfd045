"""A keyholder's watch over the server: a database that went back in time, bundles held
back, and the receipts that tell devices what reached a keyholder.

- Every changes page carries the database's `incarnation` and its `last` change. A
  new incarnation (a restore, a recreate), or a cursor beyond `last`, means change
  numbers were handed out again: the pull says so in one line and starts again
  from 0 (bundles held already change nothing), so nothing arriving after a
  restore is skipped (`check_feed`).
- After a pull the keyholder reads every device's signed chain head. A head ahead
  of the chain held here, or a gap in a chain, is fetched bundle by bundle
  (`GET bundles/<device>/<seq>`); what the server still does not serve is named in
  `status` ("the server may be withholding 11-12"), offline, from the heads kept
  in the vault (`withheld`).
- Then it signs a receipt per device: the highest seq up to which it holds that
  device's chain without a gap (for its own device, no further than what the
  server acknowledged to it), and posts them, so devices may drop what it holds.
"""

from __future__ import annotations

import time
from typing import Any

from protocol import receipts
from protocol.errors import InvalidBundle, InvalidReceipt
from protocol.model import Bundle
from schemas.wire import MAX_RECEIPTS_PER_POST

from . import delivery
from .errors import IntegrityError, ServerError
from .profile import Profile
from .replica import Replica
from .transport import Client

MAX_FETCH = 100  # bundles fetched one by one per sync, at most


def check_feed(replica: Replica, incarnation: str, last: int, cursor: int) -> str | None:
    """A notice (and the cursor back at 0) when the feed's numbers started over."""
    held = replica.incarnation
    notice = None
    if held is not None and held != incarnation:
        notice = (
            "the server's database was restored or recreated (a new incarnation):"
            " pulling again from the start; bundles held here change nothing"
        )
    elif cursor > last:
        notice = (
            f"the server's change feed went back in time (it has {last} changes; this"
            f" replica had read {cursor}): pulling again from the start; bundles held"
            " here change nothing"
        )
    if held != incarnation:
        replica.incarnation = incarnation
    if notice is not None:
        replica.cursor = 0
    return notice


def _load_bundle(item: Any) -> tuple[Bundle, int]:
    try:
        change = item["change"]
        bundle = Bundle.from_wire(item)
        if type(change) is not int or type(bundle.seq) is not int:
            raise TypeError("integers")
        if not all(type(c.hlc) is int for c in bundle.cells):
            raise TypeError("integers")
    except (KeyError, TypeError, AttributeError) as exc:
        raise IntegrityError(f"the server's bundle answer is malformed ({exc})") from None
    return bundle, change


def read_heads(
    prof: Profile, client: Client, replica: Replica
) -> tuple[dict[str, int], list[str], bool]:
    """Fetch and verify every device's signed head; keep the highest seen per device
    (a server that serves an older one later hides nothing seen before).

    Returns the heads known before (device -> seq), the heads refused, and whether a
    head is ahead of every bundle held here for its device."""
    served = delivery.listed(client.get(f"/v1/w/{client.workspace}/heads"), "heads")
    log = prof.log()
    kept: dict[str, list[Any]] = prof.state.setdefault("heads", {})
    # When each device last published its head: its last sync, as signed by itself.
    synced: dict[str, int] = prof.state.setdefault("heads_at", {})
    before = {dev: int(seq) for dev, (seq, _) in kept.items()}
    problems = []
    for head in served:
        try:
            dev, seq, h = receipts.verify_chain_head(head, log)
        except InvalidReceipt as exc:
            problems.append(f"a chain head the server served was refused: {exc.code}: {exc.reason}")
            continue
        if seq > kept.get(dev, [0])[0]:
            kept[dev] = [seq, h]
        if isinstance(head.get("at"), int) and head["at"] > synced.get(dev, 0):
            synced[dev] = head["at"]
    tops = replica.max_seqs()
    ahead = any(seq > tops.get(dev, 0) for dev, (seq, _) in kept.items())
    return before, problems, ahead


def _fetch(prof: Profile, client: Client, replica: Replica, dev: str, seq: int) -> bool:
    """Ask for one bundle by device and number and merge it; False when not served."""
    try:
        answer = client.get(f"/v1/w/{client.workspace}/bundles/{dev}/{seq}")
    except ServerError as exc:
        if exc.code == "unknown_bundle":
            return False  # still missing: check_chains and `withheld` name it
        raise
    bundle, change = _load_bundle(answer)
    if (bundle.device_id, bundle.seq) != (dev, seq):
        raise IntegrityError(f"the server answered another bundle for {dev} {seq}")
    try:
        got = replica.ingest([(bundle, change)], prof.log(), prof.epoch_keys(), prof.tag_key)
    except InvalidBundle as exc:
        raise IntegrityError(f"the server's bundle is inconsistent: {exc.reason}") from None
    return got.bundles > 0 and not got.failed


def fetch_missing(
    prof: Profile, client: Client, replica: Replica, before: dict[str, int]
) -> tuple[int, list[str]]:
    """Ask by device and number for what is missing here: at once for a gap below a
    bundle held (the changes feed left it out: said so when it is then served); for
    bundles beyond the last one held, only up to a head known before this sync (a
    head just published may be a push that landed after the pull: it is named, and
    asked for at the next sync). Returns (bundles fetched, warnings)."""
    chains = replica.chain_heads()
    tops = replica.max_seqs()
    heads = prof.state.get("heads", {})
    budget = MAX_FETCH
    got = 0
    said: list[str] = []
    for dev in sorted(set(heads) | set(tops)):
        start, top = chains.get(dev, (0, ""))[0] + 1, tops.get(dev, 0)
        end = max(top, min(int(heads.get(dev, [0])[0]), before.get(dev, 0)))
        held = replica.held_seqs(dev, start, end) if end >= start else set()
        for seq in (s for s in range(start, end + 1) if s not in held):
            if budget <= 0:
                return got, said
            budget -= 1
            if _fetch(prof, client, replica, dev, seq):
                got += 1
                if seq < top:
                    said.append(
                        f"device {dev}: bundle {seq} was left out of the changes feed;"
                        " fetched by device and number"
                    )
    return got, said


def sign_receipts(prof: Profile, client: Client, replica: Replica) -> dict[str, Any] | None:
    """Sign and post a receipt per device whose chain is held here; returns this
    device's receipt of itself (for its own sent captures), if any."""
    at = int(time.time())
    own_seq, own_hash = delivery.sent_head(prof)
    signed = []
    own = None
    for dev, (seq, h) in sorted(replica.chain_heads().items()):
        if dev == prof.device_id:
            # Its own captures are in its replica before they reach the server; confirm
            # only what the server acknowledged (what the device counts as sent).
            if own_seq < 1 or own_seq > seq:
                continue
            seq, h = own_seq, own_hash
        r = receipts.sign_receipt(
            prof.device_key, workspace=prof.workspace_id, device_id=dev, seq=seq, hash=h, at=at
        )
        signed.append(r)
        if dev == prof.device_id:
            own = r
    for i in range(0, len(signed), MAX_RECEIPTS_PER_POST):
        part = signed[i : i + MAX_RECEIPTS_PER_POST]
        client.post(f"/v1/w/{client.workspace}/receipts", {"receipts": part}, retry=True)
    return own


def after_pull(
    prof: Profile, client: Client, replica: Replica, before: dict[str, int]
) -> tuple[int, list[str], dict[str, Any] | None]:
    """The bundles still missing, the chains, receipts (after `read_heads`). Returns
    (bundles fetched, problems, this device's receipt of itself)."""
    fetched, problems = fetch_missing(prof, client, replica, before)
    problems += replica.check_chains()
    own = sign_receipts(prof, client, replica)
    replica.save()
    return fetched, problems, own


def withheld(prof: Profile, replica: Replica, names: dict[str, str]) -> list[str]:
    """Offline: devices whose signed head is ahead of the chain held here."""
    out = []
    chains = replica.chain_heads()
    tops = replica.max_seqs()
    for dev, (seq, h) in sorted(prof.state.get("heads", {}).items()):
        held, held_hash = chains.get(dev, (0, ""))
        top = max(held, tops.get(dev, 0))  # a gap below `top` is check_chains' to report
        who = f"device {dev}" + (f" ({names[dev]})" if dev in names else "")
        if seq > top:
            span = f"{top + 1}" if seq == top + 1 else f"{top + 1}–{seq}"
            out.append(
                f"{who} published bundle {seq}; this replica holds its chain to {held}:"
                f" the server may be withholding {span}"
            )
        elif seq == held and h != held_hash:
            out.append(f"{who} published another bundle {seq} than the one held here (a fork)")
    return out
