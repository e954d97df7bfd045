"""Helpers for the access-key tests (not a test module): what a device's vault holds, and
what someone who seizes the server (its workspace file, or a backup of it) gets.

The tests open vaults with the passphrase the test devices use, as a coerced or
departed keyholder could open its own; they read the server's files directly, as
whoever seizes the disk would.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

from clientkit import PASSPHRASE  # what clientkit.Team gives every device

from client_sync.demo import Device, ServerProcess, server_command
from client_sync.profile import VAULT_FILE, Profile
from client_sync.vault import Vault
from protocol import invite
from protocol.encoding import b64d, b64e, canonical_json
from protocol.model import Bundle, Cell


def vault_state(dev: Device) -> dict[str, Any]:
    return Vault.open(dev.home / VAULT_FILE, PASSPHRASE)[1]


def profile(dev: Device) -> Profile:
    """The device's unlocked profile, in this process (no command may be running on it)."""
    return Profile.open(dev.home, PASSPHRASE)


def epoch_keys(dev: Device) -> dict[int, bytes]:
    """Every epoch private key the device can open from its vault: what it takes away."""
    return profile(dev).epoch_keys()


def workspace_file(server: ServerProcess, ws: str) -> Path:
    return server.data_dir / "workspaces" / f"{ws}.sqlite"


def _read(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def log_length(server: ServerProcess, ws: str) -> int:
    conn = _read(workspace_file(server, ws))
    try:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    finally:
        conn.close()


def dump_bundles(path: Path, ws: str) -> list[Bundle]:
    """Every bundle of a workspace file, rebuilt from its rows, in change order."""
    conn = _read(path)
    try:
        cells: dict[int, list[Cell]] = {}
        for change, rid, tag, cid, hlc, sup, ct in conn.execute(
            "SELECT bundle_change, record_id, field_tag, cell_id, hlc, supersedes, ct"
            " FROM cells ORDER BY bundle_change, idx"
        ):
            cells.setdefault(change, []).append(
                Cell(rid, tag, cid, hlc, tuple(json.loads(sup)), ct)
            )
        return [
            Bundle(
                ws, bid, dev, seq, prev, epoch, commit, tuple(cells.get(change, ())), kep, sk, sig
            )
            for change, bid, dev, seq, prev, epoch, commit, kep, sk, sig in conn.execute(
                "SELECT change, bundle_id, device_id, seq, prev, epoch, key_commit, key_epoch,"
                " sealed_key, sig FROM bundles ORDER BY change"
            )
        ]
    finally:
        conn.close()


def stored_bundles(server: ServerProcess, ws: str) -> list[Bundle]:
    return dump_bundles(workspace_file(server, ws), ws)


def backup(server: ServerProcess, out_dir: Path) -> None:
    """`fieldsync-server backup`: what an operator keeps, and what a seizure may find."""
    subprocess.run(
        [*server_command(), "backup", "--data-dir", str(server.data_dir), str(out_dir)],
        check=True,
        capture_output=True,
        timeout=60,
    )


def reencode_invite(text: str, **changes: Any) -> str:
    """The invite with some fields changed and its signature left as it was."""
    body = json.loads(b64d(text[len(invite.PREFIX) :]))
    body.update(changes)
    return invite.PREFIX + b64e(canonical_json(body))


def invite_fields(text: str) -> dict[str, Any]:
    return dict(json.loads(b64d(text[len(invite.PREFIX) :])))
