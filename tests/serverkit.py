"""Build workspaces through the pure core and talk to a fieldsync server, signed.

Shared by the server tests and usable by client tests: everything here goes
through `protocol/` (keys, genesis, invites, enrolls, approvals, sealed bundles)
and RFC 9421 request signatures, over either Flask's test client or real HTTP.

    kit = Kit.create(FlaskTransport(app.test_client()), code, seed=1)
    vol = kit.member("volunteer")
    bundle = kit.seal(vol, {"place": "Kelmer Square", "attended": 12})
    resp = kit.push(vol, [bundle])          # Response(status, body)
    assert resp.body["results"][0]["status"] == "accepted"

Randomness comes from a seeded `random.Random`, so a test is reproducible; the
clock is the real one unless a test passes `created=`. Every text value sealed here
is kept in `SEALED_TEXT`: the log scan (tests/logscan.py) looks for them in server logs.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import crypto, hlc, keys, roster
from protocol.encoding import b64d, b64e
from protocol.httpsig import sign_request
from protocol.keylog import KeyLogState, apply_event, genesis_state, invite_id_for
from protocol.model import ZERO_HASH, Bundle, CellInput

SEALED_TEXT: set[str] = set()


@dataclass
class Response:
    status: int
    body: Any
    raw: bytes = b""  # the body's bytes (a chunk is not JSON)

    @property
    def code(self) -> str | None:
        """The error code of an error answer, else None."""
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return self.body["error"].get("code")
        return None


class Transport(Protocol):
    base: str

    def send(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Response: ...


class FlaskTransport:
    """Send through a Flask test client; URLs are signed as http://localhost/…"""

    base = "http://localhost"

    def __init__(self, client: Any) -> None:
        self.client = client

    def send(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Response:
        resp = self.client.open(path, method=method, headers=headers, data=body)
        return Response(resp.status_code, resp.get_json(silent=True), resp.get_data())


class HttpTransport:
    """Send over real HTTP (urllib) to a server on loopback."""

    def __init__(self, base: str, timeout: float = 30.0) -> None:
        self.base = base.rstrip("/")
        self.timeout = timeout

    def send(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Response:
        req = urllib.request.Request(
            self.base + path, data=body or None, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
                if resp.headers.get_content_type() != "application/json":
                    return Response(resp.status, None, raw)
                return Response(resp.status, json.loads(raw or b"null"), raw)
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = raw.decode("latin-1")
            return Response(exc.code, parsed)


@dataclass
class Member:
    """One device: its keys, role, and its bundle chain (seq and prev of the next bundle)."""

    key: Ed25519PrivateKey
    role: str
    hpke: keys.HpkeKeyPair | None
    device_id: str
    seq: int = 1
    prev: str = ZERO_HASH
    last_hlc: int = 0
    sent: list[Bundle] = field(default_factory=list)

    def keyid(self, workspace: str) -> str:
        return f"{workspace}.{self.device_id}"


class Kit:
    """One workspace: the founder's keys, the epoch keys, the tag key and the key log."""

    def __init__(self, transport: Transport, seed: int = 0) -> None:
        self.transport = transport
        self.rng = random.Random(seed)
        self.clock = time.time  # a test may pin it (and the app's CLOCK) to the same value
        self.workspace = b64e(self.random(16))
        self.tag_key = self.random(32)
        self.epochs: dict[int, keys.HpkeKeyPair] = {1: self.hpke()}
        self.founder = self._member("admin", with_hpke=True)
        self.genesis = roster.genesis(
            workspace=self.workspace,
            admin_key=self.founder.key,
            admin_hpke=self.founder.hpke,  # type: ignore[arg-type]
            epoch=self.epochs[1],
            at=int(time.time()),
        )
        self.state: KeyLogState = genesis_state(self.genesis)
        self.events: list[dict[str, Any]] = [self.genesis]

    # --- randomness and keys ---------------------------------------------------------

    def random(self, n: int) -> bytes:
        return self.rng.randbytes(n)

    def _first_random(self, first: bytes) -> Any:
        """A random source whose first draw is `first` (seal_bundle draws the id first)."""
        pending = [first]

        def draw(n: int) -> bytes:
            return pending.pop() if pending else self.random(n)

        return draw

    def hpke(self) -> keys.HpkeKeyPair:
        return keys.HpkeKeyPair.from_seed(self.random(keys.HPKE_PRIV_LEN))

    def _member(self, role: str, with_hpke: bool) -> Member:
        key = keys.signing_key(self.random(32))
        return Member(
            key=key,
            role=role,
            hpke=self.hpke() if with_hpke else None,
            device_id=keys.device_id_for(keys.public_bytes(key)),
        )

    # --- workspace and key log -------------------------------------------------------

    @classmethod
    def create(cls, transport: Transport, code: str, seed: int = 0) -> Kit:
        """A new workspace on the server, created with a one-time `code`."""
        kit = cls(transport, seed)
        resp = kit.create_request(code)
        assert resp.status == 201, resp
        return kit

    def create_request(self, code: str, **sign: Any) -> Response:
        return self.request(
            "POST", "/v1/workspaces", self.founder, {"code": code, "genesis": self.genesis}, **sign
        )

    def now(self) -> int:
        return int(self.clock())

    def post_event(self, event: dict[str, Any], signer: Member | None = None) -> Response:
        """Append an admin event through the API, and to the local state when accepted."""
        resp = self.request("POST", self.path("log"), signer or self.founder, {"event": event})
        if resp.status == 201:
            self._apply(event)
        return resp

    def _apply(self, event: dict[str, Any]) -> None:
        self.state = apply_event(self.state, event)
        self.events.append(event)

    def invite(self, role: str, expires_in: int = 3600) -> Ed25519PrivateKey:
        invite_key = keys.signing_key(self.random(32))
        event = roster.invite(
            self.state,
            self.founder.key,
            invite_key,
            role,
            expires=self.now() + expires_in,
            at=self.now(),
        )
        resp = self.post_event(event)
        assert resp.status == 201, resp
        return invite_key

    def invite_keyid(self, invite_key: Ed25519PrivateKey) -> str:
        return f"{self.workspace}.{invite_id_for(keys.public_bytes(invite_key))}"

    def enroll(self, invite_key: Ed25519PrivateKey, role: str) -> tuple[Member, Response]:
        member = self._member(role, with_hpke=role in ("coordinator", "admin"))
        event = roster.enroll(
            self.state,
            invite_key,
            member.key,
            role,
            member.hpke.public_bytes if member.hpke else None,
            at=self.now(),
        )
        resp = self.request(
            "POST",
            self.path("enroll"),
            invite_key,
            {"event": event},
            keyid=self.invite_keyid(invite_key),
        )
        if resp.status == 201:
            self._apply(event)
        return member, resp

    def member(self, role: str, approve: bool = True) -> Member:
        """Invite, enroll and (for keyholders, unless approve=False) approve a new device."""
        member, resp = self.enroll(self.invite(role), role)
        assert resp.status == 201, resp
        if approve and role != "volunteer":
            self.approve(member)
        return member

    def approve(self, member: Member) -> None:
        priv = {n: kp.private_bytes for n, kp in self.epochs.items()}
        event = roster.approve(self.state, self.founder.key, member.device_id, priv, self.now())
        resp = self.post_event(event)
        assert resp.status == 201, resp

    def revoke(self, member: Member) -> None:
        resp = self.post_event(
            roster.revoke(self.state, self.founder.key, member.device_id, self.now())
        )
        assert resp.status == 201, resp

    def rotate(self) -> int:
        n = self.state.current_epoch + 1
        self.epochs[n] = self.hpke()
        resp = self.post_event(
            roster.rotate(self.state, self.founder.key, self.epochs[n], self.now())
        )
        assert resp.status == 201, resp
        return n

    # --- bundles ---------------------------------------------------------------------

    def record_id(self) -> str:
        return b64e(self.random(16))

    def seal(
        self,
        member: Member,
        values: dict[str, Any],
        *,
        record_type: str = "picket",
        record_id: str | None = None,
        supersedes: dict[str, tuple[str, ...]] | None = None,
        hlc_value: int | None = None,
        epoch: int | None = None,
        bundle_id: str | None = None,
    ) -> Bundle:
        """Seal one capture of one record (one cell per field) and advance the chain.

        `bundle_id` forces the id (to test id reuse); otherwise it is random.
        """
        rid = record_id or self.record_id()
        cells = [
            (rid, record_type, name, value, (supersedes or {}).get(name, ()))
            for name, value in values.items()
        ]
        return self.seal_cells(member, cells, hlc_value=hlc_value, epoch=epoch, bundle_id=bundle_id)

    def seal_cells(
        self,
        member: Member,
        cells: list[tuple[str, str, str, Any, tuple[str, ...]]],
        *,
        hlc_value: int | None = None,
        epoch: int | None = None,
        bundle_id: str | None = None,
    ) -> Bundle:
        """Seal `(record_id, record_type, field, value, supersedes)` cells as one bundle:
        several may write one field (one register), which `seal` cannot express."""
        epoch = epoch or self.state.current_epoch
        inputs = []
        for rid, record_type, name, value, sup in cells:
            if isinstance(value, str):
                SEALED_TEXT.add(value)
            member.last_hlc = hlc_value or hlc.tick(member.last_hlc, int(self.clock() * 1000))
            inputs.append(
                CellInput(
                    record_id=rid,
                    record_type=record_type,
                    field=name,
                    value=value,
                    hlc=member.last_hlc,
                    supersedes=sup,
                )
            )
        bundle = crypto.seal_bundle(
            workspace=self.workspace,
            device_key=member.key,
            seq=member.seq,
            prev=member.prev,
            epoch=epoch,
            epoch_public=self.epochs[epoch].public_bytes,
            tag_key=self.tag_key,
            cells=inputs,
            random=self._first_random(b64d(bundle_id)) if bundle_id else self.random,
        )
        member.seq += 1
        member.prev = crypto.bundle_hash(bundle)
        member.sent.append(bundle)
        return bundle

    def open(self, bundle: Bundle, device_public: bytes) -> list[Any]:
        priv = {n: kp.private_bytes for n, kp in self.epochs.items()}
        return crypto.open_bundle(bundle, device_public, priv, self.tag_key)

    # --- requests --------------------------------------------------------------------

    def path(self, route: str, query: str = "") -> str:
        return f"/v1/w/{self.workspace}/{route}" + (f"?{query}" if query else "")

    def signed_headers(
        self,
        method: str,
        path: str,
        signer: Member | Ed25519PrivateKey,
        body: bytes,
        *,
        keyid: str | None = None,
        created: int | None = None,
        nonce: str | None = None,
    ) -> dict[str, str]:
        key = signer.key if isinstance(signer, Member) else signer
        if keyid is None:
            assert isinstance(signer, Member)
            keyid = signer.keyid(self.workspace)
        headers = sign_request(
            method=method,
            url=self.transport.base + path,
            body=body,
            key=key,
            keyid=keyid,
            created=self.now() if created is None else created,
            nonce=nonce or b64e(self.random(16)),
        )
        headers["Content-Type"] = "application/json"
        return headers

    def request(
        self,
        method: str,
        path: str,
        signer: Member | Ed25519PrivateKey | None,
        payload: Any = None,
        **sign: Any,
    ) -> Response:
        """Send `payload` as JSON, signed by `signer` (None: unsigned)."""
        body = b"" if payload is None else json.dumps(payload).encode()
        if signer is None:
            headers = {"Content-Type": "application/json"}
        else:
            headers = self.signed_headers(method, path, signer, body, **sign)
        return self.transport.send(method, path, headers, body)

    def push(self, member: Member, bundles: list[Bundle], **sign: Any) -> Response:
        payload = {"bundles": [b.to_wire() for b in bundles]}
        return self.request("POST", self.path("push"), member, payload, **sign)

    def put_chunk(self, member: Member, chunk_id: str, data: bytes, **sign: Any) -> Response:
        """Upload one chunk (application/octet-stream), signed by `member`."""
        path = self.path(f"chunks/{chunk_id}")
        headers = self.signed_headers("PUT", path, member, data, **sign)
        headers["Content-Type"] = "application/octet-stream"
        return self.transport.send("PUT", path, headers, data)

    def get_chunk(self, member: Member, chunk_id: str) -> Response:
        return self.request("GET", self.path(f"chunks/{chunk_id}"), member)

    def missing(self, member: Member, chunk_ids: list[str]) -> Response:
        return self.request("POST", self.path("chunks/missing"), member, {"chunks": chunk_ids})

    def release(
        self, member: Member, change: int, chunk_ids: list[str], *, purge: bool = False
    ) -> Response:
        from protocol.attachment import sign_release

        release = sign_release(
            workspace=self.workspace,
            device_key=member.key,
            change=change,
            chunks=chunk_ids,
            purge=purge,
            at=self.now(),
        )
        return self.request("POST", self.path("chunks/release"), member, {"release": release})

    def changes(self, member: Member, since: int = 0, limit: int = 200) -> Response:
        return self.request("GET", self.path("changes", f"since={since}&limit={limit}"), member)

    def pull_all(self, member: Member, limit: int = 1000) -> list[dict[str, Any]]:
        """Every bundle in change order, paging until done."""
        out: list[dict[str, Any]] = []
        since = 0
        for _ in range(100_000):
            resp = self.changes(member, since, limit)
            assert resp.status == 200, resp
            out += resp.body["bundles"]
            since = resp.body["next"]
            if resp.body["done"]:
                return out
        raise AssertionError("changes never finished")


def wire_with_change(bundle: Bundle, change: int) -> dict[str, Any]:
    """A bundle as the changes feed returns it."""
    return {**bundle.to_wire(), "change": change}


def db_state(data_dir: Any, *, nonces: bool = True) -> dict[str, Any]:
    """Every row of every database under a data directory: compare before and after.

    `nonces=False` leaves out the nonce files, for requests that pass authentication
    (and so rightly spend their nonce) but must change nothing else.
    """
    import hashlib
    from pathlib import Path

    from server.store import Paths
    from server.store.inspect import dump

    paths = Paths(Path(data_dir))
    files = paths.all_databases() + (paths.nonce_databases() if nonces else [])
    state: dict[str, Any] = {str(p.relative_to(paths.data_dir)): dump(p) for p in files}
    if paths.chunks.is_dir():  # chunk files, by content: a refusal leaves none behind
        for f in sorted(paths.chunks.rglob("*")):
            if f.is_file():
                state[str(f.relative_to(paths.data_dir))] = hashlib.sha256(
                    f.read_bytes()
                ).hexdigest()
    return state
