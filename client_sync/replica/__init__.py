"""A coordinator's replica: decrypted records in an encrypted SQLite database.

`open_replica(prof)` gives an approved keyholder its `Replica` (migrating a replica
of the old sealed-file format on first open); the read layer over it is
`client_sync/view.py`. Why SQLCipher, and what is where: docs/REPLICA.md.
"""

from __future__ import annotations

from protocol.encoding import b64d

from ..profile import LEGACY_REPLICA_FILE, REPLICA_FILE, Profile
from .core import HeadCell, Ingested, Replica

__all__ = ["HeadCell", "Ingested", "Replica", "open_replica"]


def open_replica(prof: Profile) -> Replica | None:
    """The replica of an approved keyholder; None for volunteers and pending coordinators."""
    me = prof.me()
    if not me.is_keyholder or me.status != "active" or not prof.state.get("replica_key"):
        return None
    key = b64d(prof.state["replica_key"], length=32)
    path = prof.home / REPLICA_FILE
    legacy = prof.home / LEGACY_REPLICA_FILE
    if legacy.exists():
        from .legacy import migrate

        log = prof.log()
        keyholders = {d for d, dev in log.devices.items() if dev.is_keyholder}
        migrate(legacy, path, key, prof.workspace_id, keyholders)
    return Replica(path, key)
