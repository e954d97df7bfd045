"""Recreate a workspace whose server file was lost with no backup: an admin posts its
whole verified key log, and the server builds the workspace from it anew.

The server verifies every event from the genesis, as every device does, and gives
the new file a new incarnation: keyholders then pull from the start, and each
device re-sends at its next sync what it still keeps (client_sync/delivery.py).
"""

from __future__ import annotations

from typing import Any

from .errors import CliError, IntegrityError, NetworkError
from .keyring import fetch_log
from .profile import Profile
from .transport import Client


def recreate(prof: Profile, client: Client, code: str) -> tuple[int, str]:
    """Post this admin's verified key log; returns (its length, the workspace id)."""
    prof.require_admin("recreate the workspace")
    if not 8 <= len(code) <= 128:
        raise CliError("the workspace code is 8 to 128 characters: ask the server operator")
    log = prof.log()  # verified again from the pinned root
    events: list[dict[str, Any]] = prof.state["log"]
    try:
        answer = client.post("/v1/workspaces/recreate", {"code": code, "log": events})
    except NetworkError as lost:
        try:  # the answer may be lost after the server made the workspace
            _, state = fetch_log(client, prof.state["root"], prof.seen, events)
        except CliError:
            raise lost from None
        if (state.length, state.head) != (log.length, log.head):
            raise lost from None
        return log.length, prof.workspace_id
    if (
        not isinstance(answer, dict)
        or answer.get("root") != log.root
        or answer.get("head") != log.head
        or answer.get("length") != log.length
    ):
        raise IntegrityError("the server acknowledged a key log that is not this device's")
    return log.length, prof.workspace_id
