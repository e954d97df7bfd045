"""`make demo`, the quick start's first command, run as a person runs it: the module in a
fresh folder, every byte of its output read."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

from client_sync.demo import CAPTION, plaintext_markers
from client_sync.demo_photo import EXIF_STRINGS


def test_make_demo_plays_the_day_and_finds_nothing_on_the_server(tmp_path: Path) -> None:
    ran = subprocess.run(
        [sys.executable, "-m", "client_sync.demo"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert (ran.returncode, ran.stderr) == (0, ""), ran.stdout[-3000:]
    out = ran.stdout
    root = tmp_path / "fieldsync-demo"
    # The photo the volunteer attached comes back to the coordinator byte for byte,
    # verified against the SHA-256 sealed at capture.
    original = (root / "police-van.jpg").read_bytes()
    fetched = (root / "evidence" / "police-van.jpg").read_bytes()
    digest = hashlib.sha256(original).hexdigest()
    assert fetched == original
    assert f"evidence/police-van.jpg  sha256:{digest}  verified ({len(original):,} bytes)" in out
    # Every value of the day, the caption and the photo's EXIF searched for and absent.
    markers = [*plaintext_markers(), CAPTION, *(t.decode() for t in EXIF_STRINGS)]
    assert f"for {len(markers)} plaintext values and names:" in out
    for marker in markers:
        assert f"    absent  {marker}\n" in out
    assert "FOUND" not in out and "none is there. Demo finished in" in out
    # It ends by saying how to open the same day in the workbench.
    assert f"FIELDSYNC_HOME={root / 'coordinator-dana'} " in out and out.rstrip().endswith(
        f"are beside it in {root}."
    )
