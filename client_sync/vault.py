"""Encryption at rest: the profile vault (passphrase) and sealed blobs (a key in the vault).

A device that is seized within the hour of a picket must hold nothing readable, so
the whole profile is one file, `profile.vault`:

    "FSVAULT1" | u32be memory_kib | u32be iterations | u32be lanes | salt (16) | nonce (12)
    | ChaCha20-Poly1305(key, nonce, JSON state, ad = everything before it)

where `key = Argon2id(passphrase, salt, memory_kib, iterations, lanes)`. The cost
is stored in the header (and bound by the AEAD) so a vault keeps the cost it was
made with; it is checked against bounds before any work, so a planted header
cannot make a device spend gigabytes. Every write takes a fresh nonce under the
key derived once per command, and lands atomically: temporary file, fsync,
rename, fsync of the directory. A power cut leaves the old vault or the new one.

`FIELDSYNC_KDF_FAST=1` is for the test suite only: it makes new vaults with a
trivial Argon2id cost so that hundreds of test commands run in seconds. It is
ignored outside pytest; `fieldsync status` says when a vault was made with it.
"""

from __future__ import annotations

import json
import os
import secrets
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from .errors import CliError, NotAllowed

MAGIC = b"FSVAULT1"
_HEADER = struct.Struct(">8sIII16s12s")
DEFAULT_COST = (64 * 1024, 3, 4)  # 64 MiB, 3 passes, 4 lanes
FAST_COST = (32, 1, 4)  # FIELDSYNC_KDF_FAST=1: tests only
_MAX_MEMORY_KIB = 4 * 1024 * 1024
_MAX_ITERATIONS = 64

BLOB_MAGIC = b"FSBLOB1\x00"


def kdf_cost() -> tuple[int, int, int]:
    """The Argon2id cost for a new vault: the real one unless the test suite asks.

    Honoured only under pytest (which sets PYTEST_CURRENT_TEST for the test and the
    processes it starts), so a stray variable cannot weaken a real device's vault.
    """
    if os.environ.get("FIELDSYNC_KDF_FAST") == "1" and os.environ.get("PYTEST_CURRENT_TEST"):
        return FAST_COST
    return DEFAULT_COST


def derive_key(passphrase: str, salt: bytes, cost: tuple[int, int, int]) -> bytes:
    memory, iterations, lanes = cost
    return Argon2id(
        salt=salt, length=32, iterations=iterations, lanes=lanes, memory_cost=memory
    ).derive(passphrase.encode("utf-8"))


def write_atomic(path: Path, data: bytes | Iterable[bytes], *, sync_dir: bool = True) -> None:
    """Replace `path` with `data` (bytes, or pieces streamed one by one) so that a crash
    leaves either the old or the new file. `sync_dir=False`: the caller fsyncs the
    directory once, after many files (a file's chunks)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            for piece in [data] if isinstance(data, bytes) else data:
                fh.write(piece)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync_dir:
        fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a directory's entries (files renamed or removed in it) durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Vault:
    """An open vault: its path, the derived key and the header it keeps across writes."""

    def __init__(self, path: Path, key: bytes, cost: tuple[int, int, int], salt: bytes) -> None:
        self.path = path
        self._key = bytearray(key)  # a bytearray, so that `forget` can overwrite it
        self.cost = cost
        self._salt = salt

    @property
    def fast_kdf(self) -> bool:
        return self.cost[0] < DEFAULT_COST[0] or self.cost[1] < DEFAULT_COST[1]

    @classmethod
    def create(cls, path: Path, passphrase: str, state: dict[str, Any]) -> Vault:
        if not passphrase:
            raise CliError("the passphrase must not be empty")
        cost = kdf_cost()
        salt = os.urandom(16)
        vault = cls(path, derive_key(passphrase, salt, cost), cost, salt)
        vault.save(state)
        return vault

    @classmethod
    def open(cls, path: Path, passphrase: str) -> tuple[Vault, dict[str, Any]]:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise CliError(
                f"no fieldsync profile in {path.parent}: run `fieldsync init` or `fieldsync join`"
            ) from None
        if len(raw) < _HEADER.size + 16 or not raw.startswith(MAGIC):
            raise CliError(f"{path} is not a fieldsync vault (damaged or another file)")
        _magic, memory, iterations, lanes, salt, nonce = _HEADER.unpack_from(raw)
        if not (8 * lanes <= memory <= _MAX_MEMORY_KIB and 1 <= iterations <= _MAX_ITERATIONS):
            raise CliError(f"{path} has an implausible key-derivation cost: the file is damaged")
        cost = (memory, iterations, lanes)
        key = derive_key(passphrase, salt, cost)
        header = raw[: _HEADER.size]
        try:
            plain = ChaCha20Poly1305(key).decrypt(nonce, raw[_HEADER.size :], header)
        except InvalidTag:
            raise NotAllowed(
                "wrong passphrase for this profile (or the vault file is damaged)"
            ) from None
        return cls(path, key, cost, salt), json.loads(plain)

    def reload(self) -> dict[str, Any]:
        """Read the vault again with the key derived at unlock: what another command
        saved since is seen, and no passphrase is asked again (the workbench)."""
        if not self._key:
            raise NotAllowed("this profile is locked: unlock it with the passphrase")
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            raise CliError(f"the profile in {self.path.parent} is gone (wiped?)") from None
        if len(raw) < _HEADER.size + 16 or not raw.startswith(MAGIC):
            raise CliError(f"{self.path} is not a fieldsync vault (damaged or another file)")
        _magic, memory, iterations, lanes, salt, nonce = _HEADER.unpack_from(raw)
        if (memory, iterations, lanes) != self.cost or salt != self._salt:
            raise NotAllowed("the profile was replaced since it was unlocked: unlock it again")
        header = raw[: _HEADER.size]
        try:
            plain = ChaCha20Poly1305(bytes(self._key)).decrypt(nonce, raw[_HEADER.size :], header)
        except InvalidTag:
            raise CliError(f"{self.path} is damaged: it no longer opens") from None
        state: dict[str, Any] = json.loads(plain)
        return state

    def forget(self) -> None:
        """Drop the key (best effort: the bytes are overwritten, copies a library made
        are beyond reach). Until `reload` with a new unlock, nothing opens."""
        for i in range(len(self._key)):
            self._key[i] = 0
        self._key = bytearray()

    def save(self, state: dict[str, Any]) -> None:
        nonce = os.urandom(12)
        header = _HEADER.pack(MAGIC, *self.cost, self._salt, nonce)
        plain = json.dumps(state, separators=(",", ":"), sort_keys=True).encode("utf-8")
        if not self._key:
            raise NotAllowed("this profile is locked: unlock it with the passphrase")
        sealed = ChaCha20Poly1305(bytes(self._key)).encrypt(nonce, plain, header)
        write_atomic(self.path, header + sealed)


def seal_blob(key: bytes, ad: bytes, plain: bytes) -> bytes:
    """A file sealed under a random key kept in the vault (the coordinator's replica)."""
    nonce = os.urandom(12)
    return BLOB_MAGIC + nonce + ChaCha20Poly1305(key).encrypt(nonce, plain, BLOB_MAGIC + ad)


def open_blob(key: bytes, ad: bytes, sealed: bytes, what: str) -> bytes:
    if not sealed.startswith(BLOB_MAGIC) or len(sealed) < len(BLOB_MAGIC) + 12 + 16:
        raise CliError(f"the {what} file is damaged: not a sealed fieldsync file")
    nonce = sealed[len(BLOB_MAGIC) : len(BLOB_MAGIC) + 12]
    try:
        return ChaCha20Poly1305(key).decrypt(nonce, sealed[len(BLOB_MAGIC) + 12 :], BLOB_MAGIC + ad)
    except InvalidTag:
        raise CliError(f"the {what} file is damaged or not this profile's") from None
