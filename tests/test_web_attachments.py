"""Attachments in the workbench: a file input on the capture and record pages seals at
once (uploads held in memory, never in a temporary file); the record page lists each
attachment with its sealed SHA-256, fetches and verifies them as a job with progress
in bytes, and serves a verified file only as a download."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from clientkit import PICKET, new_team, server  # noqa: F401  (a fixture)
from test_web_catalogue import Pseudo, _too_large, escapes
from webkit import BASE, Bench

from client_sync.demo import ServerProcess
from client_sync.demo_photo import photo_with_gps
from client_sync.web import i18n


def _post_files(bench: Bench, path: str, form: dict[str, Any]) -> Any:
    """A multipart form built in memory (the test client would spool a large one to a
    temporary file of its own)."""
    from werkzeug.datastructures import FileStorage, MultiDict
    from werkzeug.test import encode_multipart

    fields: MultiDict[str, Any] = MultiDict({"csrf": bench.gate.csrf})
    for key, value in form.items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, tuple):
                item = FileStorage(stream=item[0], filename=item[1])
            fields.add(key, item)
    boundary, body = encode_multipart(fields)
    return bench.client.post(
        path,
        data=body,
        content_type=f"multipart/form-data; boundary={boundary}",
        base_url=BASE,
    )


def _wait(bench: Bench, location: str) -> str:
    for _ in range(300):
        html = str(bench.get(location).get_data(as_text=True))
        if "refresh" not in html:
            return html
        time.sleep(0.1)
    raise AssertionError("the job did not end")


CAPTION_REFUSED = (
    "A caption is 1 to 1,000 characters of text, without tabs or other control characters."
)


def test_attach_fetch_verify_and_download_in_the_workbench(
    server: ServerProcess,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    team = new_team(server, tmp_path)
    admin = team.found()
    record_id = admin.run("add", "picket", *PICKET).last
    bench = Bench.open(admin)
    try:
        photo = photo_with_gps()
        doc = os.urandom(1 << 20) + b"<html><script>alert(1)</script></html>"

        def no_temp_files(*a: Any, **k: Any) -> Any:
            raise AssertionError("an upload was spooled to a temporary file")

        # Uploads stay in memory: a photo of a detention never lands in /tmp.
        import werkzeug.formparser

        monkeypatch.setattr(werkzeug.formparser, "SpooledTemporaryFile", no_temp_files)
        monkeypatch.setattr(tempfile, "TemporaryFile", no_temp_files)
        resp = _post_files(
            bench,
            f"/records/{record_id}/attach",
            {
                "files": [(io.BytesIO(photo), "van.jpg"), (io.BytesIO(doc), "page.html")],
                "caption": "Gate 2",
            },
        )
        assert resp.status_code == 302, resp.get_data(as_text=True)
        page = bench.get(f"/records/{record_id}").get_data(as_text=True)
        for data in (photo, doc):
            assert hashlib.sha256(data).hexdigest() in page
        assert page.count("not fetched yet") == 2
        # More than the workbench takes at once: nothing attached, and the page says what
        # to do instead (before, a bare "Not possible").
        big = _too_large(bench, f"/records/{record_id}/attach")
        said = " ".join(big.get_data(as_text=True).split())
        assert big.status_code == 413
        assert "<h1>Too large</h1>" in said
        assert "at most 2 MB of files at once: nothing was attached." in said
        assert '<code translate="no">fieldsync attach RECORD_ID FILE</code>' in said
        assert bench.get(f"/records/{record_id}").get_data(as_text=True) == page
        # A new record with a file, from the capture page.
        made = bench.post(
            "/capture/picket",
            {
                "date": "2026-12-05",
                "place": "Invented Gate",
                "files": [(io.BytesIO(b"x"), "a.txt")],
            },
            content_type="multipart/form-data",
        )
        assert made.status_code == 302
        # A caption refused (a tab pasted in) or a value refused: nothing is sealed, the
        # caption is kept beside its message, and the page says the files were not
        # attached (a browser cannot keep them in a form shown again). Before, the
        # picket was sealed and the page asked to fix and send again: a second picket.
        for form, beside in [
            ({"place": "Tabbed Gate", "caption": "Gate\t2"}, CAPTION_REFUSED),
            ({"place": "Tabbed Gate", "date": "2026-02-30"}, None),
        ]:
            refused = bench.post(
                "/capture/picket",
                {"date": "2026-12-05", **form, "files": [(io.BytesIO(b"x"), "fine.pdf")]},
                content_type="multipart/form-data",
            )
            html = refused.get_data(as_text=True)
            assert refused.status_code == 422
            assert "These files were not attached: choose them again" in html
            assert '<bdi translate="no" dir="auto">fine.pdf</bdi>' in html
            if beside:
                assert f'<p class="error" role="alert">{beside}</p>' in html
                kept = 'name="caption" type="text" dir="auto" maxlength="1000" value="Gate\t2"'
                assert kept in html
        assert admin.run("records", "--search", "Tabbed", "--format", "json").out == "[]\n"
        # The same on the record's page: the page again, its attach form open, the
        # caption beside its message in the page's words; nothing sealed.
        waiting = admin.run("outbox", "--format", "json").out
        refused = _post_files(
            bench,
            f"/records/{record_id}/attach",
            {"files": [(io.BytesIO(b"x"), "fine.pdf")], "caption": "Gate\t2"},
        )
        html = refused.get_data(as_text=True)
        assert refused.status_code == 422
        assert f'<p class="error" role="alert">{CAPTION_REFUSED}</p>' in html
        assert 'value="Gate\t2"' in html and '<details class="card" open>' in html
        assert "These files were not attached: choose them again" in html
        assert admin.run("outbox", "--format", "json").out == waiting
        monkeypatch.undo()
        admin.run("sync")  # the captures go out, the chunks are uploaded
        job = bench.post(f"/records/{record_id}/fetch")
        html = _wait(bench, job.headers["Location"])
        assert "2 file(s) verified" in html and f"/records/{record_id}" in html
        page = bench.get(f"/records/{record_id}").get_data(as_text=True)
        assert page.count(">verified<") == 2
        links = [ln for ln in page.split('href="') if ln.startswith(f"/records/{record_id}/files/")]
        got = {}
        for link in links:
            url = link.split('"', 1)[0]
            resp = bench.get(url)
            assert resp.headers["Content-Type"] == "application/octet-stream"
            assert resp.headers["Content-Disposition"].startswith("attachment;")
            assert resp.headers["Content-Security-Policy"] == "sandbox; default-src 'none'"
            got[resp.headers["Content-Disposition"].split('filename="')[1].split('"')[0]] = (
                resp.get_data()
            )
        assert got == {"van.jpg": photo, "page.html": doc}
        # Every word of the record's page with its attachments is in the catalogue.
        monkeypatch.setattr(i18n, "translations", lambda locale: Pseudo())
        assert escapes(bench.get(f"/records/{record_id}").get_data(as_text=True)) == []
    finally:
        bench.device.lock()
