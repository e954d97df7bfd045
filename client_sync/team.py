"""What a person can do with the team, written once for both faces (as operations.py):
devices and their names, invites, approval, revocation, rotation and re-key, rebuilding
a lost server, the safety number. Each takes a `device.Session` and saves.
"""

from __future__ import annotations

from typing import Any

from protocol import tags
from schemas.records import DEVICE_NAME_FIELD, DEVICE_TYPE

from . import keyring
from .device import Session
from .errors import CliError


def device_names(s: Session) -> dict[str, str]:
    """device id -> name, as far as this device can read them: every name a keyholder's
    replica holds, and this device's own.

    A name counts only when written by the device itself or by a keyholder: any
    member knows the tag key and could seal a name for another's record, but it
    would stand beside the real one, and is ignored here.
    """
    names: dict[str, str] = {}
    own = s.prof.state.get("device_name")
    if own:
        names[s.prof.device_id] = own
    replica = s.writable_replica() if s.prof.is_keyholder else None
    if replica is None:
        return names
    log = s.prof.log()
    tag_key = s.prof.tag_key
    for device_id in log.devices:
        record_id = tags.device_name_record(tag_key, device_id)
        tag = tags.field_tag(tag_key, record_id, DEVICE_TYPE, DEVICE_NAME_FIELD)
        for head in replica.heads(record_id, tag):
            author = log.devices.get(head.device_id)
            trusted = head.device_id == device_id or (author is not None and author.is_keyholder)
            if trusted and isinstance(head.value, str) and head.record_type == DEVICE_TYPE:
                names[device_id] = head.value
                break
    return names


def refresh(s: Session) -> str | None:
    """Fetch and verify the key log; when the server cannot be reached, a warning (the
    last verified log stands) instead of an error."""
    try:
        keyring.refresh_log(s.prof, s.client())
        s.prof.save()
    except CliError as exc:
        if exc.exit_code != 4:
            raise
        return f"offline ({exc.message}); showing the key log as of the last sync"
    return None


def devices(s: Session, *, online: bool = True) -> tuple[list[dict[str, Any]], str | None]:
    """Every device of the verified key log with its name, role and status, oldest first;
    and a warning when the server could not be reached (the last verified log is shown)."""
    warning = refresh(s) if online else None
    log = s.prof.log()
    names = device_names(s)
    devs = sorted(log.devices.values(), key=lambda d: d.since)
    items = [
        {
            "device_id": d.device_id,
            "name": names.get(d.device_id),
            "role": d.role,
            "status": d.status,
        }
        for d in devs
    ]
    return items, warning


def invite(s: Session, role: str, hours: float) -> str:
    from . import enrol

    text = enrol.make_invite(s.prof, s.client(), role, hours)
    s.save()
    return text


def approve(s: Session, device_id: str) -> None:
    keyring.approve(s.prof, s.client(), device_id)
    s.save()


def revoke(s: Session, device_id: str) -> bool:
    """Revoke a device; True when its revocation also rotated the epoch key."""
    rotated = keyring.revoke(s.prof, s.client(), device_id)
    s.save()
    return rotated


def rotate(s: Session) -> int:
    epoch = keyring.rotate(s.prof, s.client())
    s.save()
    return epoch


def rekey(s: Session, batch_size: int) -> int:
    """Re-seal every stored bundle to the current epoch; resumable."""
    from . import rekey as rekeying

    try:
        n = rekeying.rekey(s.prof, s.client(), batch_size)
    except CliError as exc:
        s.save()
        # Rerunning the same command would rotate again: say how to finish instead.
        raise CliError(
            f"the re-key stopped ({exc.message}): finish it with"
            " `fieldsync rotate --rekey --resume`",
            exc.exit_code,
        ) from None
    s.save()
    return n


def recreate(s: Session, code: str) -> tuple[int, str]:
    """Admin: rebuild a workspace the server lost, from this device's verified key log."""
    from . import recovery

    return recovery.recreate(s.prof, s.client(), code)


def safety_number(s: Session) -> str:
    from protocol.keylog import safety_number as number

    log = keyring.refresh_log(s.prof, s.client())
    s.prof.save()
    return number(log.head)
