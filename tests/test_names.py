"""Names as people type them (docs/names.md), through the API on both engines: one folding
rule, word-prefix search by the stored index everywhere a name is looked up, refused
invisible characters, and look-alike registrations allowed with a warning. The console's
side is tests/test_console_names.py; the browser's, tests/test_console_browser.py."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alembic import command
from tests.conftest import Api
from timebank.imports.resolve import Directory, Unresolved
from timebank.members.models import Member
from timebank.migrations import alembic_config
from timebank.names import bad_character, fold, skeleton, suggest, words
from timebank.namesearch import NameWord, prefix_end
from timebank.timebanks.models import TimeBank

# --- the rule, without a database ----------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "folded"),
    [
        ("Siân Llŷr", "sian llyr"),
        ("  SIAN\u00a0\u00a0LLYR ", "sian llyr"),  # non-breaking spaces, capitals, spacing
        ("Ｓｉâｎ Ｌｌｙｒ", "sian llyr"),  # full-width letters
        ("Siâ\u0302n", "sian"),  # a combining circumflex
        ("Straße", "strasse"),
        ("Zoë O\u200bBrien", "zoe obrien"),  # a zero-width space is dropped when comparing
        ("Ángel\tDíaz", "angel diaz"),
    ],
)
def test_names_fold_to_one_form(typed: str, folded: str) -> None:
    assert fold(typed) == folded


def test_look_alike_letters_share_a_skeleton_and_different_names_do_not() -> None:
    assert fold("Homo Glyрh") != fold("Homo Glyph")  # Cyrillic р: folding keeps it
    assert skeleton("Homo Glyрh") == skeleton("Homo Glyph")
    assert skeleton("Αlex Ѕmith") == skeleton("alex smith")  # Greek Alpha, Cyrillic Dze
    assert skeleton("Ｈomo Ｇlyph") == skeleton("Homo Glyph")
    assert skeleton("Bethan Morgan") != skeleton("Bethan Morgen")


@pytest.mark.parametrize(
    ("text", "name", "refused"),
    [
        ("Homo\u202eGlyph", True, "right-to-left override (U+202E, character 5)"),
        ("Homo\u2066Glyph", True, "left-to-right isolate (U+2066"),
        ("Ann\u200bSmith", True, "zero-width space (U+200B, character 4)"),
        ("Ann\u200dSmith", False, "zero-width joiner"),
        ("Ann\0", True, "NUL character (U+0000, character 4)"),
        ("Ann\0", False, "NUL character"),
        ("Ann\x07", False, "control character (U+0007"),
        ("Ann\nSmith", True, "control character (U+000A"),
        ("Ann\u2028Smith", True, "invisible formatting character (U+2028"),
    ],
)
def test_invisible_and_control_characters_are_refused_by_name(
    text: str, name: bool, refused: str
) -> None:
    problem = bad_character(text, name=name)
    assert problem is not None and refused in problem


@pytest.mark.parametrize("text", ["Siân Llŷr", "Ｓｉâｎ", "Zoë\u00a0Ng", "O'Brien-Smith", "李小龍"])
def test_real_names_and_line_breaks_in_free_text_are_accepted(text: str) -> None:
    assert bad_character(text, name=True) is None
    assert bad_character("Cleared the garden.\r\nThen\tthe path.", name=False) is None


def test_the_suggester_ranks_the_closest_names() -> None:
    names = ["bethan morgan", "bethan jones", "morgan price"]
    assert suggest("Bethan Morgn", names)[0] == "bethan morgan"
    assert suggest("Zzz Qqq", names) == []


def test_a_prefix_range_holds_exactly_the_words_that_start_with_it() -> None:
    inside = ["llyr", "llyra", "llyr\U0010fffe"]
    outside = ["llys", "llyq", "lly", "llz"]
    assert all("llyr" <= w < prefix_end("llyr") for w in inside)
    assert not any("llyr" <= w < prefix_end("llyr") for w in outside)
    assert words("Anne  ANNE Siân") == ["anne", "sian"]


# --- search by the index, on both engines ---------------------------------------------------


@pytest.fixture
async def bank(api: Api) -> dict[str, Any]:
    tb = await api.timebank()
    slug = tb["slug"]
    people = {
        "sian": await api.member(slug, "Siân Llŷr", external_ref="M-0007"),
        "ian": await api.member(slug, "Ian Price"),
        "bethan": await api.member(slug, "Bethan Morgan"),
    }
    org = await api.organisation(slug, "Cwm Llŷr Community Garden")
    return {"tb": tb, "slug": slug, "org": org, **people}


async def directory_names(api: Api, slug: str, q: str) -> list[str]:
    body = await api.ok("get", f"/v1/timebanks/{slug}/directory?q={q}")
    return sorted(e["display_name"] for e in body["items"])


@pytest.mark.parametrize("q", ["sian", "LLYR", "sian llyr", "Siân", "llyr%20sian", "si%20ll"])
async def test_the_directory_finds_a_name_by_the_start_of_any_word_folded(
    api: Api, bank: dict[str, Any], q: str
) -> None:
    found = await directory_names(api, bank["slug"], q)
    assert "Siân Llŷr" in found


async def test_the_directory_matches_word_starts_not_the_middle_of_words(
    api: Api, bank: dict[str, Any]
) -> None:
    slug = bank["slug"]
    assert await directory_names(api, slug, "ian") == ["Ian Price"]  # not "Siân"
    assert await directory_names(api, slug, "llyr") == ["Cwm Llŷr Community Garden", "Siân Llŷr"]
    assert await directory_names(api, slug, "sian price") == []
    assert await directory_names(api, slug, "%E2%80%8B") == []  # only an invisible character


async def test_member_and_organisation_searches_use_the_same_rule_and_membership_numbers(
    api: Api, bank: dict[str, Any]
) -> None:
    slug = bank["slug"]
    members = await api.ok("get", f"/v1/timebanks/{slug}/members?q=LLYR")
    assert [m["display_name"] for m in members["items"]] == ["Siân Llŷr"]
    two = await api.ok("get", f"/v1/timebanks/{slug}/members?q=sian%20LL")
    assert [m["display_name"] for m in two["items"]] == ["Siân Llŷr"]
    by_ref = await api.ok("get", f"/v1/timebanks/{slug}/members?q=M-0007")
    assert [m["display_name"] for m in by_ref["items"]] == ["Siân Llŷr"]
    orgs = await api.ok("get", f"/v1/timebanks/{slug}/organisations?q=cwm%20llyr%20gar")
    assert [o["name"] for o in orgs["items"]] == ["Cwm Llŷr Community Garden"]


async def test_renaming_and_erasing_keep_the_index_in_step_with_the_name(
    api: Api, bank: dict[str, Any], session_maker: async_sessionmaker[AsyncSession]
) -> None:
    slug, sian = bank["slug"], bank["sian"]
    await api.ok(
        "patch", f"/v1/timebanks/{slug}/members/{sian['id']}", {"display_name": "Siân Ellis"}
    )
    assert await directory_names(api, slug, "llyr") == ["Cwm Llŷr Community Garden"]
    assert await directory_names(api, slug, "ellis") == ["Siân Ellis"]
    org = bank["org"]
    await api.ok("patch", f"/v1/timebanks/{slug}/organisations/{org['id']}", {"name": "Gardd Cwm"})
    assert await directory_names(api, slug, "gardd") == ["Gardd Cwm"]
    assert await directory_names(api, slug, "llyr") == []
    r = await api.post(f"/v1/timebanks/{slug}/members/{sian['id']}/erase")
    assert r.status_code in (200, 201), r.text
    members = await api.ok("get", f"/v1/timebanks/{slug}/members?q=ellis")
    assert members["items"] == []
    async with session_maker() as s:
        kept = (
            await s.execute(select(NameWord.word).where(NameWord.owner_id == uuid.UUID(sian["id"])))
        ).scalars()
        assert sorted(kept) == ["erased", "member"]
        m = await s.get(Member, uuid.UUID(sian["id"]))
        assert m is not None and m.name_folded == "erased member"


async def test_the_sheet_resolver_folds_and_suggests_with_the_shared_suggester(
    api: Api, bank: dict[str, Any], session_maker: async_sessionmaker[AsyncSession]
) -> None:
    async with session_maker() as s:
        tb = (await s.execute(select(TimeBank).where(TimeBank.slug == bank["slug"]))).scalar_one()
        d = await Directory.load(s, tb)
    assert d.resolve("SIAN  LLYR").name == "Siân Llŷr"
    with pytest.raises(Unresolved) as refused:
        d.resolve("Bethan Morgn")
    assert [p.name for p in refused.value.candidates] == ["Bethan Morgan"]


# --- what may not be stored ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("members", {"display_name": "Homo\u202eGlyph"}, "display_name"),
        ("members", {"display_name": "Ann\u200bSmith"}, "display_name"),
        ("members", {"display_name": "Ann\u0000Smith"}, "display_name"),
        ("members", {"display_name": "Ann Smith", "locality": "Cwm\u0000"}, "locality"),
        ("organisations", {"name": "Gardd\u2067", "kind": "charity"}, "name"),
    ],
)
async def test_invisible_characters_in_names_are_refused_with_422_on_both_engines(
    api: Api,
    bank: dict[str, Any],
    session_maker: async_sessionmaker[AsyncSession],
    path: str,
    body: dict[str, Any],
    field: str,
) -> None:
    r = await api.post(f"/v1/timebanks/{bank['slug']}/{path}", body)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["code"] == "validation_error"
    assert problem["errors"][0]["field"] == field
    assert "must not contain a" in problem["errors"][0]["message"]
    async with session_maker() as s:
        assert (await s.execute(select(func.count()).select_from(Member))).scalar_one() == 3


async def test_nul_and_overrides_in_a_description_or_reason_are_refused_alike(
    api: Api, bank: dict[str, Any]
) -> None:
    slug = bank["slug"]
    base = {
        "provider": {"member_id": bank["ian"]["id"]},
        "recipient": {"member_id": bank["bethan"]["id"]},
        "minutes": 60,
        "category": "transport",
    }
    for text in ("Lift\u0000", "Lift \u202eevil"):
        r = await api.post(f"/v1/timebanks/{slug}/exchanges", {**base, "description": text})
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["field"] == "description"
    ok = await api.ok("post", f"/v1/timebanks/{slug}/exchanges", {**base, "description": "A\nB"})
    r = await api.post(f"/v1/timebanks/{slug}/exchanges/{ok['id']}/reverse", {"reason": "x\u200by"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "reason"


# --- look-alikes: allowed, with a warning --------------------------------------------------


@pytest.mark.parametrize(
    "second", ["Homo Glyрh", "HOMO  glyph", "Ｈｏｍｏ Ｇｌｙｐｈ", "Hômo Glyph", "Homo\u00a0Glyph"]
)
async def test_a_folded_or_look_alike_duplicate_registers_with_a_warning_naming_the_other(
    api: Api, bank: dict[str, Any], second: str
) -> None:
    slug = bank["slug"]
    first = await api.member(slug, "Homo Glyph", external_ref="M-0100")
    body = await api.member(slug, second)
    assert body["display_name"] == second.strip()
    (warning,) = body["warnings"]
    assert warning["code"] == "similar_name"
    assert warning["id"] == first["id"] and warning["name"] == "Homo Glyph"
    assert warning["external_ref"] == "M-0100" and "Homo Glyph" in warning["message"]


async def test_a_different_name_or_a_former_member_gives_no_warning(
    api: Api, bank: dict[str, Any]
) -> None:
    slug = bank["slug"]
    assert (await api.member(slug, "Homo Glyphs"))["warnings"] == []
    gone = await api.member(slug, "Rhys Left")
    assert (await api.member(slug, "Rhys Right"))["warnings"] == []
    await api.ok("patch", f"/v1/timebanks/{slug}/members/{gone['id']}", {"status": "left"})
    assert (await api.member(slug, "rhys left"))["warnings"] == []


async def test_an_organisation_like_a_current_one_registers_with_a_warning(
    api: Api, bank: dict[str, Any]
) -> None:
    slug = bank["slug"]
    r = await api.post(
        f"/v1/timebanks/{slug}/organisations",
        {"name": "Cwm Llyr Community Garden", "kind": "charity"},
    )
    assert r.status_code == 201, r.text
    assert [w["id"] for w in r.json()["warnings"]] == [bank["org"]["id"]]


async def test_a_replayed_registration_returns_the_same_warnings(
    api: Api, bank: dict[str, Any]
) -> None:
    slug = bank["slug"]
    body = {"display_name": "Sian Llyr"}
    headers = {"Idempotency-Key": "names-replay-1"}
    first = await api.post(f"/v1/timebanks/{slug}/members", body, headers=headers)
    again = await api.post(f"/v1/timebanks/{slug}/members", body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert [w["name"] for w in again.json()["warnings"]] == ["Siân Llŷr"]


def test_the_warnings_are_declared_in_the_openapi_document(openapi: dict[str, Any]) -> None:
    for path, schema in (
        ("/v1/timebanks/{tb}/members", "MemberCreated"),
        ("/v1/timebanks/{tb}/organisations", "OrganisationCreated"),
    ):
        created = openapi["paths"][path]["post"]["responses"]["201"]
        ref = created["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith(f"/{schema}")
        props = openapi["components"]["schemas"][schema]["properties"]
        assert props["warnings"]["items"]["$ref"].endswith("/NameWarning")


# --- the migration backfills what was there -------------------------------------------------


async def test_the_migration_backfills_folded_names_and_words_of_existing_rows(
    api: Api, bank: dict[str, Any], db_url: str, session_maker: async_sessionmaker[AsyncSession]
) -> None:
    config = alembic_config(db_url)
    await asyncio.to_thread(command.downgrade, config, "0011")
    await asyncio.to_thread(command.upgrade, config, "head")
    async with session_maker() as s:
        m = await s.get(Member, uuid.UUID(bank["sian"]["id"]))
        assert m is not None and (m.name_folded, m.name_skeleton) == ("sian llyr", "sian llyr")
        indexed = (await s.execute(select(func.count()).select_from(NameWord))).scalar_one()
        assert indexed == 2 + 2 + 2 + 4  # Siân Llŷr, Ian Price, Bethan Morgan, the garden
    assert await directory_names(api, bank["slug"], "LLYR") == [
        "Cwm Llŷr Community Garden",
        "Siân Llŷr",
    ]
