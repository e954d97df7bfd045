"""X-Wing decapsulation and HPKE opening built by hand from ML-KEM-768 and X25519.

What a phone app whose library imports only 32-byte X-Wing seeds can do with
fieldsync's 96-byte private keys (docs/IMPLEMENTERS.md): the generator of
tests/vectors uses it to write keys.json's "xwing" vectors, and the tests check
it against `cryptography`'s HPKE.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

XWING_LABEL = b"\\.//^\\"  # the X-Wing combiner label, last in the hash


def xwing_decapsulate(private96: bytes, enc: bytes) -> dict[str, bytes]:
    """X-Wing Decap from a 96-byte private key, by hand: what a phone app whose library
    imports only 32-byte X-Wing seeds can build from ML-KEM-768 and X25519."""
    sk_m = mlkem.MLKEM768PrivateKey.from_seed_bytes(private96[:64])
    sk_x = x25519.X25519PrivateKey.from_private_bytes(private96[64:])
    ct_m, ct_x = enc[:1088], enc[1088:]
    ss_m = sk_m.decapsulate(ct_m)
    ss_x = sk_x.exchange(x25519.X25519PublicKey.from_public_bytes(ct_x))
    pk_x = sk_x.public_key().public_bytes_raw()
    ss = hashlib.sha3_256(ss_m + ss_x + ct_x + pk_x + XWING_LABEL).digest()
    return {"ss_m": ss_m, "ss_x": ss_x, "shared_secret": ss}


def _labeled_extract(suite: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    h = hmac.HMAC(salt or bytes(32), hashes.SHA256())
    h.update(b"HPKE-v1" + suite + label + ikm)
    return h.finalize()


def _labeled_expand(suite: bytes, prk: bytes, label: bytes, info: bytes, n: int) -> bytes:
    labeled = n.to_bytes(2, "big") + b"HPKE-v1" + suite + label + info
    out, block, i = b"", b"", 1
    while len(out) < n:
        h = hmac.HMAC(prk, hashes.SHA256())
        h.update(block + labeled + bytes([i]))
        block = h.finalize()
        out += block
        i += 1
    return out[:n]


def hpke_open_by_hand(private96: bytes, sealed: bytes, info: bytes) -> dict[str, str]:
    """RFC 9180 base mode, single shot, over X-Wing (KEM 0x647A), HKDF-SHA256, ChaCha20-Poly1305."""
    suite = b"HPKE" + (0x647A).to_bytes(2, "big") + (1).to_bytes(2, "big") + (3).to_bytes(2, "big")
    enc, ct = sealed[:1120], sealed[1120:]
    kem = xwing_decapsulate(private96, enc)
    psk_id_hash = _labeled_extract(suite, b"", b"psk_id_hash", b"")
    info_hash = _labeled_extract(suite, b"", b"info_hash", info)
    context = b"\x00" + psk_id_hash + info_hash
    secret = _labeled_extract(suite, kem["shared_secret"], b"secret", b"")
    key = _labeled_expand(suite, secret, b"key", context, 32)
    nonce = _labeled_expand(suite, secret, b"base_nonce", context, 12)
    plaintext = ChaCha20Poly1305(key).decrypt(nonce, ct, b"")
    return {
        "ct_m_sha256": hashlib.sha256(enc[:1088]).hexdigest(),
        "ct_x_hex": enc[1088:].hex(),
        "ss_m_hex": kem["ss_m"].hex(),
        "ss_x_hex": kem["ss_x"].hex(),
        "shared_secret_hex": kem["shared_secret"].hex(),
        "key_hex": key.hex(),
        "base_nonce_hex": nonce.hex(),
        "plaintext_hex": plaintext.hex(),
    }
