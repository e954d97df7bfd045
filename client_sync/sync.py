"""Sync: verify the key log, push the outbox, and (keyholders) pull changes into the replica.

Push is resumable by construction: bundles leave the outbox only once the server
has acknowledged them (`accepted`, or `stored` for a retry of one it already
had), and the vault is saved after every acknowledged batch. A run cut off
mid-push is finished by the next run, which re-sends at most the one batch whose
answer was lost; the server answers `stored` for those and nothing is merged twice.

Pull pages through `changes?since=cursor`; the cursor lives inside the replica
itself, so it never runs ahead of the data it stands for.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from marshmallow import ValidationError

from protocol import hlc
from protocol.errors import InvalidBundle
from protocol.model import Bundle
from schemas.wire import MAX_BUNDLES_PER_PUSH, PushResponseSchema, error_messages

from . import rekey as rekeying
from . import releases, uploads
from .errors import IntegrityError, ServerError
from .keyring import refresh_log
from .profile import Profile, now_iso
from .progress import Progress
from .replica import Replica, open_replica
from .transport import Client

PUSH_BATCH = 100
PULL_PAGE = 500
MAX_STALLS = 3  # pages in a row that do not move the cursor before a pull stops
_PUSH_RESPONSE = PushResponseSchema()


@dataclass
class PushResult:
    accepted: int = 0
    stored: int = 0
    rejected: list[str] = field(default_factory=list)
    uploaded: uploads.Uploaded = field(default_factory=lambda: uploads.Uploaded())
    warnings: list[str] = field(default_factory=list)


@dataclass
class PullResult:
    bundles: int = 0
    cells: int = 0
    failed: int = 0
    problems: list[str] = field(default_factory=list)
    skipped: str | None = None  # why nothing was pulled
    exposed: int = 0  # bundles still sealed to an epoch a revoked keyholder held


def push(prof: Profile, client: Client, batch: int = PUSH_BATCH) -> PushResult:
    out = PushResult()
    batch = max(1, min(batch, MAX_BUNDLES_PER_PUSH))
    outbox: list[dict[str, Any]] = prof.state["outbox"]
    with Progress("pushing", len(outbox)) as bar:
        while prof.state["outbox"]:
            sending = prof.state["outbox"][:batch]
            try:
                answer = client.post(
                    f"/v1/w/{client.workspace}/push", {"bundles": sending}, retry=True
                )
            except ServerError as exc:
                if exc.code == "too_large" and batch > 1:
                    batch = max(1, batch // 2)
                    continue
                raise
            results = _check_push_answer(answer, sending)
            releases.note_changes(
                prof, [(r["bundle_id"], r["seq"]) for r in results if r["status"] != "rejected"]
            )
            for bundle, result in zip(sending, results, strict=True):
                if result["status"] == "accepted":
                    out.accepted += 1
                elif result["status"] == "stored":
                    out.stored += 1
                else:
                    err = result.get("error") or {"code": "rejected", "message": ""}
                    prof.state["rejected"].append({"bundle": bundle, "error": err})
                    out.rejected.append(
                        f"bundle {bundle['seq']} ({bundle['bundle_id']}) was rejected:"
                        f" {err['code']}: {err['message']}"
                    )
            prof.state["outbox"] = prof.state["outbox"][len(sending) :]
            prof.save()
            bar.advance(len(sending))
    return out


def _check_push_answer(answer: Any, sending: list[dict[str, Any]]) -> list[dict[str, Any]]:
    try:
        results: list[dict[str, Any]] = _PUSH_RESPONSE.load(answer)["results"]
    except ValidationError as exc:
        first = error_messages(exc.messages)[0]
        raise IntegrityError(f"the server's push answer is malformed: {first}") from None
    if [r["bundle_id"] for r in results] != [b["bundle_id"] for b in sending]:
        raise IntegrityError("the server's push answer does not match the bundles sent")
    return results


def pull(prof: Profile, client: Client, replica: Replica) -> PullResult:
    out = PullResult()
    log = prof.log()
    epoch_keys = prof.epoch_keys()
    tag_key = prof.tag_key
    cursor = replica.cursor
    stalls = 0
    with Progress("pulling") as bar:
        while True:
            page = client.get(
                f"/v1/w/{client.workspace}/changes", {"since": cursor, "limit": PULL_PAGE}
            )
            bundles, nxt, done = _load_page(page)
            if any(b.key_epoch not in epoch_keys for b, _ in bundles):
                # A rotation newer than our copy of the log: fetch it and the new key.
                log = refresh_log(prof, client)
                epoch_keys = prof.epoch_keys()
            try:
                got = replica.ingest(bundles, log, epoch_keys, tag_key)
            except InvalidBundle as exc:
                raise IntegrityError(f"the changes feed is inconsistent: {exc.reason}") from None
            out.bundles += got.bundles
            out.cells += got.cells
            out.failed += len(got.failed)
            out.problems += got.failed
            now_ms = int(time.time() * 1000)
            if got.max_hlc and hlc.physical_ms(got.max_hlc) <= now_ms + 300_000:
                prof.state["hlc"] = hlc.observe(int(prof.state["hlc"]), got.max_hlc, now_ms)
            # Change numbers are the server's word, not signed: the cursor never moves
            # back, and a server that keeps answering without moving it is left.
            stalls = stalls + 1 if nxt <= cursor else 0
            cursor = max(cursor, nxt)
            replica.cursor = cursor
            bar.advance(len(bundles))
            if done or not bundles or stalls >= MAX_STALLS:
                break
            replica.save_every(30.0)
    out.problems += replica.check_chains()
    replica.save()
    return out


def _load_page(page: Any) -> tuple[list[tuple[Bundle, int]], int, bool]:
    """Shape-check one changes page. Contents are verified by `open_bundle` after this.

    The feed is the hot path of a 100,000-record pull, so it is checked by hand
    rather than through marshmallow: every signed value is re-checked by the
    core's decoding anyway, and anything malformed fails as `IntegrityError`.
    Change numbers are not required to increase: a bundle served twice, or an
    old page served again, is a replay, and ingesting it again changes nothing.
    """
    try:
        nxt, done = page["next"], page["done"]
        raw = page["bundles"]
        if type(nxt) is not int or type(done) is not bool or not isinstance(raw, list):
            raise TypeError("next, done or bundles")
        bundles = []
        for item in raw:
            change = item["change"]
            if type(change) is not int:
                raise TypeError("change numbers")
            bundle = Bundle.from_wire(item)
            if not all(type(c.hlc) is int for c in bundle.cells) or type(bundle.seq) is not int:
                raise TypeError("integers")
            bundles.append((bundle, change))
    except (KeyError, TypeError, AttributeError) as exc:
        raise IntegrityError(f"the server's changes page is malformed ({exc})") from None
    return bundles, nxt, done


def sync(
    prof: Profile, client: Client, batch: int = PUSH_BATCH
) -> tuple[PushResult, PullResult | None]:
    """The whole of `fieldsync sync`: log, push, then (keyholders) pull."""
    refresh_log(prof, client)
    prof.save()
    pushed = push(prof, client, batch)
    # Files after records: a record never waits for its attachments.
    pushed.uploaded = uploads.upload(prof, client)
    pushed.warnings = pushed.uploaded.warnings + releases.post_releases(prof, client)
    prof.save()
    pulled = None
    if prof.is_keyholder:
        replica = open_replica(prof)
        if replica is None:
            pulled = pull_skipped(prof)
        else:
            try:
                pulled = pull(prof, client, replica)
            finally:
                replica.close()
            pulled.exposed = rekeying.exposed_after_revocation(prof, client)
    prof.state["last_sync"] = now_iso()
    prof.save()
    return pushed, pulled


def pull_skipped(prof: Profile) -> PullResult:
    return PullResult(
        skipped="this coordinator is not approved yet: ask an admin to run"
        f" `fieldsync approve {prof.device_id}`"
    )
