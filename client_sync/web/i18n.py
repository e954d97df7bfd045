"""The workbench in its readers' languages: gettext catalogues, the reader's locale, dates.

Every visible string of the workbench is a catalogue message: templates use
`{% trans %}`/`_()`, Python code `gettext`, and the record schema's labels, help
texts and messages are message ids marked with `N_` (schemas/records.py). The
catalogues are the `.po` files under `translations/` (English is the source;
Russian and Kazakh complete), read with Babel at start-up, so no compiled file can
fall behind its source. The locale is the one chosen with the page's switcher (a
cookie), else the best match of the browser's `Accept-Language`, else English.
Dates are formatted in the reader's form by Babel's CLDR data.
"""

from __future__ import annotations

import functools
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from babel import Locale
from babel.dates import format_date, format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations
from flask import Flask, g, request

HERE = Path(__file__).resolve().parent
CATALOGUES = HERE / "translations"
DOMAIN = "messages"
SOURCE = "en"
LOCALES = ("en", "ru", "kk")
LOCALE_NAMES = {"en": "English", "ru": "Русский", "kk": "Қазақша"}
LANG_COOKIE = "fieldsync_lang"


@functools.cache
def translations(locale: str) -> NullTranslations:
    """The catalogue of `locale`, compiled in memory from its `.po` file."""
    po = CATALOGUES / locale / "LC_MESSAGES" / f"{DOMAIN}.po"
    if locale == SOURCE or not po.exists():
        return NullTranslations()
    with po.open("rb") as fh:
        catalog = read_po(fh, locale=locale)
    buf = io.BytesIO()
    write_mo(buf, catalog, use_fuzzy=False)
    buf.seek(0)
    return Translations(fp=buf, domain=DOMAIN)


def choose_locale() -> str:
    chosen = request.cookies.get(LANG_COOKIE)
    if chosen in LOCALES:
        return chosen
    best = request.accept_languages.best_match(LOCALES)
    return best or SOURCE


def current() -> str:
    locale: str = g.get("locale") or SOURCE
    return locale


def gettext(message: str, **params: Any) -> str:
    text = g.translations.gettext(message) if "translations" in g else message
    return text % params if params else text


def ngettext(singular: str, plural: str, n: int, **params: Any) -> str:
    if "translations" in g:
        text = g.translations.ngettext(singular, plural, n)
    else:
        text = singular if n == 1 else plural
    return text % {"num": n, **params}


def when(iso: str | None, *, with_time: bool = True) -> str:
    """An ISO time (UTC, `...Z`) or date in the reader's form; '' when unknown."""
    if not iso:
        return ""
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    locale = Locale.parse(current())
    if with_time:
        return format_datetime(moment, format="medium", locale=locale)
    return format_date(moment, format="medium", locale=locale)


def init_app(app: Flask) -> None:
    app.jinja_env.add_extension("jinja2.ext.i18n")

    @app.before_request
    def _locale() -> None:
        g.locale = choose_locale()
        g.translations = translations(g.locale)

    app.jinja_env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext, ngettext, newstyle=True
    )
    app.jinja_env.globals.update(
        when=when, locales=LOCALES, locale_names=LOCALE_NAMES, current_locale=current
    )
