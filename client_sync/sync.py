"""Sync: verify the key log, push the outbox, and (keyholders) pull changes into the replica.

Push is resumable by construction: bundles leave the outbox only once the server
has acknowledged them (`accepted`, or `stored` for a retry of one it already
had), and the vault is saved after every acknowledged batch. A run cut off
mid-push is finished by the next run, which re-sends at most the one batch whose
answer was lost; the server answers `stored` for those and nothing is merged twice.
An acknowledged bundle is still kept, sealed, until a keyholder's receipt covers it
(client_sync/delivery.py); the keyholder's side of that is client_sync/watch.py.

Pull pages through `changes?since=cursor`; the cursor lives inside the replica
itself, committed with the data it stands for, so it never runs ahead of it.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from marshmallow import ValidationError

from protocol import hlc
from protocol.errors import InvalidBundle
from protocol.model import Bundle
from schemas.wire import MAX_BUNDLES_PER_PUSH, PushResponseSchema, error_messages

from . import attachments, delivery, releases, uploads, watch
from . import rekey as rekeying
from .errors import IntegrityError, ServerError
from .keyring import refresh_log
from .profile import Profile, now_iso
from .progress import Progress
from .replica import Replica, open_replica
from .replica.opening import Keys, Pending
from .transport import Client

PUSH_BATCH = 100
PULL_PAGE = 500
MAX_STALLS = 3  # pages in a row that do not move the cursor before a pull stops
COMMIT_EVERY = 10.0  # seconds of pulling per replica transaction (see `pull`)
_PUSH_RESPONSE = PushResponseSchema()


@dataclass
class PushResult:
    accepted: int = 0
    stored: int = 0
    rejected: list[str] = field(default_factory=list)
    resent: int = 0  # kept bundles the server had lost, sent again
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
    fetched: int = 0  # missing bundles fetched one by one (by device and seq)


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
            acked = []
            for bundle, result in zip(sending, results, strict=True):
                if result["status"] == "accepted":
                    out.accepted += 1
                    acked.append(bundle)
                elif result["status"] == "stored":
                    out.stored += 1
                    acked.append(bundle)
                else:
                    err = result.get("error") or {"code": "rejected", "message": ""}
                    prof.state["rejected"].append({"bundle": bundle, "error": err})
                    out.rejected.append(
                        f"bundle {bundle['seq']} ({bundle['bundle_id']}) was rejected:"
                        f" {err['code']}: {err['message']}"
                    )
            delivery.mark_sent(prof, acked)
            prof.state["outbox"] = prof.state["outbox"][len(sending) :]
            prof.save()
            bar.advance(len(sending))
    return out


def resend(prof: Profile, client: Client, bundles: list[dict[str, Any]], batch: int) -> PushResult:
    """Send again kept bundles that the server lost; they stay kept until a receipt."""
    out = PushResult()
    batch = max(1, min(batch, MAX_BUNDLES_PER_PUSH))
    for i in range(0, len(bundles), batch):
        sending = bundles[i : i + batch]
        answer = client.post(f"/v1/w/{client.workspace}/push", {"bundles": sending}, retry=True)
        for bundle, result in zip(sending, _check_push_answer(answer, sending), strict=True):
            if result["status"] in ("accepted", "stored"):
                out.resent += 1
            else:
                err = result.get("error") or {"code": "rejected", "message": ""}
                out.warnings.append(
                    f"bundle {bundle['seq']} ({bundle['bundle_id']}), which the server had lost,"
                    f" was refused when sent again: {err['code']}: {err['message']};"
                    " it stays kept on this device"
                )
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


# bundles with change numbers, next, done, the database's incarnation, its last change
Page = tuple[list[tuple[Bundle, int]], int, bool, str, int]


class _Rewind(Exception):
    """The feed's numbers started over (a restore, a recreate): pull again from 0."""


def pull(prof: Profile, client: Client, replica: Replica) -> PullResult:
    """Page through the changes since the replica's cursor. While one page is merged,
    the next is fetched and opened on the other cores (`replica/opening.py`).

    Every page carries the database's incarnation and last change: when its numbers
    started over (`watch.check_feed`), the pull says so once and starts again from 0
    (bundles held already change nothing); a second time in one pull is a lie."""
    out = PullResult()
    try:
        return _pull(prof, client, replica, out)
    except _Rewind as again:
        out.problems.append(str(again))
    try:
        return _pull(prof, client, replica, out)
    except _Rewind:
        raise IntegrityError("the server's change feed keeps starting over") from None


def _pull(prof: Profile, client: Client, replica: Replica, out: PullResult) -> PullResult:
    log = prof.log()
    epoch_keys = prof.epoch_keys()
    tag_key = prof.tag_key
    cursor = replica.cursor
    stalls = 0
    committed = time.monotonic()
    with (
        Progress("pulling") as bar,
        replica.opener(log, epoch_keys, tag_key) as opener,
        ThreadPoolExecutor(1, "fieldsync-feed") as feed,
    ):
        # The page after next is fetched (HTTP and parsing) on a thread while this one is
        # merged, so the server's time to serve it is not the merge's idle time; the
        # feed's check reads and writes the replica, so it runs here, in order.
        ahead: tuple[int, Future[Page]] | None = None

        def fetch(since: int) -> Page:
            nonlocal ahead
            if ahead is not None and ahead[0] == since:
                page = ahead[1].result()
            else:
                page = _fetch(client, since)
            ahead = None
            notice = watch.check_feed(replica, page[3], page[4], since)
            if notice is not None:
                raise _Rewind(notice)
            if page[2] is False and page[0]:
                ahead = (max(since, page[1]), feed.submit(_fetch, client, max(since, page[1])))
            return page

        def start(page: Page) -> Pending:
            nonlocal log, epoch_keys
            if any(b.key_epoch not in epoch_keys for b, _ in page[0]):
                # A rotation newer than our copy of the log: fetch it and the new key
                # (a log only grows, so the pages before this one read it as well).
                log = refresh_log(prof, client)
                epoch_keys = prof.epoch_keys()
                opener.update(Keys.of(log, epoch_keys, tag_key))
            return opener.start([b for b, _ in page[0]])

        first = fetch(cursor)
        opening = start(first)
        page: Page | None = first
        while page is not None:
            bundles, nxt, done = page[0], page[1], page[2]
            # Change numbers are the server's word, not signed: the cursor never moves
            # back, and a server that keeps answering without moving it is left.
            stalls = stalls + 1 if nxt <= cursor else 0
            cursor = max(cursor, nxt)
            following: Page | None = None
            if not (done or not bundles or stalls >= MAX_STALLS):
                following = fetch(cursor)
                opening.results()  # (a new key for the next page restarts the pool)
                next_opening = start(following)
            # One transaction for several pages: a commit writes every page it dirtied
            # (encrypted), so committing every ~10 s rather than every page halves a
            # first pull. A cut pull loses at most that much; the cursor goes with it.
            commit = following is None or time.monotonic() - committed > COMMIT_EVERY
            try:
                got = replica.ingest(
                    bundles, log, epoch_keys, tag_key, opened=opening, cursor=cursor, commit=commit
                )
            except InvalidBundle as exc:
                raise IntegrityError(f"the changes feed is inconsistent: {exc.reason}") from None
            out.bundles += got.bundles
            out.cells += got.cells
            out.failed += len(got.failed)
            out.problems += got.failed
            now_ms = int(time.time() * 1000)
            if got.max_hlc and hlc.physical_ms(got.max_hlc) <= now_ms + 300_000:
                prof.state["hlc"] = hlc.observe(int(prof.state["hlc"]), got.max_hlc, now_ms)
            if commit:
                committed = time.monotonic()
            bar.advance(len(bundles))
            page = following
            if following is not None:
                opening = next_opening
        if ahead is not None:  # a page fetched ahead that the loop did not take (stalls)
            ahead[1].cancel()
    # The chains are checked after the bundles still missing are fetched (watch.after_pull);
    # devices with new bundles stay marked in the replica until then.
    return out


def _fetch(client: Client, cursor: int) -> Page:
    page = client.get(f"/v1/w/{client.workspace}/changes", {"since": cursor, "limit": PULL_PAGE})
    return _load_page(page)


def _load_page(page: Any) -> tuple[list[tuple[Bundle, int]], int, bool, str, int]:
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
        incarnation, last = page["incarnation"], page["last"]
        if type(nxt) is not int or type(done) is not bool or not isinstance(raw, list):
            raise TypeError("next, done or bundles")
        if not isinstance(incarnation, str) or type(last) is not int:
            raise TypeError("incarnation or last")
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
    return bundles, nxt, done, incarnation, last


def sync(
    prof: Profile, client: Client, batch: int = PUSH_BATCH
) -> tuple[PushResult, PullResult | None, delivery.Settled]:
    """The whole of `fieldsync sync`: log, send again what the server lost, push, publish
    this device's chain head; keyholders pull, fetch what is missing and sign receipts;
    then the receipts about this device drop what they cover."""
    delivery.refresh_or_revoked(prof, client)
    prof.save()
    lost, warnings = delivery.lost_on_server(prof, client)
    again = resend(prof, client, lost, batch) if lost else PushResult()
    pushed = push(prof, client, batch)
    pushed.resent, pushed.warnings = again.resent, warnings + again.warnings
    delivery.post_head(prof, client)
    # Files after records: a record never waits for its attachments.
    pushed.uploaded = uploads.upload(prof, client)
    pushed.warnings += pushed.uploaded.warnings + releases.post_releases(prof, client)
    prof.save()
    pulled = None
    own = None
    if prof.is_keyholder:
        replica = open_replica(prof)
        if replica is None:
            pulled = pull_skipped(prof)
        else:
            try:
                pulled = pull(prof, client, replica)
                before, problems, ahead = watch.read_heads(prof, client, replica)
                if ahead:  # a push may have landed after the last page: read on once
                    more_pulled = pull(prof, client, replica)
                    pulled.bundles += more_pulled.bundles
                    pulled.cells += more_pulled.cells
                    pulled.failed += more_pulled.failed
                    pulled.problems += more_pulled.problems
                pulled.fetched, more, own = watch.after_pull(prof, client, replica, before)
                pulled.problems += problems + more
            finally:
                replica.close()
            pulled.exposed = rekeying.exposed_after_revocation(prof, client)
    settled = delivery.settle(prof, client, own)
    attachments.cleanup(prof)  # chunks of captures a receipt now covers go with them
    prof.state["last_sync"] = now_iso()
    prof.save()
    return pushed, pulled, settled


def pull_skipped(prof: Profile) -> PullResult:
    return PullResult(
        skipped="this coordinator is not approved yet: ask an admin to run"
        f" `fieldsync approve {prof.device_id}`"
    )
