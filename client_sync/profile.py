"""The device profile: where it lives, its passphrase and lock, its keys and its verified log.

Everything a device knows is one JSON state inside the vault (`vault.py`):

    v, server, workspace (the name; it exists only on devices), workspace_id, root
    device_seed, hpke_seed (keyholders), tag_key          -- the device's secrets
    log, seen = [length, head]                            -- the verified key log
    hlc, seq, prev                                        -- clock and bundle chain
    outbox [bundle], rejected [{bundle, error}]           -- sealed, unopenable here
    sent, sent_head, acked, unconfirmed                   -- sent, kept until a receipt
                                                             (delivery.py)
    heads {device: [seq, hash]}                           -- keyholders: signed heads seen
                                                             (watch.py)
    own {record_id: {"type", "cells": {field: cell_id}}}  -- ids only, never values
    replica_key, last_sync

A coordinator's replica is an encrypted database keyed with `replica_key`
(`replica/`, docs/REPLICA.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import os
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import keylog, keys, roster
from protocol.encoding import b64d
from protocol.errors import InvalidKeyLog

from .errors import CliError, IntegrityError, NotAllowed
from .vault import Vault

VAULT_FILE = "profile.vault"
REPLICA_FILE = "replica.db"  # SQLCipher; its WAL and index sit beside it while open
LEGACY_REPLICA_FILE = "replica.sealed"  # the sealed-file format, migrated on first open
REPLICA_FILES = (
    REPLICA_FILE,
    f"{REPLICA_FILE}-wal",
    f"{REPLICA_FILE}-shm",
    f"{REPLICA_FILE}.migrating",
    LEGACY_REPLICA_FILE,
)
LOCK_FILE = ".lock"
STATE_VERSION = 1


def home_dir() -> Path:
    return Path(os.environ.get("FIELDSYNC_HOME") or "~/.fieldsync").expanduser()


def read_passphrase(*, confirm: bool = False) -> str:
    env = os.environ.get("FIELDSYNC_PASSPHRASE")
    if env is not None:
        return env
    if not sys.stdin.isatty():
        # Scripts may pipe it in: one line on standard input, not echoed anywhere.
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise NotAllowed(
                "no passphrase: set FIELDSYNC_PASSPHRASE, pipe it in, or run in a terminal"
            )
        return line
    first = getpass.getpass("fieldsync passphrase: ")
    if confirm and getpass.getpass("repeat the passphrase: ") != first:
        raise CliError("the two passphrases differ: nothing was created")
    return first


@contextlib.contextmanager
def profile_lock(home: Path, timeout: float = 60.0) -> Iterator[None]:
    """One command at a time per profile: two syncs must not both write the vault."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(home / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise CliError(
                        "another fieldsync command is using this profile: wait for it to end"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class Profile:
    """An unlocked profile. Mutate `state` through the helpers, then `save()`."""

    def __init__(self, home: Path, vault: Vault, state: dict[str, Any]) -> None:
        self.home = home
        self.vault = vault
        self.state = state
        self._log_state: keylog.KeyLogState | None = None
        self._epoch_keys: dict[int, bytes] | None = None

    # --- opening and saving -----------------------------------------------------------

    @classmethod
    def create(cls, home: Path, passphrase: str, state: dict[str, Any]) -> Profile:
        state = {"v": STATE_VERSION, **state}
        vault = Vault.create(home / VAULT_FILE, passphrase, state)
        return cls(home, vault, state)

    @classmethod
    def open(cls, home: Path, passphrase: str) -> Profile:
        vault, state = Vault.open(home / VAULT_FILE, passphrase)
        if state.get("v") != STATE_VERSION:
            raise CliError("this profile was written by another fieldsync version")
        return cls(home, vault, state)

    def save(self) -> None:
        self.vault.save(self.state)

    # --- identity ---------------------------------------------------------------------

    @property
    def server(self) -> str:
        return str(self.state["server"])

    @property
    def workspace_id(self) -> str:
        return str(self.state["workspace_id"])

    @property
    def workspace_name(self) -> str:
        return str(self.state["workspace"])

    @property
    def device_key(self) -> Ed25519PrivateKey:
        return keys.signing_key(b64d(self.state["device_seed"], length=32))

    @property
    def device_id(self) -> str:
        return str(self.state["device_id"])

    @property
    def hpke_seed(self) -> bytes | None:
        seed = self.state.get("hpke_seed")
        return b64d(seed, length=keys.HPKE_PRIV_LEN) if seed else None

    @property
    def tag_key(self) -> bytes:
        return b64d(self.state["tag_key"], length=32)

    @property
    def keyid(self) -> str:
        return f"{self.workspace_id}.{self.device_id}"

    # --- the key log ------------------------------------------------------------------

    def log(self) -> keylog.KeyLogState:
        """The stored key log, verified again from the pinned root."""
        if self._log_state is None:
            try:
                self._log_state = keylog.verify_log(self.state["log"], self.state["root"])
            except InvalidKeyLog as exc:
                raise IntegrityError(f"the stored key log does not verify: {exc.reason}") from exc
        return self._log_state

    def adopt_log(self, events: list[dict[str, Any]], state: keylog.KeyLogState) -> None:
        """Keep a log that `keylog.verify_log` accepted (the caller checked seen/rollback)."""
        self.state["log"] = events
        self.state["seen"] = [state.length, state.head]
        self._log_state = state
        self._epoch_keys = None

    @property
    def seen(self) -> tuple[int, str]:
        length, head = self.state["seen"]
        return int(length), str(head)

    def me(self) -> keylog.Device:
        dev = self.log().devices.get(self.device_id)
        if dev is None:
            raise IntegrityError("this device is not in the workspace's key log")
        return dev

    @property
    def role(self) -> str:
        return self.me().role

    @property
    def is_keyholder(self) -> bool:
        return self.me().is_keyholder

    def epoch_keys(self) -> dict[int, bytes]:
        """Every epoch private key the log seals to this device (empty until approved)."""
        if self._epoch_keys is None:
            seed = self.hpke_seed
            if seed is None:
                self._epoch_keys = {}
            else:
                try:
                    self._epoch_keys = roster.open_epoch_keys(self.log(), self.device_id, seed)
                except InvalidKeyLog as exc:
                    raise IntegrityError(f"the key log's epoch keys: {exc.reason}") from exc
        return self._epoch_keys

    def require_keyholder(self, action: str) -> None:
        me = self.me()
        if not me.is_keyholder:
            raise NotAllowed(
                f"a volunteer's device cannot {action}: only coordinators hold the keys"
                " that decrypt records"
            )

    def require_admin(self, action: str) -> None:
        me = self.me()
        if me.role != "admin" or me.status != "active":
            raise NotAllowed(f"only an active admin can {action}; this device is {me.role}")

    def require_active(self) -> None:
        if self.me().status == "revoked":
            raise NotAllowed("this device was revoked by a coordinator; it can no longer sync")


COMMON_PASSPHRASES = frozenset(
    "password passw0rd 123456 12345678 123456789 1234567890 qwerty qwertyuiop 111111"
    " iloveyou admin letmein welcome monkey dragon abc123 fieldsync qazwsx 1q2w3e4r"
    " parol пароль йцукен".split()
)
MIN_PASSPHRASE = 12


def passphrase_weakness(passphrase: str) -> str | None:
    """Why a passphrase is weak, or None. A warning, not a refusal: the person knows
    their situation; the vault's Argon2id slows guessing but cannot save `123456`."""
    text = passphrase.strip()
    if text.casefold() in COMMON_PASSPHRASES:
        return "it is one of the most common passwords"
    if len(set(text)) <= 2:
        return "it repeats one or two characters"
    if text.isdigit():
        return "it is only digits"
    if len(text) < MIN_PASSPHRASE:
        return f"it is shorter than {MIN_PASSPHRASE} characters"
    return None


def weak_passphrase_warning(passphrase: str) -> str | None:
    why = passphrase_weakness(passphrase)
    if why is None:
        return None
    return (
        f"this passphrase is weak ({why}): whoever takes this device can guess it;"
        " four or five random words are stronger and easy to remember"
    )


@contextlib.contextmanager
def new_profile(home: Path | None = None) -> Iterator[tuple[Path, str]]:
    """Lock an empty profile directory for `init`/`join`; yields it and the new passphrase."""
    home = home or home_dir()
    check_new_home(home)
    with profile_lock(home):
        passphrase = read_passphrase(confirm=True)
        yield home, passphrase
    # Said once the profile exists: a refused join is one error line, nothing more.
    warning = weak_passphrase_warning(passphrase)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)


def check_new_home(home: Path) -> None:
    if (home / VAULT_FILE).exists():
        raise CliError(
            f"a fieldsync profile already exists in {home}: set FIELDSYNC_HOME to another"
            " directory, or `fieldsync wipe --yes` first"
        )
