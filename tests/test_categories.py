"""Categories a coordinator keeps (issue 27): added with a Welsh name, renamed, retired (kept on
old exchanges and in reports, refused for new ones on every write path) and offered again;
the same in the console, where a Welsh page shows the Welsh name. Both engines."""

from __future__ import annotations

from html import unescape
from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests import test_console
from tests.conftest import Api, simple
from tests.test_console import Clock, errors, make_user, sign_in, token
from timebank.access import Role
from timebank.audit.models import AuditEvent
from timebank.console.categories import slug_of
from timebank.console.i18n import LANG_COOKIE

app = test_console.app
browser = test_console.browser
bank = test_console.bank
clock = test_console.clock


def test_a_categorys_address_comes_from_its_english_name() -> None:
    assert slug_of("Home & garden") == "home-garden"
    assert slug_of("Café  run ") == "cafe-run"
    assert slug_of("Ŵ") == "category-w"


async def test_a_category_is_added_with_its_welsh_name_renamed_and_audited(api: Api) -> None:
    tb = (await api.timebank())["slug"]
    broker = api.as_key(await api.key(tb, "broker"))
    made = await broker.ok(
        "post",
        f"/v1/timebanks/{tb}/categories",
        {"slug": "dog-walking", "name": "Dog walking", "name_cy": "Mynd â chŵn am dro"},
    )
    assert made == {
        "slug": "dog-walking",
        "name": "Dog walking",
        "name_cy": "Mynd â chŵn am dro",
        "retired": False,
    }
    renamed = await broker.ok(
        "patch", f"/v1/timebanks/{tb}/categories/dog-walking", {"name": "Dog care", "name_cy": None}
    )
    assert renamed["name"] == "Dog care" and renamed["name_cy"] is None
    events = await api.ok("get", f"/v1/timebanks/{tb}/audit-events?action=category.update")
    assert events["items"][0]["details"] == {
        "name": {"from": "Dog walking", "to": "Dog care"},
        "name_cy": {"from": "Mynd â chŵn am dro", "to": None},
    }


async def test_a_retired_category_stays_on_old_exchanges_and_is_refused_for_new_ones(
    api: Api,
) -> None:
    tb = (await api.timebank())["slug"]
    broker = api.as_key(await api.key(tb, "broker"))
    may, sam = await api.member(tb, "May"), await api.member(tb, "Sam")
    old = await broker.exchange(tb, simple(may, sam, 60, category="transport"))
    assert old.status_code == 201, old.text
    retired = await broker.ok(
        "patch", f"/v1/timebanks/{tb}/categories/transport", {"retired": True}
    )
    assert retired["retired"] is True
    refused = await broker.exchange(tb, simple(may, sam, 60, category="transport"))
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["field"] == "category"
    assert "retired" in refused.json()["errors"][0]["message"]
    batch = await broker.post(
        f"/v1/timebanks/{tb}/exchanges/batch",
        json={"items": [simple(may, sam, 30, category="transport")]},
    )
    assert batch.status_code == 422, batch.text
    kept = await broker.ok("get", f"/v1/timebanks/{tb}/exchanges/{old.json()['id']}")
    assert kept["category"] == "transport"
    listed = await broker.ok("get", f"/v1/timebanks/{tb}/categories?limit=100")
    assert {c["slug"]: c["retired"] for c in listed["items"] if c["slug"] == "transport"} == {
        "transport": True
    }
    await broker.ok("patch", f"/v1/timebanks/{tb}/categories/transport", {"retired": False})
    again = await broker.exchange(tb, simple(may, sam, 60, category="transport"))
    assert again.status_code == 201, again.text


async def test_unknown_fields_and_a_null_english_name_are_refused(api: Api) -> None:
    tb = (await api.timebank())["slug"]
    r = await api.patch(f"/v1/timebanks/{tb}/categories/transport", json={"colour": "red"})
    assert r.status_code == 422
    r = await api.patch(f"/v1/timebanks/{tb}/categories/transport", json={"name": ""})
    assert r.status_code == 422
    r = await api.patch(f"/v1/timebanks/{tb}/categories/nothing-here", json={"name": "X"})
    assert r.status_code == 404


async def test_the_console_adds_a_category_with_its_welsh_name_and_a_welsh_page_shows_it(
    browser: AsyncTestClient[Any],
    bank: dict[str, Any],
    session_maker: async_sessionmaker[AsyncSession],
    clock: Clock,
) -> None:
    slug = bank["tb"]["slug"]
    await make_user(session_maker, "broker@example.org", Role.broker, [bank["tb"]["id"]], clock)
    assert (await sign_in(browser, "broker@example.org")).status_code == 303
    page = await browser.get(f"/console/{slug}/categories")
    assert page.status_code == 200
    empty = await browser.post(
        f"/console/{slug}/categories", data={"csrf_token": token(page.text), "name": " "}
    )
    assert empty.status_code == 422
    assert "Enter the category's name in English" in unescape(" ".join(errors(empty.text)))
    r = await browser.post(
        f"/console/{slug}/categories",
        data={
            "csrf_token": token(page.text),
            "name": "Dog walking",
            "name_cy": "Mynd â chŵn am dro",
        },
    )
    assert r.status_code == 200 and "The category is added." in r.text
    record = await browser.get(f"/console/{slug}/exchanges/new")
    assert '<option value="dog-walking">Dog walking</option>' in record.text
    browser.cookies.set(LANG_COOKIE, "cy", path="/console")
    welsh = await browser.get(f"/console/{slug}/exchanges/new")
    assert '<option value="dog-walking">Mynd â chŵn am dro</option>' in welsh.text
    browser.cookies.delete(LANG_COOKIE, path="/console")

    r = await browser.post(
        f"/console/{slug}/categories/dog-walking",
        data={"csrf_token": token(page.text), "action": "retire"},
    )
    assert r.status_code == 200 and "The category is retired." in r.text
    record = await browser.get(f"/console/{slug}/exchanges/new")
    assert 'value="dog-walking"' not in record.text
    r = await browser.post(
        f"/console/{slug}/categories/dog-walking",
        data={"csrf_token": token(page.text), "action": "restore"},
    )
    assert "The category is offered again." in r.text
    async with session_maker() as s:
        actions = list(
            (
                await s.execute(
                    select(AuditEvent.action).where(AuditEvent.target_type == "category")
                )
            ).scalars()
        )
    assert actions == ["category.create", "category.update", "category.update"]
