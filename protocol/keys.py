"""Key types and their byte encodings: device identity, HPKE key pairs, fingerprints.

Pure: no I/O, no clock; key generation takes its seed bytes from the caller.

HPKE keys are hybrid ML-KEM-768 + X25519 (`KEM.MLKEM768_X25519`): these records
stay dangerous for decades, so "harvest now, decrypt later" is in the threat model.
A public key is `mlkem768_public (1184 bytes) || x25519_public (32 bytes)`; a
private key is `mlkem768_seed (64 bytes) || x25519_private (32 bytes)`.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .encoding import b64e
from .errors import InvalidEncoding

MLKEM_PUB_LEN = 1184
MLKEM_SEED_LEN = 64
X25519_LEN = 32
HPKE_PUB_LEN = MLKEM_PUB_LEN + X25519_LEN
HPKE_PRIV_LEN = MLKEM_SEED_LEN + X25519_LEN
ED25519_LEN = 32
SIG_LEN = 64
ID_LEN = 16

SUITE = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)


@dataclass(frozen=True)
class HpkeKeyPair:
    private_bytes: bytes
    public_bytes: bytes

    @classmethod
    def from_seed(cls, seed: bytes) -> HpkeKeyPair:
        """`seed` is 96 bytes: the ML-KEM seed then the X25519 private key."""
        if len(seed) != HPKE_PRIV_LEN:
            raise InvalidEncoding("bad_length", f"HPKE seed must be {HPKE_PRIV_LEN} bytes")
        mk = mlkem.MLKEM768PrivateKey.from_seed_bytes(seed[:MLKEM_SEED_LEN])
        xk = x25519.X25519PrivateKey.from_private_bytes(seed[MLKEM_SEED_LEN:])
        pub = mk.public_key().public_bytes_raw() + xk.public_key().public_bytes_raw()
        return cls(private_bytes=seed, public_bytes=pub)

    def private_key(self) -> hpke.MLKEM768X25519PrivateKey:
        return hpke_private_key(self.private_bytes)


@functools.lru_cache(maxsize=8)
def hpke_private_key(data: bytes) -> hpke.MLKEM768X25519PrivateKey:
    # Cached: a coordinator opens every pulled bundle with the same few epoch keys,
    # and expanding an ML-KEM seed costs more than the decapsulation itself.
    if len(data) != HPKE_PRIV_LEN:
        raise InvalidEncoding("bad_length", f"HPKE private key must be {HPKE_PRIV_LEN} bytes")
    return hpke.MLKEM768X25519PrivateKey(
        mlkem.MLKEM768PrivateKey.from_seed_bytes(data[:MLKEM_SEED_LEN]),
        x25519.X25519PrivateKey.from_private_bytes(data[MLKEM_SEED_LEN:]),
    )


@functools.lru_cache(maxsize=32)
def hpke_public_key(data: bytes) -> hpke.MLKEM768X25519PublicKey:
    # Cached: a device seals every capture to the same epoch key, and parsing an
    # ML-KEM public key costs a fifth of a seal.
    if len(data) != HPKE_PUB_LEN:
        raise InvalidEncoding("bad_length", f"HPKE public key must be {HPKE_PUB_LEN} bytes")
    try:
        return hpke.MLKEM768X25519PublicKey(
            mlkem.MLKEM768PublicKey.from_public_bytes(data[:MLKEM_PUB_LEN]),
            x25519.X25519PublicKey.from_public_bytes(data[MLKEM_PUB_LEN:]),
        )
    except ValueError as exc:
        raise InvalidEncoding("bad_key", "HPKE public key does not decode") from exc


def signing_key(seed: bytes) -> Ed25519PrivateKey:
    if len(seed) != ED25519_LEN:
        raise InvalidEncoding("bad_length", "Ed25519 seed must be 32 bytes")
    return Ed25519PrivateKey.from_private_bytes(seed)


def signing_seed(key: Ed25519PrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


# Ed25519 strictly (docs/PROTOCOL.md, "Signatures"). OpenSSL verifies RFC 8032's
# cofactorless equation and refuses S >= L and non-canonical R, but accepts public
# keys and R of small order, and one non-canonical encoding of A: with a small-order
# key, a signature with S = 0 verifies for one message in eight, so "strict" alone
# would let a hostile device choose a key that signs everything. Other libraries
# differ again (ZIP-215 verifiers accept what OpenSSL refuses). So every verifier
# refuses, before the equation: A or R not canonical (y >= p), and A or R of small
# order. Honest keys and signatures never hit these (A = aB and R = rB are of prime
# order), so refusing costs nothing and makes every implementation agree.
_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_Y_MASK = (1 << 255) - 1
# The y coordinates of the eight points of order 1, 2, 4 and 8 (x = ±..., so the
# sign bit does not matter): the identity, -1, 0 and the two of the order-8 points.
_SMALL_ORDER_Y = frozenset(
    {
        1,
        _P - 1,
        0,
        2707385501144840649318225287225658788936804267575313519463743609750303402022,
        55188659117513257062467267217118295137698188065244968500265048394206261417927,
    }
)


def weak_point(encoded: bytes) -> str | None:
    """Why a 32-byte Ed25519 point encoding is refused (non-canonical or small order), or None."""
    y = int.from_bytes(encoded, "little") & _Y_MASK
    if y >= _P:
        return "not a canonical point encoding"
    if y in _SMALL_ORDER_Y:
        return "a point of small order"
    return None


def check_public_key(public: bytes, what: str = "Ed25519 public key") -> None:
    """Refuse a public key no honest device has: wrong length, non-canonical, small order."""
    if len(public) != ED25519_LEN:
        raise InvalidEncoding("bad_length", f"{what} must be 32 bytes")
    reason = weak_point(public)
    if reason is not None:
        raise InvalidEncoding("bad_key", f"{what} is {reason}")


def check_signature_encoding(signature: bytes) -> None:
    """Refuse a signature whose R is non-canonical or of small order, or whose S >= L."""
    if len(signature) != SIG_LEN:
        raise InvalidEncoding("bad_length", "an Ed25519 signature is 64 bytes")
    reason = weak_point(signature[:32])
    if reason is not None:
        raise InvalidEncoding("bad_signature", f"the signature's R is {reason}")
    if int.from_bytes(signature[32:], "little") >= _L:
        raise InvalidEncoding("bad_signature", "the signature's S is not reduced (S >= L)")


@functools.lru_cache(maxsize=1024)
def verify_key(public: bytes) -> Ed25519PublicKey:
    # Cached per key: a server verifies every bundle and request of a device with the
    # same key, and the key's checks and decoding are a fiftieth of a verify. Only a
    # key that passed is kept (a refusal raises, and lru_cache keeps no exception);
    # the signature's own checks (R, S) are made for every signature.
    check_public_key(public)
    return Ed25519PublicKey.from_public_bytes(public)


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def verify_signature(public: bytes, signature: bytes, message: bytes) -> bool:
    """RFC 8032 verification (cofactorless), after the strict checks above."""
    try:
        check_signature_encoding(signature)
        verify_key(public).verify(signature, message)
    except (InvalidSignature, InvalidEncoding, ValueError):
        return False
    return True


@functools.lru_cache(maxsize=1024)
def device_id_for(sign_public: bytes) -> str:
    """A device's pseudonym: the first 16 bytes of SHA-256 over a label and its key.

    Derived, not chosen, so a device cannot claim another's id and the server can
    check the binding without a lookup table.
    """
    digest = hashlib.sha256(b"fieldsync/v1/device-id\x00" + sign_public).digest()
    return b64e(digest[:ID_LEN])
