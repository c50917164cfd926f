"""The console's name for :mod:`timebank.i18n` (the catalogues, the page's language)."""

from __future__ import annotations

from timebank.i18n import (
    DOMAIN,
    LANG_COOKIE,
    LOCALE_DIR,
    SOURCE,
    available,
    choose,
    gettext,
    known,
    native_name,
    negotiate,
    translated,
    translations,
)

__all__ = [
    "DOMAIN",
    "LANG_COOKIE",
    "LOCALE_DIR",
    "SOURCE",
    "available",
    "choose",
    "gettext",
    "known",
    "native_name",
    "negotiate",
    "translated",
    "translations",
]
