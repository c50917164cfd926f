"""The console's words go through gettext (Babel), from the first template: every string
of a page, a label, a hint and an error is a message of the ``messages`` catalogue.

English is the source language. The catalogues under ``locale/<lang>/LC_MESSAGES`` are
``.po`` files compiled in memory when first used (no step a user runs; no ``.mo`` files in
the tree). A request's language is negotiated from ``Accept-Language`` among the
catalogues present; ``<html lang>`` says which. ``babel.cfg`` at the top of the repository
tells ``pybabel extract`` where the strings are (see README, "Running a time bank in the
console").
"""

from __future__ import annotations

from functools import lru_cache
from io import BytesIO
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.messages import mofile, pofile
from babel.support import NullTranslations, Translations

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "messages"
SOURCE = "en"


def available() -> list[str]:
    found = sorted(p.name for p in LOCALE_DIR.iterdir() if (p / "LC_MESSAGES").is_dir())
    return found or [SOURCE]


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
