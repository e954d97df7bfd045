"""The re-key that follows a rotation: each stored bundle's data key, opened with its old
epoch key and sealed to the current one, a page at a time; resumable, since the
server keeps what remains (`GET rekey` serves only bundles on an older epoch).

The HPKE work is most of a re-key, so it overlaps the server's: while the server
commits page k (one transaction a page), this device fetches page k+1 (`after` the
last bundle it handed over) and re-seals it. A page is posted only once the one
before is acknowledged, so an interruption leaves at most one page in doubt, and a
rerun finds it re-keyed or still pending, never half done.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from protocol import crypto
from protocol.errors import InvalidBundle
from protocol.model import ZERO_HASH, Bundle

from .errors import CliError, IntegrityError
from .keyring import refresh_log
from .profile import Profile
from .progress import Progress
from .transport import Client

PAGE = 200
_PENDING_TEXT = ("bundle_id", "workspace", "sealed_key", "key_commit")


@dataclass(frozen=True)
class Pending:
    """One page of `GET rekey`: bundles whose data key is sealed to an older epoch."""

    target: int
    bundles: list[dict[str, Any]]
    remaining: int


def fetch(client: Client, limit: int, after: str | None = None) -> Pending:
    """A page of pending bundles, shape-checked by hand (marshmallow would cost a tenth
    of the re-key); every value is checked again by the core when it is opened."""
    query: dict[str, Any] = {"limit": limit}
    if after is not None:
        query["after"] = after
    answer = client.get(f"/v1/w/{client.workspace}/rekey", query)
    try:
        target, bundles, remaining = answer["target_epoch"], answer["bundles"], answer["remaining"]
        if type(target) is not int or type(remaining) is not int or type(bundles) is not list:
            raise TypeError("target_epoch, remaining or bundles")
        for item in bundles:
            if type(item["key_epoch"]) is not int or not all(
                type(item[k]) is str for k in _PENDING_TEXT
            ):
                raise TypeError("a pending bundle")
    except (KeyError, TypeError) as exc:
        raise IntegrityError(f"the server's re-key page is malformed ({exc})") from None
    return Pending(target, bundles, remaining)


def reseal(prof: Profile, client: Client, page: Pending) -> list[dict[str, Any]]:
    """The page's data keys, opened with this device's epoch keys and sealed to the target."""
    state = prof.log()
    if page.target != state.current_epoch:
        state = refresh_log(prof, client)
    if page.target != state.current_epoch:
        raise IntegrityError("the server re-keys to an epoch that is not the log's current")
    epoch_keys = prof.epoch_keys()
    new_public = state.epochs[page.target]
    ws = client.workspace
    items, failed = [], []
    for item in page.bundles:
        old = epoch_keys.get(item["key_epoch"])
        sealed = None
        if item["workspace"] == ws and old is not None:
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
                sealed = crypto.rekey_sealed_key(stub, old, page.target, new_public)
            except InvalidBundle:
                pass
        if sealed is None:
            failed.append(item["bundle_id"])
        else:
            items.append({"bundle_id": item["bundle_id"], "key_epoch": page.target,
                          "sealed_key": sealed})  # fmt: skip
    if not items:
        raise IntegrityError(
            f"{len(failed)} stored bundle keys do not open with this device's epoch"
            f" keys (first: {failed[0]}); the re-key cannot finish"
        )
    return items


def _updated(posting: Future[Any]) -> int:
    answer = posting.result()
    updated = answer.get("updated") if isinstance(answer, dict) else None
    if type(updated) is not int or updated <= 0:
        raise CliError("the server re-keyed nothing on this page: run it again later")
    return updated


def rekey(prof: Profile, client: Client, page_size: int = PAGE) -> int:
    """Re-seal every stored bundle's data key to the current epoch. Returns the count."""
    prof.require_admin("re-key the workspace")
    path = f"/v1/w/{client.workspace}/rekey"
    done = 0
    after: str | None = None
    handed: set[str] = set()  # the ids of the page last posted
    posting: Future[Any] | None = None
    with Progress("re-keying") as bar, ThreadPoolExecutor(max_workers=1) as sender:
        while True:
            page = fetch(client, page_size, after)
            ids = {item["bundle_id"] for item in page.bundles}
            if ids & handed:
                # Asked for what comes after them, it serves them again: it would never end.
                raise CliError("the server serves the bundles it was just given again: try later")
            items = reseal(prof, client, page) if page.bundles else []
            if posting is not None:
                n = _updated(posting)
                done += n
                bar.advance(n)
            if not items:
                return done
            if bar.total is None:
                bar.total = page.remaining or len(items)
            posting = sender.submit(client.post, path, {"items": items}, retry=True)
            handed = ids
            after = page.bundles[-1]["bundle_id"]


def exposed_after_revocation(prof: Profile, client: Client) -> int:
    """How many stored bundles a revoked keyholder's saved epoch keys may still open.

    A bundle sealed offline to an older epoch and synced after a re-key is stored
    sealed to that epoch (nothing recorded offline is lost), so an admin's sync
    asks, once a keyholder has been revoked, whether any such bundle waits.
    """
    me = prof.me()
    if me.role != "admin" or me.status != "active":
        return 0
    if not any(d.is_keyholder and d.status == "revoked" for d in prof.log().devices.values()):
        return 0
    return fetch(client, 1).remaining
