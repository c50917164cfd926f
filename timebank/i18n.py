"""The service's words go through gettext (Babel), from the first template: every string
of a console page, a label, a hint and an error, and the API's problem titles, is a message
of the ``messages`` catalogue (a base module: the console and the web layer both use it;
``timebank.console.i18n`` is the console's name for it).

English is the source language; Welsh (``cy``) is the second. The catalogues under
``locale/<lang>/LC_MESSAGES`` are ``.po`` files compiled in memory when first used (no step a
user runs; no ``.mo`` files in the tree): a new language is a new directory, and the switch on
every page lists it. ``babel.cfg`` at the top of the repository tells ``pybabel extract``
where the strings are (see README, "Cymraeg / Welsh").

A page's language (:func:`choose`), first found of: the signed-in user's own choice (a
column of ``console_users``); the language cookie (set by the switch, so the sign-in page
speaks it before anyone signs in); the default language of the time bank the user works in
(an admin's setting); the browser's ``Accept-Language``; English.
"""

from __future__ import annotations

from functools import lru_cache
from io import BytesIO
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.messages import mofile, pofile
from babel.support import NullTranslations, Translations

LOCALE_DIR = Path(__file__).parent / "console" / "locale"
DOMAIN = "messages"
SOURCE = "en"
LANG_COOKIE = "timebank_lang"


@lru_cache(maxsize=1)
def available() -> list[str]:
    """The languages with a catalogue, English first."""
    found = sorted(p.name for p in LOCALE_DIR.iterdir() if (p / "LC_MESSAGES").is_dir())
    return sorted(found or [SOURCE], key=lambda lang: (lang != SOURCE, lang))


def known(lang: str | None) -> str | None:
    """``lang`` if it has a catalogue, else None (a stale cookie or column is ignored)."""
    return lang if lang and lang in available() else None


def native_name(lang: str) -> str:
    """A language's name in itself: "English", "Cymraeg"."""
    try:
        name = Locale.parse(lang).get_display_name(lang) or lang
    except (UnknownLocaleError, ValueError):
        return lang
    return name[:1].upper() + name[1:]


def choose(
    *,
    user: str | None = None,
    cookie: str | None = None,
    bank: str | None = None,
    accept_language: str | None = None,
) -> str:
    """The page's language: the user's choice > the cookie > the bank's default >
    ``Accept-Language`` > English (each only if it has a catalogue)."""
    return known(user) or known(cookie) or known(bank) or negotiate(accept_language)


def gettext(lang: str, message: str) -> str:
    return str(translations(lang).gettext(message))


def translated(lang: str, message: str) -> str | None:
    """``message`` in ``lang`` if its catalogue has it, else None (no English fallback)."""
    if lang == SOURCE:
        return None
    text = str(translations(lang).gettext(message))
    return text if text != message else None


@lru_cache(maxsize=16)
def translations(lang: str) -> NullTranslations:
    """The compiled catalogue of ``lang`` (compiled from its ``.po`` on first use)."""
    po = LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"
    if not po.exists():
        return NullTranslations()
    with po.open("rb") as f:
        catalog = pofile.read_po(f, locale=lang, domain=DOMAIN)
    buf = BytesIO()
    mofile.write_mo(buf, catalog)
    buf.seek(0)
    return Translations(buf, domain=DOMAIN)


def negotiate(accept_language: str | None) -> str:
    """The best language of ``Accept-Language`` that has a catalogue; else the source."""
    wanted: list[tuple[float, str]] = []
    for part in (accept_language or "").split(",")[:20]:
        tag, _, q = part.strip().partition(";q=")
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            continue
        if tag:
            wanted.append((weight, tag.replace("-", "_")))
    preferred = [tag for _, tag in sorted(wanted, key=lambda w: -w[0])]
    try:
        found = Locale.negotiate(preferred, available(), sep="_")
    except (UnknownLocaleError, ValueError):
        found = None
    return str(found) if found else SOURCE
