"""Who is calling: RFC 9421 request signatures, the key log's roles, and nonce replay.

A view declares who may call it with `@signed(ACCESS)`; the decorator refuses in
the order docs/PROTOCOL.md, HTTP API gives and stores nothing until every check has passed, the
nonce last, in its own write transaction.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast
from urllib.parse import quote

from flask import current_app, g, request

from protocol.httpsig import AuthError, SignedBy, parse_keyid, verify_request
from protocol.keylog import Device, Invite, KeyLogState

from . import store
from .errors import ApiError
from .store import keylog as stored_log
from .store.nonces import consume_nonce, nonce_seen

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
}

# Who may call a route (docs/PROTOCOL.md, HTTP API, "Routes").
MEMBER_OR_INVITE = "member_or_invite"  # any enrolled, unrevoked device; a live invite key
INVITE = "invite"  # a live invite key only
MEMBER = "member"  # any enrolled, unrevoked device, approved or not
KEYHOLDER = "keyholder"  # an approved coordinator or admin
ADMIN = "admin"  # an approved admin
REVOKED = "revoked"  # a revoked device, with its own key: only to learn that it was revoked
ACCESS = (MEMBER_OR_INVITE, INVITE, MEMBER, KEYHOLDER, ADMIN, REVOKED)


@dataclass(frozen=True)
class Caller:
    workspace: str
    key_id: str
    state: KeyLogState
    device: Device | None  # None when the caller is an invite key
    invite: Invite | None


def refuse(code: str, message: str) -> ApiError:
    return ApiError(code, message, STATUS[code])


def now() -> int:
    return int(current_app.config["CLOCK"]())


def target_uri() -> str:
    """The `@target-uri` the client signed: behind a proxy, rebuilt from FIELDSYNC_PUBLIC_URL."""
    public = current_app.config.get("PUBLIC_URL")
    if not public:
        return request.url
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


def verify(public_key_for: Callable[[str], bytes]) -> SignedBy:
    try:
        return verify_request(
            method=request.method,
            url=target_uri(),
            headers=list(request.headers.items()),
            body=request.get_data(cache=True),
            public_key_for=public_key_for,
            now=now(),
            window=current_app.config["SIGNATURE_WINDOW"],
        )
    except AuthError as exc:
        raise refuse(exc.code, exc.reason) from None


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


def authenticate(ws: str, access: str, defer_nonce: bool = False) -> Caller:
    """Run every check of the HTTP API (docs/PROTOCOL.md) for `ws`; returns the verified caller.

    The nonce is recorded last, in its own write transaction, or with
    `defer_nonce` inside the route's own transaction (`consume_nonce_in`).
    """
    t = now()
    found: dict[str, Any] = {}

    def public_key_for(keyid: str) -> bytes:
        kws, ident = parse_keyid(keyid)
        if kws != ws:
            raise AuthError("wrong_workspace", "the request is signed for another workspace")
        conn = workspace_conn(ws)
        if conn is None:
            raise AuthError("unknown_workspace", "this server hosts no such workspace")
        state = stored_log.state(conn, state_key(ws))
        found["state"] = state
        device = state.devices.get(ident)
        if device is not None:
            # A revoked device's key still checks its signature first: otherwise anyone
            # who knows a device id could ask the server whether it was revoked.
            found["device"] = device
            return device.sign_pub
        invite = state.invites.get(ident)
        if invite is not None:
            # Still `unknown_device` (a spent invite is no key at all), but said plainly:
            # the person holding it needs to know to ask for a new one.
            if invite.used_by is not None:
                raise AuthError("unknown_device", "this invite was already used: ask for a new one")
            if t > invite.expires:
                raise AuthError("unknown_device", "this invite has expired: ask for a new one")
            found["invite"] = invite
            return invite.key
        raise AuthError("unknown_device", "no device or live invite of this workspace has this key")

    signed_by = verify(public_key_for)
    revoked = found.get("device") is not None and found["device"].status == "revoked"
    if revoked and access != REVOKED:
        raise refuse("revoked_device", "this device was revoked")
    caller = Caller(
        workspace=ws,
        key_id=signed_by.key_id,
        state=found["state"],
        device=found.get("device"),
        invite=found.get("invite"),
    )
    conn = workspace_conn(ws)
    assert conn is not None  # the key lookup above opened it
    if nonce_seen(conn, signed_by.key_id, signed_by.nonce):
        raise refuse("replayed_nonce", "this request was already received")
    _authorise(access, caller)
    g.fs_nonce = (
        signed_by.key_id,
        signed_by.nonce,
        t + 2 * current_app.config["SIGNATURE_WINDOW"],
        t,
    )
    if not defer_nonce:
        _consume_alone(conn)
    return caller


def recheck_in_transaction(conn: sqlite3.Connection) -> None:
    """Inside the route's write transaction: refuse a device revoked since it was
    authenticated, then record the request's nonce.

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
    consume_nonce_in(conn)


def consume_nonce_in(conn: sqlite3.Connection) -> None:
    """Record the request's nonce inside the caller's write transaction.

    A push then takes the write lock once rather than twice; if another request
    with the same nonce committed first, the whole transaction is refused.
    """
    pending = g.pop("fs_nonce", None)
    if pending is not None and not consume_nonce(conn, *pending):
        raise refuse("replayed_nonce", "this request was already received")


def _consume_alone(conn: sqlite3.Connection) -> None:
    if g.get("fs_nonce") is not None:
        with store.write(conn):
            consume_nonce_in(conn)


F = TypeVar("F", bound=Callable[..., Any])


def signed(access: str, *, nonce_in_transaction: bool = False) -> Callable[[F], F]:
    """Require a valid device (or invite) signature for the view's `<ws>` (flaskr's
    `login_required`, with roles). The view finds the caller in `g.caller`.

    With `nonce_in_transaction` the view records the nonce in its own write
    transaction (`consume_nonce_in`); whatever path the view takes, a nonce it
    did not record is recorded before the answer leaves.
    """
    if access not in ACCESS:
        raise ValueError(f"unknown access {access!r}")

    def wrap(view: F) -> F:
        @functools.wraps(view)
        def wrapped(ws: str, **kw: Any) -> Any:
            g.caller = authenticate(ws, access, defer_nonce=nonce_in_transaction)
            try:
                return view(ws, **kw)
            finally:
                conn = workspace_conn(ws)
                if conn is not None:
                    _consume_alone(conn)

        wrapped.fieldsync_access = access  # type: ignore[attr-defined]
        return cast(F, wrapped)

    return wrap
