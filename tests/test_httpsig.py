"""Request signatures (RFC 9421, ed25519, RFC 9530 digests) with the fieldsync profile.

The RFC's own example and each refusal are in tests/vectors/httpsig.json (run by
test_vectors.py); these tests cover the round trip and the caller's hooks.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from corekit import T0, WORKSPACE, device_id, sign_key

from protocol.encoding import b64e
from protocol.httpsig import (
    AuthError,
    SignedBy,
    check_body,
    content_digest,
    parse_request,
    sign_request,
    verify_presented,
    verify_request,
)

KEY = sign_key("volunteer")
DEVICE = device_id(KEY)
KEYID = f"{WORKSPACE}.{DEVICE}"
URL = f"https://sync.example.org/v1/w/{WORKSPACE}/changes?since=0&limit=50"
NONCE = b64e(b"sixteen bytes!!!")


def lookup(keyid: str) -> bytes:
    if keyid != KEYID:
        raise AuthError("unknown_device", "no such device")
    return KEY.public_key().public_bytes_raw()


def signed(method: str = "GET", body: bytes = b"", url: str = URL) -> list[tuple[str, str]]:
    headers = sign_request(
        method=method, url=url, body=body, key=KEY, keyid=KEYID, created=T0, nonce=NONCE
    )
    return list(headers.items())


def verify(
    headers: list[tuple[str, str]],
    *,
    method: str = "GET",
    body: bytes = b"",
    now: int = T0,
    keys: Callable[[str], bytes] = lookup,
) -> SignedBy:
    return verify_request(
        method=method, url=URL, headers=headers, body=body, public_key_for=keys, now=now
    )


def refusal(headers: list[tuple[str, str]], **kw: object) -> str:
    with pytest.raises(AuthError) as info:
        verify(headers, **kw)  # type: ignore[arg-type]
    return info.value.code


def test_round_trip_names_the_signer() -> None:
    assert verify(signed()) == SignedBy(
        keyid=KEYID, workspace=WORKSPACE, key_id=DEVICE, created=T0, nonce=NONCE
    )


def test_an_empty_body_is_digested_too() -> None:
    headers = dict(signed())
    assert headers["Content-Digest"] == content_digest(b"")
    assert headers["Content-Digest"].startswith("sha-256=:")


def test_post_with_a_body() -> None:
    body = b'{"bundles":[]}'
    assert verify(signed("POST", body), method="post", body=body).key_id == DEVICE


def test_header_names_are_case_insensitive() -> None:
    lower = [(k.lower(), v) for k, v in signed()]
    assert verify(lower).key_id == DEVICE


def test_the_method_is_compared_in_upper_case() -> None:
    assert verify(signed("get"), method="GET").key_id == DEVICE


def test_replay_is_the_callers_to_catch() -> None:
    # The same request verifies twice: the server remembers nonces (docs/PROTOCOL.md, HTTP API).
    headers = signed()
    assert verify(headers) == verify(headers)


def test_unknown_and_revoked_keys_keep_the_callers_code() -> None:
    def revoked(keyid: str) -> bytes:
        raise AuthError("revoked_device", "revoked")

    assert refusal(signed(), keys=lambda k: lookup("other")) == "unknown_device"
    assert refusal(signed(), keys=revoked) == "revoked_device"


def test_a_malformed_public_key_is_a_bad_signature() -> None:
    assert refusal(signed(), keys=lambda k: b"short") == "bad_signature"


def test_staleness_is_checked_before_the_key_is_looked_up() -> None:
    looked_up: list[str] = []

    def spy(keyid: str) -> bytes:
        looked_up.append(keyid)
        return lookup(keyid)

    assert refusal(signed(), now=T0 + 3600, keys=spy) == "stale_signature"
    assert looked_up == []


def test_the_query_is_covered() -> None:
    headers = signed(url=URL.replace("since=0", "since=9"))
    assert refusal(headers) == "bad_signature"


def test_a_second_signature_header_line() -> None:
    headers = signed()
    other = sign_request(
        method="GET", url=URL, body=b"", key=KEY, keyid=KEYID, created=T0, nonce=NONCE[::-1]
    )
    assert refusal([*headers, ("Signature", other["Signature"])]) == "bad_signature"


@pytest.mark.parametrize("drop", ["Signature", "Signature-Input"])
def test_half_a_signature_is_missing(drop: str) -> None:
    assert refusal([(k, v) for k, v in signed() if k != drop]) == "missing_signature"


@pytest.mark.parametrize(
    "value",
    [
        'fs=("@method");created=1',
        "fs=:AAAA:",
        "garbage",
        'fs=("@method" "@target-uri" "content-digest")',
    ],
)
def test_malformed_signature_input(value: str) -> None:
    headers = [(k, value if k == "Signature-Input" else v) for k, v in signed()]
    assert refusal(headers) == "bad_signature"


def test_only_the_label_fs_is_accepted() -> None:
    headers = [(k, v.replace("fs=", "pyhms=", 1)) for k, v in signed()]
    assert {k: v for k, v in headers}["Signature"].startswith("pyhms=:")
    assert refusal(headers) == "bad_signature"


@pytest.mark.parametrize(
    "digest",
    [
        "sha-512=:" + "A" * 86 + "==:",  # another algorithm (RFC 9530 allows it; we do not)
        "sha-256=:47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU=:",  # base64url, not base64
        "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU:",  # no padding
        "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFV=:",  # non-zero trailing bits
        "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:;x=1",  # a parameter
        "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:, sha-256=:AAAA:",  # two members
        "sha-256=:AAAA:",  # not 32 bytes
    ],
)
def test_content_digest_is_one_padded_sha256_byte_sequence(digest: str) -> None:
    """Refused before any key is looked up, whatever the signature covers."""
    headers = [(k, digest if k == "Content-Digest" else v) for k, v in signed()]
    looked_up: list[str] = []

    def spy(keyid: str) -> bytes:
        looked_up.append(keyid)
        return lookup(keyid)

    assert refusal(headers, keys=spy) == "bad_signature"
    assert looked_up == []


def test_the_empty_body_digest_is_the_accepted_spelling() -> None:
    assert content_digest(b"") == "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"


def test_headers_are_verified_without_the_body_then_the_body_is_checked() -> None:
    """What a server does: parse (no key, no body), verify (a key, no body), then the body."""
    body = b'{"bundles":[]}'
    headers = signed("POST", body)
    p = parse_request(method="POST", url=URL, headers=headers, now=T0)
    assert (p.keyid, p.key_id, p.created, p.nonce) == (KEYID, DEVICE, T0, NONCE)
    signed_by = verify_presented(p, KEY.public_key().public_bytes_raw())
    assert signed_by == SignedBy(
        keyid=KEYID, workspace=WORKSPACE, key_id=DEVICE, created=T0, nonce=NONCE
    )
    check_body(p, body)
    with pytest.raises(AuthError) as info:
        check_body(p, body + b" ")
    assert (info.value.code, info.value.reason) == (
        "bad_signature",
        "the body does not match its signed Content-Digest",
    )
    other = sign_key("stranger").public_key().public_bytes_raw()
    with pytest.raises(AuthError) as info:
        verify_presented(p, other)
    assert info.value.code == "bad_signature"
