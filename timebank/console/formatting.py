"""How the console writes amounts and dates in the page's language: minutes as hours and
minutes ("2 h 30 min", "2 awr 30 munud", "−11 h 55 min" with a true minus sign: the words are
catalogue messages), dates and numbers from Babel's locale data ("1 December 2026",
"1 Rhagfyr 2026"; "1,234.5").

Welsh needs no plural forms here: after a numeral Welsh keeps the noun singular ("2 awr",
"30 munud"), so the durations are one message each, not ``ngettext``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime
from babel.numbers import format_decimal

MINUS = "\u2212"
# the catalogue's language → the locale its dates are written in (British English: 1 December)
DATE_LOCALES = {"en": "en_GB", "cy": "cy_GB"}


def duration(minutes: int | None, gettext: Callable[[str], str]) -> str:
    _ = gettext
    if minutes is None:
        return _("no limit")
    sign = MINUS if minutes < 0 else ""
    h, m = divmod(abs(int(minutes)), 60)
    if h and m:
        return sign + _("%(h)s h %(m)s min") % {"h": h, "m": m}
    if h:
        return sign + _("%(h)s h") % {"h": h}
    return sign + _("%(m)s min") % {"m": m}


def day(value: date | None, lang: str) -> str:
    if value is None:
        return ""
    return format_date(value, format="long", locale=DATE_LOCALES.get(lang, lang))


def number(value: float | int | None, lang: str) -> str:
    """A number with the language's separators, and a true minus sign."""
    if value is None:
        return ""
    text = format_decimal(value, locale=DATE_LOCALES.get(lang, lang))
    return text.replace("-", MINUS)


def moment(value: datetime | None, lang: str, zone: str = "Europe/London") -> str:
    if value is None:
        return ""
    return format_datetime(
        value, format="d MMM y, HH:mm", tzinfo=ZoneInfo(zone), locale=DATE_LOCALES.get(lang, lang)
    )


def parse_hours_minutes(hours: str, minutes: str) -> tuple[int | None, list[tuple[str, str]]]:
    """Minutes from the two boxes of a form; the errors say which box is wrong (field, code:
    ``hours_not_number``, ``minutes_not_number``, ``minutes_over_59``, ``zero``)."""
    errors: list[tuple[str, str]] = []
    total = 0
    h_text, m_text = hours.strip(), minutes.strip()
    if h_text:
        if not h_text.isdigit() or len(h_text) > 6:
            errors.append(("hours", "hours_not_number"))
        else:
            total += int(h_text) * 60
    if m_text:
        if not m_text.isdigit() or len(m_text) > 6:
            errors.append(("minutes", "minutes_not_number"))
        elif int(m_text) > 59 and h_text:
            errors.append(("minutes", "minutes_over_59"))
        else:
            total += int(m_text)
    if not errors and total == 0:
        errors.append(("hours", "zero"))
    return (None if errors else total), errors
