"""Attachments end to end, through the real `fieldsync` and a real server behind a proxy
that can cut the line: a volunteer attaches a photo with EXIF GPS and a 20 MB file, the
upload is cut, `sync` resumes at the chunk where it stopped and finishes."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from clientkit import (
    PICKET,
    Team,
    as_json,
    assert_one_line_error,
    server,  # noqa: F401  (a fixture)
    status,
)
from lying_proxy import LyingProxy
from photokit import EXIF_STRINGS, photo_with_gps

from protocol import attachment

MB = 1_000_000


def chunk_puts(proxy: LyingProxy) -> list[str]:
    return [path.rsplit("/", 1)[1] for method, path in proxy.seen if method == "PUT"]


def server_files(data_dir: Path) -> list[Path]:
    return [p for p in data_dir.rglob("*") if p.is_file()]


def test_a_cut_upload_resumes_at_the_chunk_where_it_stopped(
    proxied: tuple[Team, LyingProxy],
    server: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    team, proxy = proxied
    admin = team.found()
    vol = team.enroll(admin, "vol")
    photo = tmp_path / "van.jpg"
    photo.write_bytes(photo_with_gps())
    video = tmp_path / "arrest.mp4"
    video.write_bytes(os.urandom(20 * MB))
    record_id = vol.run("add", "picket", *PICKET).last
    out = vol.run("attach", record_id, str(photo), str(video), "--caption", "Gate 2")
    ids = out.out.split()[-2:]
    assert [ln.split()[1] for ln in out.out.splitlines()[:2]] == ["van.jpg", "arrest.mp4"]
    assert f"sha256:{hashlib.sha256(video.read_bytes()).hexdigest()}" in out.out
    # The device keeps the sealed chunks, never the file: neither the photo's bytes nor
    # its EXIF strings are anywhere in its profile.
    held = b"".join(p.read_bytes() for p in vol.home.rglob("*") if p.is_file())
    assert [
        s for s in [*EXIF_STRINGS, photo.read_bytes()[:4096], video.read_bytes()[:64]] if s in held
    ] == []
    total = 1 + attachment.chunk_count(20 * MB, attachment.CHUNK_SIZE)
    # The line dies after 9 MB of uploads: the first sync pushes the record, sends
    # what it can of the chunks, and stops on a network error.
    proxy.cut_after(9 * MB)
    cut = vol.run("sync", check=False)
    assert cut.rc == 4, cut.err
    assert "rerun" in cut.err or "resumes" in cut.err
    first = set(chunk_puts(proxy))
    assert 5 <= len(first) <= 9
    proxy.clear()
    proxy.seen.clear()
    done = vol.run("sync")
    again = set(chunk_puts(proxy))
    # Only what the server lacks is sent again: the chunks that got through before the
    # cut are not (at most the two in flight at the cut are sent twice). A request
    # refused `429 busy` is retried, so chunks are counted, not requests.
    assert len(first & again) <= 2
    assert len(first | again) == total
    assert total - len(first) <= len(again) <= total - len(first) + 2
    assert re.search(r"uploaded \d+ attachment chunk\(s\)", done.out)
    # A third sync has nothing left to send.
    proxy.seen.clear()
    vol.run("sync")
    assert chunk_puts(proxy) == []
    # Once the server acknowledged the capture and every chunk, the device keeps
    # none of them (the delivery rules may keep them until a coordinator's receipt).
    assert ids[0] != ids[1]
    stored = b"".join(p.read_bytes() for p in server_files(server.data_dir))
    needles = [*EXIF_STRINGS, photo.read_bytes()[200:1200], video.read_bytes()[:64]]
    assert [n for n in needles if n in stored] == []
    assert status(vol)["outbox"] == 0


def test_attach_refuses_what_it_cannot_seal_and_keeps_nothing(
    proxied: tuple[Team, LyingProxy], tmp_path: Path
) -> None:
    team, _ = proxied
    admin = team.found()
    vol = team.enroll(admin, "vol")
    record_id = vol.run("add", "picket", *PICKET).last
    good = tmp_path / "ok.jpg"
    good.write_bytes(photo_with_gps())
    missing = vol.run("attach", record_id, str(good), str(tmp_path / "nope.jpg"), check=False)
    assert_one_line_error(missing, 2, "nope.jpg")
    assert not (vol.home / "chunks").exists() or list((vol.home / "chunks").iterdir()) == []
    assert status(vol)["outbox"] == 1
    other = vol.run("attach", "A" * 22, str(good), check=False)
    assert_one_line_error(other, 2, "--type")
    long = vol.run("attach", record_id, str(good), "--caption", "x" * 1001, check=False)
    assert_one_line_error(long, 2, "--caption")
    assert as_json(vol.run("outbox", "--format", "json"))[-1]["action"] == "add"
