"""Request signatures: RFC 9421 HTTP Message Signatures, `ed25519`, over RFC 9530 digests.

Pure: no I/O; the time and the nonce are passed in. (The library reads the clock
for its own age check; we disable that check and apply `window` to the `created`
the caller's clock gives, so tests can pin the time.)

Every request but health and the OpenAPI document is signed by a device key,
covering `@method`, `@target-uri` and `content-digest`, with `created`, `nonce`,
`keyid` and `alg="ed25519"`, label `fs`. The keyid is `<workspace>.<id>` where id
is a device id, or an invite id while a new device redeems its invite.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import http_message_signatures as hms
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from http_message_signatures.digests import ContentDigest

from . import keys
from .errors import InvalidEncoding, ProtocolError

LABEL = "fs"
COVERED = ("@method", "@target-uri", "content-digest")
WINDOW_SECONDS = 120


class AuthError(ProtocolError):
    """A request whose signature is missing, malformed, stale or wrong. `code` is stable."""

    family = "auth_error"


@dataclass(frozen=True)
class SignedBy:
    keyid: str
    workspace: str
    key_id: str  # the device id or invite id after the dot
    created: int
    nonce: str


class _Headers:
    """A case-insensitive header view that keeps repeated lines, as the library expects."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._pairs = list(pairs)

    def items(self) -> list[tuple[str, str]]:
        return self._pairs

    def __iter__(self) -> Any:
        return iter(dict.fromkeys(k for k, _ in self._pairs))

    def __contains__(self, name: object) -> bool:
        return any(k.lower() == str(name).lower() for k, _ in self._pairs)

    def __getitem__(self, name: str) -> str:
        vals = [v for k, v in self._pairs if k.lower() == name.lower()]
        if not vals:
            raise KeyError(name)
        return ", ".join(vals)

    def __setitem__(self, name: str, value: str) -> None:
        self._pairs = [(k, v) for k, v in self._pairs if k.lower() != name.lower()]
        self._pairs.append((name, value))

    def __delitem__(self, name: str) -> None:
        self._pairs = [(k, v) for k, v in self._pairs if k.lower() != name.lower()]


@dataclass
class _Message:
    method: str
    url: str
    headers: _Headers


class _Keys(hms.HTTPSignatureKeyResolver):
    def __init__(
        self, private: Ed25519PrivateKey | None = None, lookup: Callable[[str], Any] | None = None
    ):
        self.private = private
        self.lookup = lookup

    def resolve_private_key(self, key_id: str) -> Ed25519PrivateKey:
        assert self.private is not None
        return self.private

    def resolve_public_key(self, key_id: str) -> Ed25519PublicKey:
        assert self.lookup is not None
        return self.lookup(key_id)


class _StrictEd25519(hms.algorithms.ED25519):
    """The library's ed25519 with the protocol's strict checks (see protocol/keys.py)."""

    def verify(self, signature: bytes, message: bytes) -> None:
        try:
            keys.check_signature_encoding(signature)
            keys.check_public_key(self.public_key.public_bytes_raw())
        except InvalidEncoding as exc:
            raise InvalidSignature(exc.reason) from exc
        super().verify(signature, message)


class _Verifier(hms.HTTPMessageVerifier):
    # The library's own age check reads the wall clock; ours uses the caller's.
    max_clock_skew = datetime.timedelta(days=365 * 100)


def content_digest(body: bytes) -> str:
    return ContentDigest.create(body)


def sign_request(
    *,
    method: str,
    url: str,
    body: bytes,
    key: Ed25519PrivateKey,
    keyid: str,
    created: int,
    nonce: str,
) -> dict[str, str]:
    """The headers to add to a request: Content-Digest, Signature-Input, Signature."""
    msg = _Message(method.upper(), url, _Headers([]))
    signer = hms.HTTPMessageSigner(
        signature_algorithm=hms.algorithms.ED25519, key_resolver=_Keys(key)
    )
    signer.sign(
        msg,
        key_id=keyid,
        created=datetime.datetime.fromtimestamp(created, tz=datetime.UTC),
        nonce=nonce,
        label=LABEL,
        covered_component_ids=COVERED[:2],
        body=body,
    )
    return dict(msg.headers.items())


def parse_keyid(keyid: str) -> tuple[str, str]:
    workspace, _, ident = keyid.partition(".")
    if not workspace or not ident:
        raise AuthError("bad_signature", "keyid must be <workspace>.<device id>")
    return workspace, ident


# Content-Digest as RFC 9530 with RFC 8941 serialises it: one `sha-256` member, a byte
# sequence in padded standard base64 (32 bytes: 43 characters and one `=`).
_DIGEST = re.compile(r"sha-256=:([A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=):\Z")


@dataclass(frozen=True)
class Presented:
    """A request's signature, well formed and fresh, not yet verified with any key.

    Everything here comes from the headers alone: `parse_request` needs no key and
    no body, so a server can refuse a stranger before reading either.
    """

    keyid: str
    workspace: str
    key_id: str
    created: int
    nonce: str
    digest: bytes  # the SHA-256 the Content-Digest header announces for the body
    message: _Message = field(repr=False, compare=False)


def parse_request(
    *,
    method: str,
    url: str,
    headers: Iterable[tuple[str, str]],
    now: int,
    window: int = WINDOW_SECONDS,
) -> Presented:
    """Check a request's signature headers without a key: present, well formed (label
    `fs`, the three components, exactly the four parameters, a 16-64 character nonce,
    one `sha-256` Content-Digest, a keyid `<workspace>.<id>`), then `created` within
    `window` seconds of `now`."""
    msg = _Message(method.upper(), url, _Headers(headers))
    if "signature" not in msg.headers or "signature-input" not in msg.headers:
        raise AuthError(
            "missing_signature",
            "the request is not signed: every call but health needs a device signature",
        )
    verifier = _Verifier(signature_algorithm=hms.algorithms.ED25519, key_resolver=None)
    try:
        found = list(verifier._get_sig_inputs_and_signatures(msg, expect_label=None))
    except hms.InvalidSignature as exc:
        raise AuthError("bad_signature", f"malformed signature headers: {str(exc)[:100]}") from exc
    if len(found) != 1:
        raise AuthError("bad_signature", "exactly one signature is expected")
    label, sig_input, _ = found[0]
    if label != LABEL:
        raise AuthError("bad_signature", f"the signature's label must be {LABEL}")
    params = sig_input.params
    covered = [str(item.value) for item in sig_input]
    if any(len(item.params) for item in sig_input):
        raise AuthError("bad_signature", "covered components must carry no parameters")
    if sorted(covered) != sorted(COVERED):
        raise AuthError("bad_signature", f"the signature must cover {', '.join(COVERED)}")
    created, nonce, keyid = params.get("created"), params.get("nonce"), params.get("keyid")
    if type(created) is not int or not isinstance(nonce, str) or not isinstance(keyid, str):
        raise AuthError("bad_signature", "the signature needs created, nonce and keyid")
    if params.get("alg") != "ed25519" or set(params) != {"created", "nonce", "keyid", "alg"}:
        raise AuthError(
            "bad_signature", 'the signature must use alg="ed25519" and no other parameters'
        )
    if not 16 <= len(nonce) <= 64:
        raise AuthError("bad_signature", "the nonce must be 16 to 64 characters")
    try:
        digest_header = msg.headers["content-digest"]
    except KeyError:
        digest_header = ""
    match = _DIGEST.match(digest_header)
    if match is None:
        raise AuthError(
            "bad_signature", "Content-Digest must be one sha-256 member: sha-256=:<base64>:"
        )
    workspace, ident = parse_keyid(keyid)
    if abs(now - created) > window:
        raise AuthError(
            "stale_signature",
            f"the signature's time is more than {window} s from the server's clock:"
            " check this device's clock",
        )
    return Presented(
        keyid=keyid,
        workspace=workspace,
        key_id=ident,
        created=created,
        nonce=nonce,
        digest=base64.b64decode(match.group(1), validate=True),
        message=msg,
    )


def verify_presented(presented: Presented, public_key: bytes) -> SignedBy:
    """Verify the signature over the headers (the method, the URL and the Content-Digest
    *header*) with `public_key`. The body is checked separately (`check_body`)."""
    try:
        key = Ed25519PublicKey.from_public_bytes(public_key)
    except ValueError:
        raise AuthError("bad_signature", "the request signature does not verify") from None
    # Strict Ed25519 (canonical A and R, neither of small order, S < L): lenient and
    # strict verifiers then agree on every signature (docs/PROTOCOL.md "Keys").
    verifier = _Verifier(
        signature_algorithm=_StrictEd25519, key_resolver=_Keys(lookup=lambda _k: key)
    )
    try:
        verifier.verify(presented.message, max_age=None, require_components=COVERED)
    except (hms.InvalidSignature, hms.HTTPMessageSignaturesException) as exc:
        raise AuthError("bad_signature", "the request signature does not verify") from exc
    return SignedBy(
        keyid=presented.keyid,
        workspace=presented.workspace,
        key_id=presented.key_id,
        created=presented.created,
        nonce=presented.nonce,
    )


def check_body(presented: Presented, body: bytes) -> None:
    """The body must be what the signed Content-Digest announced."""
    if not hmac.compare_digest(hashlib.sha256(body).digest(), presented.digest):
        raise AuthError("bad_signature", "the body does not match its signed Content-Digest")


def verify_request(
    *,
    method: str,
    url: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    public_key_for: Callable[[str], bytes],
    now: int,
    window: int = WINDOW_SECONDS,
) -> SignedBy:
    """Verify a request's signature; `public_key_for(keyid)` raises AuthError for unknown keys.

    Checks, in order: present, well-formed, covers the three components with a
    nonce, `created` within `window` seconds of `now`, the key, the signature and
    the body digest. Replay (a nonce seen before) is the caller's to check. A server
    does the same in three steps (`parse_request`, `verify_presented`, `check_body`)
    so that it reads a body only once its signature has verified.
    """
    presented = parse_request(method=method, url=url, headers=headers, now=now, window=window)
    signed_by = verify_presented(presented, public_key_for(presented.keyid))
    check_body(presented, body)
    return signed_by
