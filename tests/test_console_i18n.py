"""The console's language rules and its formatting in English and Welsh (issue 17): dates
from Babel's locale data ("1 Rhagfyr 2026"), durations from the catalogue ("2 awr 30
munud"), numbers, and which language a page is in."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from html import unescape

import pytest

from timebank.console import formatting
from timebank.console.i18n import available, choose, gettext, native_name, negotiate


def words(lang: str) -> Callable[[str], str]:
    return lambda message: gettext(lang, message)


@pytest.mark.parametrize(
    ("minutes", "en", "cy"),
    [
        (150, "2 h 30 min", "2 awr 30 munud"),
        (60, "1 h", "1 awr"),
        (120, "2 h", "2 awr"),
        (45, "45 min", "45 munud"),
        (1, "1 min", "1 munud"),
        (0, "0 min", "0 munud"),
        (-715, "\u221211 h 55 min", "\u221211 awr 55 munud"),
        (None, "no limit", "dim terfyn"),
    ],
)
def test_durations_in_english_and_welsh(minutes: int | None, en: str, cy: str) -> None:
    assert formatting.duration(minutes, words("en")) == en
    assert formatting.duration(minutes, words("cy")) == cy


def test_dates_in_english_and_welsh() -> None:
    assert formatting.day(date(2026, 12, 1), "en") == "1 December 2026"
    assert formatting.day(date(2026, 12, 1), "cy") == "1 Rhagfyr 2026"
    assert formatting.day(date(2027, 3, 1), "cy") == "1 Mawrth 2027"
    assert formatting.day(None, "cy") == ""
    at = datetime(2026, 7, 1, 8, 5, tzinfo=UTC)  # 09:05 in London (summer time)
    assert formatting.moment(at, "en") == "1 Jul 2026, 09:05"
    assert formatting.moment(at, "cy") == "1 Gorff 2026, 09:05"


def test_numbers_in_english_and_welsh() -> None:
    assert formatting.number(12345.5, "en") == "12,345.5"
    assert formatting.number(12345.5, "cy") == "12,345.5"
    assert formatting.number(-10, "cy") == "\u221210"
    assert formatting.number(None, "en") == ""


def test_the_languages_are_english_first_then_welsh_each_named_in_itself() -> None:
    assert available()[:1] == ["en"] and "cy" in available()
    assert native_name("cy") == "Cymraeg" and native_name("en") == "English"


@pytest.mark.parametrize(
    ("header", "lang"),
    [
        (None, "en"),
        ("", "en"),
        ("cy", "cy"),
        ("cy-GB", "cy"),
        ("en-GB,cy;q=0.8", "en"),
        ("fr-FR,cy;q=0.5,en;q=0.3", "cy"),
        ("de", "en"),
        ("cy;q=nonsense, en", "en"),
    ],
)
def test_accept_language_picks_a_language_with_a_catalogue(header: str | None, lang: str) -> None:
    assert negotiate(header) == lang


def test_the_order_of_precedence() -> None:
    """The user's choice > the cookie > the bank's default > Accept-Language > English;
    a language without a catalogue is skipped."""
    assert choose(user="en", cookie="cy", bank="cy", accept_language="cy") == "en"
    assert choose(user=None, cookie="cy", bank="en", accept_language="en") == "cy"
    assert choose(user="xx", cookie="zz", bank="cy", accept_language="en") == "cy"
    assert choose(accept_language="cy") == "cy"
    assert choose() == "en"


def test_a_service_message_without_a_translation_is_marked_english_on_a_welsh_page() -> None:
    from timebank.console.base import Ctx
    from timebank.console.messages import field_message

    cy, en = Ctx(None, "cy"), Ctx(None, "en")  # type: ignore[arg-type]
    blank = field_message(cy, "Enw", "must not be blank")
    assert unescape(blank) == "Enw: rhaid peidio â'i adael yn wag"
    assert field_message(cy, "Enw", "is odd") == 'Enw: <span lang="en">is odd</span>'
    assert field_message(cy, "<b>", "<i>") == '&lt;b&gt;: <span lang="en">&lt;i&gt;</span>'
    assert field_message(en, "Name", "is odd") == "Name is odd"
    assert field_message(cy, "Oriau", "rhaid iddo fod yn rhif cyfan", localised=True) == (
        "Oriau: rhaid iddo fod yn rhif cyfan"
    )
    assert field_message(en, "Name", "can't be 'x'") == "Name can&#39;t be &#39;x&#39;"
