"""Founding a workspace, inviting a device, joining with an invite.

The invite string (`protocol/invite.py`) carries what a new device needs and
nothing the server could alter unnoticed: it is signed by the inviting admin and
checked against the key log the joining device verifies from the root the invite
names. The workspace's name rides in the fragment of the server URL
(`https://host#workspace=Name`): signed with the rest, never sent to the server
(fragments are not part of HTTP requests), and shown by `fieldsync status`.
"""

from __future__ import annotations

import os
import time
import urllib.parse
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import invite, keylog, keys, roster
from protocol.encoding import b64d, b64e
from protocol.errors import InvalidEncoding, InvalidInvite, InvalidKeyLog, ProtocolError
from protocol.model import ZERO_HASH

from .errors import CliError, IntegrityError, NetworkError, NotAllowed, ServerError, UsageError
from .keyring import append, fetch_log, load_log, refresh_log, verify_served
from .profile import VAULT_FILE, Profile
from .transport import Client

INVITE_HOURS = 24 * 7


def normalize_server(url: str) -> str:
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"not a server URL: {url!r} (expected e.g. https://sync.example.org)")
    if parts.query or parts.fragment:
        raise UsageError("the server URL must not carry a query or a fragment")
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def _new_device(role: str) -> tuple[Ed25519PrivateKey, bytes, keys.HpkeKeyPair | None]:
    # A device id is typed on command lines (`fieldsync approve ID`), where a leading
    # "-" reads as an option: a key whose id starts so is drawn again (one in 64).
    while True:
        seed = os.urandom(32)
        key = keys.signing_key(seed)
        if not keys.device_id_for(keys.public_bytes(key)).startswith("-"):
            break
    hpke = keys.HpkeKeyPair.from_seed(os.urandom(keys.HPKE_PRIV_LEN))
    return key, seed, hpke if role in keylog.KEYHOLDER_ROLES else None


def _base_state(
    *,
    server: str,
    name: str,
    workspace: str,
    root: str,
    device_seed: bytes,
    device_id: str,
    hpke: keys.HpkeKeyPair | None,
    tag_key: bytes,
    events: list[dict[str, Any]],
    state: keylog.KeyLogState,
) -> dict[str, Any]:
    return {
        "server": server,
        "workspace": name,
        "workspace_id": workspace,
        "root": root,
        "device_seed": b64e(device_seed),
        "device_id": device_id,
        "hpke_seed": b64e(hpke.private_bytes) if hpke else None,
        "tag_key": b64e(tag_key),
        "log": events,
        "seen": [state.length, state.head],
        "hlc": 0,
        "seq": 0,
        "prev": ZERO_HASH,
        "outbox": [],
        "rejected": [],
        "own": {},
        "replica_key": b64e(os.urandom(32)) if hpke else None,
        "last_sync": None,
    }


def _discard(home: Path) -> None:
    # A profile for a workspace or enrollment the server never took: remove it so the
    # command can simply be run again.
    (home / VAULT_FILE).unlink(missing_ok=True)


def init(home: Path, passphrase: str, server: str, name: str, code: str) -> Profile:
    """Found a workspace: this device becomes its first admin coordinator."""
    server = normalize_server(server)
    if not name.strip():
        raise UsageError("the workspace name must not be empty")
    device_key, seed, hpke = _new_device("admin")
    assert hpke is not None
    epoch = keys.HpkeKeyPair.from_seed(os.urandom(keys.HPKE_PRIV_LEN))
    workspace = b64e(os.urandom(16))
    genesis = roster.genesis(
        workspace=workspace, admin_key=device_key, admin_hpke=hpke, epoch=epoch, at=int(time.time())
    )
    state = keylog.genesis_state(genesis)
    device_id = keys.device_id_for(keys.public_bytes(device_key))
    # The vault is written before the server hears of the workspace, so its keys
    # cannot be lost between the two.
    prof = Profile.create(
        home,
        passphrase,
        _base_state(
            server=server,
            name=name.strip(),
            workspace=workspace,
            root=state.root,
            device_seed=seed,
            device_id=device_id,
            hpke=hpke,
            tag_key=os.urandom(32),
            events=[genesis],
            state=state,
        ),
    )
    client = Client(server, workspace, device_key, device_id)
    try:
        answer = client.post("/v1/workspaces", {"code": code, "genesis": genesis})
    except NetworkError as lost:
        try:  # the answer may be lost after the server created the workspace
            fetch_log(client, state.root)
        except CliError:
            _discard(home)
            raise lost from None
        return prof
    except CliError:
        _discard(home)
        raise
    if not isinstance(answer, dict) or answer.get("root") != state.root:
        _discard(home)
        raise IntegrityError("the server acknowledged a workspace root that is not this genesis")
    return prof


def check_invite_hours(hours: float) -> None:
    if not 0 < hours <= 24 * 90:
        raise UsageError("--expires-in must be between 0 and 2160 hours")


def make_invite(prof: Profile, client: Client, role: str, hours: float) -> str:
    """Append an invite event and return the invite string for the new device."""
    prof.require_admin("invite devices")
    if role not in ("volunteer", "coordinator"):
        raise UsageError("the role must be volunteer or coordinator")
    check_invite_hours(hours)
    refresh_log(prof, client)
    invite_seed = os.urandom(32)
    invite_key = keys.signing_key(invite_seed)
    now = int(time.time())
    expires = now + int(hours * 3600)
    append(
        prof,
        client,
        lambda st: roster.invite(st, prof.device_key, invite_key, role, expires, now),
    )
    fragment = urllib.parse.urlencode({"workspace": prof.workspace_name})
    fields = {
        "server": f"{prof.server}#{fragment}",
        "workspace": prof.workspace_id,
        "root": prof.state["root"],
        "role": role,
        "expires": expires,
        "tag_key": prof.state["tag_key"],
        "invite_seed": b64e(invite_seed),
        "admin": prof.device_id,
    }
    return invite.encode_invite(fields, prof.device_key)


def write_qr(text: str, path: str) -> None:
    import segno  # only the admin making a QR code pays for the import

    try:
        segno.make(text, error="m", micro=False).save(path, kind="png", scale=4, border=4)
    except OSError as exc:
        raise CliError(f"cannot write the QR code to {path}: {exc.strerror}") from None


def _refused(exc: InvalidInvite | InvalidEncoding) -> CliError:
    # Used or expired: the invite was good but is spent (exit 3); anything else is a
    # damaged, altered or misdirected invite (exit 1).
    kind = NotAllowed if exc.code in ("used", "expired") else CliError
    return kind(f"this invite cannot be used: {exc.reason}")


def read_invite(text: str) -> dict[str, Any]:
    try:
        inv = invite.decode_invite(text)
        b64d(inv["invite_seed"], length=32, what="invite_seed")
        b64d(inv["tag_key"], length=32, what="tag_key")
    except (InvalidInvite, InvalidEncoding) as exc:
        raise _refused(exc) from None
    return inv


def _invite_log(client: Client, root: str) -> tuple[list[dict[str, Any]], keylog.KeyLogState]:
    """The log of the invite's workspace, as its one-time key may read it, verified."""
    try:
        events = load_log(client)
    except ServerError as exc:
        # A spent invite is `unknown_device`; an invite the server does not know is
        # `bad_signature`, the answer for any keyid without a key there (the server
        # tells a stranger nothing about which ids exist).
        if exc.code not in ("unknown_device", "bad_signature"):
            raise
        # The server's own words (used, expired, or no such invite): it alone can tell.
        raise NotAllowed(f"this invite cannot be used: {exc.detail or exc.message}") from None
    try:
        other_root = keylog.event_hash(events[0]) != root
    except (IndexError, KeyError, TypeError, ValueError, ProtocolError):
        other_root = False  # malformed: verification names what is wrong
    if other_root:
        raise CliError("this invite cannot be used: the invite is for another workspace")
    return events, verify_served(events, root)


def join(home: Path, passphrase: str, text: str, name: str | None = None) -> Profile:
    """Redeem an invite: verify the log from its root, enroll, keep the profile."""
    inv = read_invite(text)
    if time.time() > inv["expires"]:  # the invite's word; the logged expiry is checked below
        raise _refused(InvalidInvite("expired", "this invite has expired: ask for a new one"))
    url, fragment = urllib.parse.urldefrag(inv["server"])
    server = normalize_server(url)
    name = name or urllib.parse.parse_qs(fragment).get("workspace", [""])[0] or inv["workspace"]
    workspace, role = inv["workspace"], inv["role"]
    invite_key = keys.signing_key(b64d(inv["invite_seed"], length=32))
    invite_id = keylog.invite_id_for(keys.public_bytes(invite_key))
    client = Client(server, workspace, invite_key, invite_id)
    events, state = _invite_log(client, inv["root"])
    now = int(time.time())
    try:
        invite.check_invite(inv, state, now)
    except InvalidInvite as exc:
        raise _refused(exc) from None
    device_key, seed, hpke = _new_device(role)
    device_id = keys.device_id_for(keys.public_bytes(device_key))
    event = roster.enroll(
        state, invite_key, device_key, role, hpke.public_bytes if hpke else None, now
    )
    try:
        after = keylog.apply_event(state, event, now)
    except InvalidKeyLog as exc:
        raise CliError(f"this invite cannot be used: {exc.reason}") from None
    events = [*events, event]
    prof = Profile.create(
        home,
        passphrase,
        _base_state(
            server=server,
            name=name,
            workspace=workspace,
            root=inv["root"],
            device_seed=seed,
            device_id=device_id,
            hpke=hpke,
            tag_key=b64d(inv["tag_key"], length=32),
            events=events,
            state=after,
        ),
    )
    try:
        answer = client.post(f"/v1/w/{workspace}/enroll", {"event": event})
    except NetworkError as lost:
        # The enrollment may have landed before the answer was lost: ask as the device.
        try:
            events2, state2 = fetch_log(
                Client(server, workspace, device_key, device_id), inv["root"]
            )
        except CliError:
            _discard(home)
            raise lost from None
        if device_id not in state2.devices:
            _discard(home)
            raise
        prof.adopt_log(events2, state2)
        prof.save()
        return prof
    except CliError:
        _discard(home)
        raise
    if (
        not isinstance(answer, dict)
        or answer.get("head") != after.head
        or answer.get("device_id") != device_id
    ):
        _discard(home)
        raise IntegrityError("the server acknowledged an enrollment that is not this device's")
    return prof
