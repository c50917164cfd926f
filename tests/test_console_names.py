"""Names in the console, on both engines (docs/names.md): the typeahead, the members search
and record-by-name (simple and class forms) find "Siân Llŷr" however it is typed; a
misspelt name gets the closest people; two of one name are told apart by membership
number, locality, year joined and a masked email; invisible characters are refused next to
the field in English and Welsh; a look-alike registration shows a warning on its
confirmation page. The browser's side: tests/test_console_names_browser.py."""

from __future__ import annotations

import re
from html import unescape
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests import test_console
from tests.conftest import Api
from tests.test_console import errors, token
from timebank.ledger.models import Exchange
from timebank.members.models import Member

# the console's fixtures: an app with an injected clock, a signed-in broker of one bank
app, browser, clock = test_console.app, test_console.browser, test_console.clock
bank, broker = test_console.bank, test_console.broker


@pytest.fixture
async def people(broker: AsyncTestClient[Any], bank: dict[str, Any], admin_secret: str) -> Any:
    api = Api(broker, admin_secret)
    slug = bank["tb"]["slug"]
    made = {
        "sian": await api.member(slug, "Siân Llŷr", external_ref="M-0007", locality="Bala"),
        "bethan": await api.member(slug, "Bethan Morgan"),
        "tom1": await api.member(
            slug, "Tom Smith", external_ref="M-0001", locality="Irvine", email="tom@one.example"
        ),
        "tom2": await api.member(
            slug, "Tom Smith", external_ref="M-0002", locality="Kilwinning", email="ts@two.example"
        ),
    }
    return made


async def form_of(broker: AsyncTestClient[Any], path: str) -> dict[str, str]:
    page = await broker.get(path)
    return {
        "csrf_token": token(page.text),
        "idempotency_key": token(page.text, "idempotency_key"),
    }


def text_of(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


@pytest.mark.parametrize("q", ["sian llyr", "LLYR", "Siân", "si ll", "M-0007"])
async def test_the_typeahead_finds_a_name_by_word_starts_folded_or_its_number(
    broker: AsyncTestClient[Any], bank: dict[str, Any], people: Any, q: str
) -> None:
    r = await broker.get(f"/console/{bank['tb']['slug']}/directory", params={"q": q})
    assert r.status_code == 200
    (found,) = [o for o in r.json() if o["name"] == "Siân Llŷr"]
    assert found["id"] == people["sian"]["id"]
    assert found["hint"].startswith("M-0007 · Bala · joined ")


async def test_the_typeahead_tells_two_tom_smiths_apart(
    broker: AsyncTestClient[Any], bank: dict[str, Any], people: Any
) -> None:
    r = await broker.get(f"/console/{bank['tb']['slug']}/directory", params={"q": "tom smith"})
    hints = sorted(o["hint"] for o in r.json())
    assert len(hints) == 2
    assert hints[0].startswith("M-0001 · Irvine · joined ") and hints[0].endswith(
        "t•••@one.example"
    )
    assert hints[1].startswith("M-0002 · Kilwinning") and hints[1].endswith("t•••@two.example")
    assert "tom@one.example" not in r.text


async def test_the_members_search_folds_shows_and_finds_membership_numbers(
    broker: AsyncTestClient[Any], bank: dict[str, Any], people: Any
) -> None:
    slug = bank["tb"]["slug"]
    for q in ("LLYR", "sian llyr", "M-0007"):
        r = await broker.get(f"/console/{slug}/members", params={"q": q})
        assert r.status_code == 200
        shown = text_of(r.text)
        assert "Siân Llŷr M-0007 Bala" in shown, q
        assert "Bethan" not in shown
    r = await broker.get(f"/console/{slug}/members/{people['sian']['id']}")
    assert re.search(r"data-external-ref>M-0007<", r.text)


async def test_record_by_name_folds_and_a_misspelt_name_gets_the_closest_people(
    broker: AsyncTestClient[Any],
    bank: dict[str, Any],
    people: Any,
    session_maker: async_sessionmaker[AsyncSession],
) -> None:
    slug = bank["tb"]["slug"]
    path = f"/console/{slug}/exchanges/new"
    base = {"hours": "1", "minutes": "0", "category": "transport"}
    r = await broker.post(
        path,
        data={**await form_of(broker, path), **base, "provider": "Bethan Morgn", "recipient": "x"},
    )
    assert r.status_code == 422
    assert "No one is called Bethan Morgn. Did you mean one of these?" in errors(r.text)
    picks = re.findall(r'name="provider_pick" value="([^"]+)"', r.text)
    assert picks == [people["bethan"]["id"]]
    r = await broker.post(
        path,
        data={
            **await form_of(broker, path),
            **base,
            "provider": "SIAN  LLYR",
            "recipient": "bethan morgan",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303, errors(r.text)
    async with session_maker() as s:
        (ex,) = (await s.execute(select(Exchange))).scalars()
        assert ex.minutes == 60


async def test_two_tom_smiths_on_the_record_form_are_choices_told_apart(
    broker: AsyncTestClient[Any], bank: dict[str, Any], people: Any
) -> None:
    slug = bank["tb"]["slug"]
    path = f"/console/{slug}/exchanges/new"
    form = {
        **await form_of(broker, path),
        "provider": "tom smith",
        "recipient": "Siân Llŷr",
        "hours": "1",
        "category": "transport",
    }
    r = await broker.post(path, data=form)
    assert r.status_code == 422
    assert "More than one person is called tom smith. Choose one." in errors(r.text)
    labels = [
        text_of(m) for m in re.findall(r'for="provider_choice_\d+">(.*?)</label>', r.text, re.S)
    ]
    assert len(labels) == 2
    assert any("M-0001 · Irvine" in x for x in labels)
    assert any("M-0002 · Kilwinning" in x for x in labels)
    r = await broker.post(
        path, data={**form, "provider_pick": people["tom2"]["id"]}, follow_redirects=False
    )
    assert r.status_code == 303


async def test_the_class_form_folds_names_and_suggests_for_a_misspelt_one(
    broker: AsyncTestClient[Any], bank: dict[str, Any], people: Any
) -> None:
    slug = bank["tb"]["slug"]
    path = f"/console/{slug}/exchanges/new-group"
    form = {
        **await form_of(broker, path),
        "shape": "class",
        "one": "siân llŷr",
        "many_1": "BETHAN MORGAN",
        "many_2": "Bethn Morgan",
        "hours": "1",
        "category": "transport",
    }
    r = await broker.post(path, data=form)
    assert r.status_code == 422
    assert errors(r.text) == ["No one is called Bethn Morgan. Did you mean one of these?"]
    assert re.findall(r'name="many_2_pick" value="([^"]+)"', r.text) == [people["bethan"]["id"]]
    form["many_2"] = "may reid"
    r = await broker.post(path, data=form, follow_redirects=False)
    assert r.status_code == 303, errors(r.text)


@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        (
            "en",
            "Full name must not contain invisible or control characters (U+202E at character 4)",
        ),
        ("cy", "nodau anweledig na nodau rheoli (U+202E yn nod 4)"),
    ],
)
async def test_an_invisible_character_in_a_name_is_refused_next_to_the_field(
    broker: AsyncTestClient[Any],
    bank: dict[str, Any],
    session_maker: async_sessionmaker[AsyncSession],
    lang: str,
    expected: str,
) -> None:
    slug = bank["tb"]["slug"]
    path = f"/console/{slug}/members/new"
    if lang == "cy":
        page = await broker.get(path)
        r = await broker.post(
            "/console/language",
            data={"lang": "cy", "next": path, "csrf_token": token(page.text)},
            follow_redirects=False,
        )
        assert r.status_code == 303, r.text
    r = await broker.post(
        path, data={**await form_of(broker, path), "display_name": "Ann\u202eSmith"}
    )
    assert r.status_code == 422
    assert any(expected in e for e in errors(r.text)), errors(r.text)
    assert 'id="display_name-error"' in r.text or "display_name" in r.text
    async with session_maker() as s:
        assert (await s.execute(select(func.count()).select_from(Member))).scalar_one() == 2


async def test_a_nul_in_a_description_is_refused_on_the_record_form(
    broker: AsyncTestClient[Any], bank: dict[str, Any]
) -> None:
    slug = bank["tb"]["slug"]
    path = f"/console/{slug}/exchanges/new"
    form = {
        **await form_of(broker, path),
        "provider": "May Reid",
        "recipient": "Sam Cole",
        "hours": "1",
        "category": "transport",
        "description": "Lift\u0000 to town",
    }
    r = await broker.post(path, data=form)
    assert r.status_code == 422
    assert any("must not contain invisible or control characters" in e for e in errors(r.text))


async def test_a_look_alike_registration_shows_a_warning_naming_the_other_person(
    broker: AsyncTestClient[Any], bank: dict[str, Any], people: Any
) -> None:
    slug = bank["tb"]["slug"]
    path = f"/console/{slug}/members/new"
    r = await broker.post(
        path,
        data={**await form_of(broker, path), "display_name": "Siаn Llyr"},  # Cyrillic а
        follow_redirects=False,
    )
    assert r.status_code == 303
    page = await broker.get(r.headers["location"])
    assert "is registered." in page.text
    (box,) = re.findall(r"data-lookalikes>(.*?)</div>", page.text, re.S)
    assert "Check this is not someone already registered" in box
    assert "Siân Llŷr" in box and "M-0007" in box
    assert f"/members/{people['sian']['id']}" in box
    again = await broker.get(r.headers["location"].split("?")[0])
    assert "data-lookalikes" not in again.text
