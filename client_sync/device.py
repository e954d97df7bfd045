"""The device core's front door: an unlocked profile, and one session per operation.

Two faces sit on the same core: the command line (`client_sync/cli/`) unlocks for
one command; the workbench (`client_sync/web/`) unlocks once and keeps the key in
memory until it locks. Both run every operation (`operations.py`) inside a
`Session`: the profile's lock file is held, the vault is read again (so what the
other face saved meanwhile is seen) and written back when the operation saves.
Neither face keeps a copy of the state between operations, so neither can lose
the other's changes.

Only the vault key stays in memory between operations (`Vault.reload`), never the
state it opens; `lock()` drops it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CliError, NotAllowed
from .profile import STATE_VERSION, VAULT_FILE, Profile, home_dir, profile_lock, read_passphrase
from .vault import Vault

if TYPE_CHECKING:  # the replica's code (SQLCipher) loads only for a keyholder's session
    from .replica import Replica


class Session:
    """The unlocked profile for one operation, with the replica for keyholders."""

    def __init__(self, prof: Profile, *, writable: bool = True) -> None:
        self.prof = prof
        self.writable = writable
        self.replica: Replica | None = None

    def client(self) -> Any:
        from .keyring import client_for

        return client_for(self.prof)

    def writable_replica(self) -> Replica | None:
        """The replica a coordinator's own captures are folded into at once."""
        if self.replica is None and self.prof.is_keyholder:
            from .replica import open_replica

            self.replica = open_replica(self.prof)
        return self.replica

    def reading_replica(self, action: str) -> Replica:
        self.prof.require_keyholder(action)
        self.prof.require_active()
        replica = self.writable_replica()
        if replica is None:
            raise NotAllowed(
                "this coordinator is not approved yet: ask an admin to run"
                f" `fieldsync approve {self.prof.device_id}`, then `fieldsync sync`"
            )
        return replica

    def save(self) -> None:
        if not self.writable:
            raise AssertionError("a reading session saves nothing")
        # The vault first: a crash between the two leaves a capture in the outbox that
        # the replica has not folded in (it comes back with the next pull), never one
        # the replica holds and the device's chain has forgotten.
        self.prof.save()
        if self.replica is not None:
            self.replica.save()

    def close(self) -> None:
        if self.replica is not None:
            self.replica.close()
            self.replica = None


class Device:
    """A profile unlocked with its passphrase: the derived vault key, nothing else."""

    def __init__(self, home: Path, vault: Vault) -> None:
        self.home = home
        self._vault: Vault | None = vault
        # One operation at a time within this process (the workbench serves requests
        # on threads); the profile's lock file orders it with other processes.
        self._mutex = threading.RLock()

    @classmethod
    def unlock(cls, passphrase: str | None = None, home: Path | None = None) -> Device:
        """Derive the vault key (Argon2id, the slow part) and check it opens the vault."""
        home = home or home_dir()
        if not (home / VAULT_FILE).exists():
            raise CliError(
                f"no fieldsync profile in {home}: run `fieldsync init` or `fieldsync join`"
            )
        vault, state = Vault.open(home / VAULT_FILE, passphrase or read_passphrase())
        if state.get("v") != STATE_VERSION:
            raise CliError("this profile was written by another fieldsync version")
        return cls(home, vault)

    @property
    def locked(self) -> bool:
        return self._vault is None

    def lock(self) -> None:
        """Drop the key: every operation now refuses until the passphrase is given again."""
        with self._mutex:
            if self._vault is not None:
                self._vault.forget()
                self._vault = None

    def relock_with(self, passphrase: str) -> None:
        """Unlock again after `lock()` (the workbench's passphrase page)."""
        fresh = Device.unlock(passphrase, self.home)
        with self._mutex:
            self._vault = fresh._vault

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """One operation: the profile locked against other commands, its state fresh."""
        with self._mutex:
            vault = self._vault
            if vault is None:
                raise NotAllowed("this profile is locked: unlock it with the passphrase")
            with profile_lock(self.home):
                s = Session(Profile(self.home, vault, vault.reload()))
                try:
                    yield s
                finally:
                    s.close()

    @contextlib.contextmanager
    def reading(self) -> Iterator[Session]:
        """A read-only look, taken without the profile lock: the vault is replaced
        atomically and the replica is a database, so reads need not wait for a long
        sync or re-key that holds the lock. Such a session cannot save."""
        vault = self._vault
        if vault is None:
            raise NotAllowed("this profile is locked: unlock it with the passphrase")
        s = Session(Profile(self.home, vault, vault.reload()), writable=False)
        try:
            yield s
        finally:
            s.close()


@contextlib.contextmanager
def unlocked(home: Path | None = None) -> Iterator[Session]:
    """The command line's way: unlock for one command and run it in one session."""
    device = Device.unlock(home=home)
    try:
        with device.session() as s:
            yield s
    finally:
        device.lock()
