"""Who is calling: RFC 9421 request signatures, the key log's roles, nonces, slots, the body.

A view declares who may call it with `@signed(ACCESS)`. Before the view runs, the
decorator refuses in the order docs/PROTOCOL.md, HTTP API gives, from the headers
alone (signature, keyid, device, revocation, replay, role), then takes one of the
caller's request slots, and only then reads the body and checks it against the
signed Content-Digest. The nonce is recorded last, in the workspace's nonce file:
no check here takes or waits for the workspace's write lock, and a refusal stores
nothing.

A keyid that names no key of the workspace and a signature that does not verify
with the key the keyid names are one refusal, `bad_signature`, with one message
and the same work (the first is checked against a key nobody holds), so that
knowing a workspace id tells nobody which device or invite ids exist in it.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast
from urllib.parse import quote

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import current_app, g, request

from protocol.httpsig import AuthError, Presented, check_body, parse_request, verify_presented
from protocol.keylog import Device, Invite, KeyLogState

from . import body, inflight, store
from .errors import ApiError
from .store import keylog as stored_log
from .store import nonces

STATUS = {
    "missing_signature": 401,
    "bad_signature": 401,
    "stale_signature": 401,
    "wrong_workspace": 403,
    "unknown_workspace": 404,
    "unknown_device": 401,
    "revoked_device": 403,
    "replayed_nonce": 401,
    "wrong_role": 403,
    "not_approved": 403,
    "busy": 429,
}

# Who may call a route (docs/PROTOCOL.md, HTTP API, "Routes").
MEMBER_OR_INVITE = "member_or_invite"  # any enrolled, unrevoked device; a live invite key
INVITE = "invite"  # a live invite key only
MEMBER = "member"  # any enrolled, unrevoked device, approved or not
KEYHOLDER = "keyholder"  # an approved coordinator or admin
ADMIN = "admin"  # an approved admin
REVOKED = "revoked"  # a revoked device, with its own key: only to learn that it was revoked
ACCESS = (MEMBER_OR_INVITE, INVITE, MEMBER, KEYHOLDER, ADMIN, REVOKED)

UNVERIFIED = "the signature does not verify with a device or live invite key of this workspace"
# An unknown keyid is checked against this key, whose private half nobody keeps.
_NOBODY = Ed25519PrivateKey.generate().public_key().public_bytes_raw()


@dataclass(frozen=True)
class Caller:
    workspace: str
    key_id: str
    state: KeyLogState
    device: Device | None  # None when the caller is an invite key
    invite: Invite | None


def refuse(code: str, message: str) -> ApiError:
    headers = {"Retry-After": "1"} if code == "busy" else None
    return ApiError(code, message, STATUS[code], headers=headers)


def now() -> int:
    return int(current_app.config["CLOCK"]())


def target_uri() -> str:
    """The `@target-uri` the client signed: behind a proxy, rebuilt from FIELDSYNC_PUBLIC_URL,
    else from the request as received. The query is taken as sent (werkzeug's
    `request.url` would decode `%C2%B2` to `²`, which no client signed)."""
    public = current_app.config.get("PUBLIC_URL") or (
        f"{request.scheme}://{request.host}{request.root_path}"
    )
    query = request.query_string.decode("latin-1")
    path = quote(request.path, safe="/!$&'()*+,;=:@-._~")
    return public.rstrip("/") + path + ("?" + query if query else "")


def paths() -> store.Paths:
    return cast(store.Paths, current_app.extensions["fieldsync_paths"])


def workspace_conn(ws: str) -> sqlite3.Connection | None:
    """The request's connection to workspace `ws` (pooled per thread, released at teardown)."""
    conns: dict[str, sqlite3.Connection] = g.setdefault("fs_conns", {})
    conn = conns.get(ws)
    if conn is None:
        conn = store.open_workspace(paths(), ws)
        if conn is not None:
            conns[ws] = conn
    return conn


def state_key(ws: str) -> str:
    return str(paths().workspace_db(ws))


def close_connections(_exc: BaseException | None = None) -> None:
    for conn in g.pop("fs_conns", {}).values():
        store.pool.release(conn)
    slot = g.pop("fs_slot", None)
    if slot is not None:
        slot.release()


def presented() -> Presented:
    """The request's signature, parsed and fresh (headers only, no key, no body)."""
    try:
        return parse_request(
            method=request.method,
            url=target_uri(),
            headers=list(request.headers.items()),
            now=now(),
            window=current_app.config["SIGNATURE_WINDOW"],
        )
    except AuthError as exc:
        raise refuse(exc.code, exc.reason) from None


def read_body(limit: int | None = None) -> bytes:
    """The request's body, at most `limit` bytes (default: the body limit that the
    declared length was checked against), within FIELDSYNC_BODY_TIMEOUT."""
    if limit is None:
        limit = request.max_content_length or int(current_app.config["MAX_BODY"])
    return body.read(limit, float(current_app.config["BODY_TIMEOUT"]))


def check_signed_body(p: Presented, raw: bytes) -> None:
    try:
        check_body(p, raw)
    except AuthError as exc:
        raise refuse(exc.code, exc.reason) from None


def nonce_expiry(t: int) -> int:
    return t + 2 * int(current_app.config["SIGNATURE_WINDOW"])


def _authorise(access: str, caller: Caller) -> None:
    device = caller.device
    if device is None:
        if access not in (MEMBER_OR_INVITE, INVITE):
            raise refuse("wrong_role", "an invite key may only read the key log and enroll")
        return
    if access == INVITE:
        raise refuse("wrong_role", "only an invite key enrolls a device")
    if (access == REVOKED) != (device.status == "revoked"):
        raise refuse("wrong_role", "only a revoked device asks for its revocation")
    if access == KEYHOLDER and not device.is_keyholder:
        raise refuse("wrong_role", "only coordinators and admins may read changes")
    if access == ADMIN and device.role != "admin":
        raise refuse("wrong_role", "only an admin may do this")
    if access in (KEYHOLDER, ADMIN) and device.status != "active":
        raise refuse("not_approved", "an admin has not approved this device yet")


def _verified_caller(ws: str, p: Presented, t: int, revoked_ok: bool = False) -> Caller:
    """Steps 4-7 of the refusal order: workspace, key, signature, standing (`revoked_ok`:
    the one route a revoked device may call, to learn that it was revoked)."""
    if p.workspace != ws:
        raise refuse("wrong_workspace", "the request is signed for another workspace")
    conn = workspace_conn(ws)
    if conn is None:
        raise refuse("unknown_workspace", "this server hosts no such workspace")
    state = stored_log.state(conn, state_key(ws))
    device = state.devices.get(p.key_id)
    invite = state.invites.get(p.key_id) if device is None else None
    key = device.sign_pub if device else invite.key if invite else _NOBODY
    try:
        verify_presented(p, key)
    except AuthError:
        raise refuse("bad_signature", UNVERIFIED) from None
    if device is None and invite is None:  # unreachable: nobody holds that key
        raise refuse("bad_signature", UNVERIFIED)
    if invite is not None:
        # Told only to whoever holds the invite's key (it verified): the person
        # redeeming it needs to know to ask for a new one.
        if invite.used_by is not None:
            raise refuse("unknown_device", "this invite was already used: ask for a new one")
        if t > invite.expires:
            raise refuse("unknown_device", "this invite has expired: ask for a new one")
    elif device is not None and device.status == "revoked" and not revoked_ok:
        raise refuse("revoked_device", "this device was revoked")
    return Caller(workspace=ws, key_id=p.key_id, state=state, device=device, invite=invite)


def authenticate(ws: str, access: str) -> Caller:
    """Run every check of the HTTP API (docs/PROTOCOL.md) for `ws`, read and check the
    body, record the nonce; returns the verified caller. The body is in `g.fs_body`."""
    t = now()
    p = presented()
    caller = _verified_caller(ws, p, t, revoked_ok=access == REVOKED)
    if nonces.seen(paths(), ws, p.key_id, p.nonce):
        raise refuse("replayed_nonce", "this request was already received")
    _authorise(access, caller)
    limit = int(current_app.config["DEVICE_REQUESTS"])
    slot = inflight.acquire(paths().slots, ws, p.key_id, limit)
    if slot is None:
        raise refuse("busy", f"this device already has {limit} requests in progress: retry")
    g.fs_slot = slot
    check_signed_body(p, read_body())
    if not nonces.consume(paths(), ws, p.key_id, p.nonce, nonce_expiry(t), t):
        raise refuse("replayed_nonce", "this request was already received")
    return caller


def recheck_in_transaction(conn: sqlite3.Connection) -> None:
    """Inside the route's write transaction: refuse a device revoked since it was
    authenticated.

    A revoke committed by another worker (or admin) between this request's key
    lookup and its write would otherwise let one last write through: the write
    lock orders the two, so the revoke wins from the moment it commits.
    """
    caller: Caller = g.caller
    if caller.device is not None:
        state = stored_log.state(conn, state_key(caller.workspace))
        device = state.devices.get(caller.device.device_id)
        if device is None or device.status == "revoked":
            raise refuse("revoked_device", "this device was revoked")


F = TypeVar("F", bound=Callable[..., Any])


def signed(access: str) -> Callable[[F], F]:
    """Require a valid device (or invite) signature for the view's `<ws>` (flaskr's
    `login_required`, with roles). The view finds the caller in `g.caller` and the
    verified body through `read_body()`."""
    if access not in ACCESS:
        raise ValueError(f"unknown access {access!r}")

    def wrap(view: F) -> F:
        @functools.wraps(view)
        def wrapped(ws: str, **kw: Any) -> Any:
            g.caller = authenticate(ws, access)
            return view(ws, **kw)

        wrapped.fieldsync_access = access  # type: ignore[attr-defined]
        return cast(F, wrapped)

    return wrap
