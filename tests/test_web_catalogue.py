"""No visible string of the workbench escapes the catalogue, and every message is translated.

Every page is rendered in a pseudo-language whose catalogue wraps each message in
⟦…⟧. Then every text a person sees (text nodes, and the placeholder, title,
aria-label and alt attributes) must be wrapped, or be data: inside an element
marked `translate="no"` (record values, names, ids, times), or hold no letter at
all. Every message the pages used must be in the extracted template
(messages.pot) and translated, not fuzzy, in Russian and Kazakh.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any, ClassVar

import pytest
from babel.messages.pofile import read_po
from babel.support import NullTranslations
from webkit import BASE, PORT, Bench

from client_sync.demo import Day
from client_sync.web import i18n

WRAPPED = re.compile(r"⟦.*?⟧", re.S)
LETTER = re.compile(r"[^\W\d_]")
SEEN_ATTRS = ("placeholder", "title", "aria-label", "alt")
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}  # fmt: skip


class Pseudo(NullTranslations):
    """A catalogue that marks every message it is asked for, and remembers them."""

    used: ClassVar[set[str]] = set()

    def gettext(self, message: str) -> str:
        Pseudo.used.add(message)
        return f"⟦{message}⟧"

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        Pseudo.used.update((singular, plural))
        return f"⟦{singular if n == 1 else plural}⟧"


class Visible(HTMLParser):
    """Collects what a reader sees outside data (`translate="no"`), script and style."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool]] = []
        self.texts: list[str] = []

    def _data(self) -> bool:
        return any(flag for _, flag in self.stack)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        hidden = found.get("translate") == "no" or tag in ("script", "style", "code", "time")
        if not (hidden or self._data()):
            self.texts += [str(found[a]) for a in SEEN_ATTRS if found.get(a)]
            if tag == "input" and found.get("type") in ("submit", "button") and found.get("value"):
                self.texts.append(str(found["value"]))
        if tag not in VOID:
            self.stack.append((tag, hidden))

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            if self.stack.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        if not self._data() and data.strip():
            self.texts.append(data)


def escapes(html: str) -> list[str]:
    parser = Visible()
    parser.feed(html)
    return [t.strip() for t in parser.texts if LETTER.search(WRAPPED.sub("", t))]


@pytest.fixture
def pseudo(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(i18n, "translations", lambda locale: Pseudo())
    yield


def _pages(bench: Bench, day: Day) -> Iterator[tuple[str, str]]:
    for path in ["/", "/capture/picket", "/capture/detention", "/capture/relative", "/outbox",
                 "/records?type=picket", "/records?type=detention", "/records?type=relative",
                 "/records?type=_other", "/conflicts", "/devices", "/export",
                 f"/records/{day.ids['picket']}", f"/records/{day.ids['detention3']}",
                 f"/records/{day.ids['relative1']}",
                 f"/devices/{day.devices['volunteer_a']}/revoke",
                 "/records/AAAAAAAAAAAAAAAAAAAAAA"]:  # fmt: skip
        resp = bench.get(path)
        yield path, resp.get_data(as_text=True)
    # A form refused, with its errors beside the fields.
    bad = bench.post("/capture/picket", {"date": "2026-02-30", "attendance": "forty"})
    assert bad.status_code == 422
    yield "refused picket", bad.get_data(as_text=True)
    bad = bench.post(
        "/capture/picket",
        {"date": "2026-12-04", "files": [(io.BytesIO(b"x"), "a.txt")], "caption": "a\tb"},
        content_type="multipart/form-data",
    )
    yield "refused caption", bad.get_data(as_text=True)
    bad = bench.post(f"/records/{day.ids['relative1']}/edit", {"status": "holiday"})
    yield "refused edit", bad.get_data(as_text=True)
    yield "invite", bench.post("/devices/invite", {"role": "volunteer"}).get_data(as_text=True)
    job = bench.post("/sync").headers["Location"]
    for _ in range(200):
        html = bench.get(job).get_data(as_text=True)
        if "refresh" not in html:
            break
        time.sleep(0.1)
    yield "sync job", html
    yield (
        "refused",
        bench.app.test_client().get("/", base_url="http://127.0.0.1:1").get_data(as_text=True),
    )
    yield "core refusal", bench.post("/outbox/discard", {"bundle_id": "x"}).get_data(as_text=True)
    yield (
        "files too large",
        _too_large(bench, f"/records/{day.ids['picket']}/attach").get_data(as_text=True),
    )
    yield "add to a record", bench.get("/capture/picket?record=").get_data(as_text=True)
    bad = bench.post("/capture/picket", {"record_id": "not an id", "attendance": "3"})
    yield "add to a bad record id", bad.get_data(as_text=True)
    bench.post("/lock")
    yield "unlock", bench.get("/unlock").get_data(as_text=True)
    fresh = _setup_bench()
    yield "setup", fresh.get("/setup").get_data(as_text=True)
    differ = fresh.post("/setup/join", {"passphrase": "one two three four", "passphrase2": "x"})
    yield "setup refused", differ.get_data(as_text=True)
    weak = fresh.post("/setup/init", {"passphrase": "1234", "passphrase2": "1234"})
    yield "setup weak", weak.get_data(as_text=True)


def _too_large(bench: Bench, path: str) -> Any:
    """A form with more bytes of files than the workbench takes at once (its bound made
    small for the test: the page must say what to do instead)."""
    from werkzeug.datastructures import FileStorage, MultiDict
    from werkzeug.test import encode_multipart

    from client_sync.web import attachments

    form: MultiDict[str, Any] = MultiDict({"csrf": bench.gate.csrf, "caption": "x"})
    form.add("files", FileStorage(stream=io.BytesIO(bytes(3 << 20)), filename="video.mp4"))
    boundary, body = encode_multipart(form)  # in memory (the test client would spool it)
    bound = attachments.MAX_UPLOAD
    attachments.MAX_UPLOAD = 2 << 20
    try:
        return bench.client.post(
            path,
            data=body,
            content_type=f"multipart/form-data; boundary={boundary}",
            base_url=BASE,
        )
    finally:
        attachments.MAX_UPLOAD = bound


def _setup_bench() -> Bench:
    """The workbench of a machine with no profile: only its setup pages answer."""
    from client_sync.web.app import create_app
    from client_sync.web.security import Gate

    gate = Gate(PORT)
    app = create_app(None, gate, watch=False)
    bench = Bench(app, app.test_client(), gate, None)  # type: ignore[arg-type]
    bench.client.get(f"/launch?token={gate.launch_token}", base_url=BASE)
    assert bench.get("/").headers["Location"] == "/setup"
    return bench


def test_no_visible_string_escapes_the_catalogue(web_day: Day, pseudo: None) -> None:
    bench = Bench.open(web_day.admin)
    try:
        found: dict[str, list[str]] = {}
        for where, html in _pages(bench, web_day):
            leaked = escapes(html)
            if leaked:
                found[where] = leaked
        assert found == {}
    finally:
        bench.device.lock()


def _catalog(path: Any) -> Any:
    with open(path, "rb") as fh:
        return read_po(fh)


def test_every_message_used_is_in_the_catalogue_and_translated(web_day: Day, pseudo: None) -> None:
    Pseudo.used.clear()
    bench = Bench.open(web_day.admin)
    try:
        for _ in _pages(bench, web_day):
            pass
    finally:
        bench.device.lock()
    used = {m for m in Pseudo.used if m}
    template: set[str] = set()
    for m in _catalog(i18n.CATALOGUES / "messages.pot"):
        template.update([m.id] if isinstance(m.id, str) else m.id)
    template.discard("")
    assert sorted(used - template) == []
    for locale in ("ru", "kk"):
        cat = _catalog(i18n.CATALOGUES / locale / "LC_MESSAGES" / "messages.po")
        missing = sorted(
            m.id if isinstance(m.id, str) else m.id[0]
            for m in cat
            if m.id and (not m.string or (isinstance(m.string, tuple) and not all(m.string)))
        )
        fuzzy = sorted(str(m.id) for m in cat if m.id and m.fuzzy)
        assert (locale, missing, fuzzy) == (locale, [], [])
        ids: set[str] = set()
        for m in cat:
            ids.update([m.id] if isinstance(m.id, str) else m.id)
        assert sorted(template - ids) == []


def test_the_page_says_it_in_russian_when_the_browser_asks(web_day: Day) -> None:
    bench = Bench.open(web_day.admin)
    try:
        html = bench.get("/capture/picket", headers={"Accept-Language": "ru-RU,ru;q=0.9"}).text
        assert 'lang="ru"' in html and "Место" in html  # "Place"
        kk = bench.get("/capture/picket", headers={"Accept-Language": "kk"}).text
        assert 'lang="kk"' in kk and "Орны" in kk
        bench.post("/language", {"locale": "kk", "next": "/outbox"})
        assert 'lang="kk"' in bench.get("/outbox", headers={"Accept-Language": "ru"}).text
    finally:
        bench.device.lock()
