"""The funder dashboard (SPEC §3.9, §7.9) through its HTTP surface, on both engines: every
figure of every chart's data table is the published report's (the API's, for a funder key,
same banks and period); scope (a bank outside the user's is 404, §7.1); funders and staff
see the published figures only; the period picker refuses periods off the lattice in plain
English; the cache of published figures gives the same answer warm and cold, never shares
an entry between bank sets, and starts afresh on a new day (an injected clock, no sleeps);
and the page is plain HTML forms and links. The same in Chromium: test_dashboard_browser.py.
"""

from __future__ import annotations

import asyncio
import html
import re
import uuid
from datetime import UTC, date, datetime
from typing import Any, cast

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests import test_console
from tests.conftest import Api
from tests.test_console import Clock, make_user, sign_in
from timebank.access import Role
from timebank.console import dashboard
from timebank.members.models import Member
from timebank.reports import cache as cache_module
from timebank.reports.cache import PublishedCache
from timebank.reports.periods import Period
from timebank.timebanks.models import TimeBank
from timebank.tools.demo import generate, get_or_create_bank

# the console's app and browser fixtures, taking this module's clock
app = test_console.app
browser = test_console.browser


@pytest.fixture
def clock() -> Clock:
    c = Clock()
    c.now = datetime.now(UTC)  # generated histories end now: published figures are as of today
    return c


@pytest.fixture
async def banks(
    browser: AsyncTestClient[Any],
    session_maker: async_sessionmaker[AsyncSession],
    admin_secret: str,
    clock: Clock,
) -> dict[str, Any]:
    """Two generated communities (north: 300 members; south: 60) and their console
    users: a funder of north, a funder of both, a broker of north."""
    out: dict[str, Any] = {}
    async with session_maker() as session:
        for slug, members, exchanges, seed in (("north", 300, 3000, 1), ("south", 60, 500, 2)):
            tb, _ = await get_or_create_bank(session, f"{slug}-{uuid.uuid4().hex[:6]}")
            await generate(session, tb, members=members, exchanges=exchanges, seed=seed)
            out[slug] = {"id": str(tb.id), "slug": tb.slug, "name": tb.name}
    north, south = out["north"]["id"], out["south"]["id"]
    await make_user(session_maker, "north@example.org", Role.funder, [north], clock)
    await make_user(session_maker, "both@example.org", Role.funder, [north, south], clock)
    await make_user(session_maker, "broker@example.org", Role.broker, [north], clock)
    out["api"] = Api(browser, admin_secret)
    return out


def last_quarter(today: date) -> tuple[date, date]:
    return dashboard.preset_range("last-quarter", today)


def tables(page: str) -> list[dict[str, Any]]:
    """Every chart's data table: its report, figure names and rows (label → texts)."""
    out = []
    for m in re.finditer(
        r'<table class="table chart-table" data-report="([^"]+)" data-figures="([^"]+)">(.*?)</table>',
        page,
        re.S,
    ):
        rows = []
        for row in re.findall(r"<tr><th scope=\"row\">(.*?)</tr>", m.group(3), re.S):
            label, _, rest = row.partition("</th>")
            cells = [html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", rest, re.S)]
            rows.append((html.unescape(label), cells))
        out.append({"report": m.group(1), "figures": m.group(2).split(), "rows": rows})
    return out


def number(text: str) -> float | None:
    """A table's text as the JSON value: "1,234.5" → 1234.5; "52.2%" → 0.522; withheld →
    None."""
    if text.startswith(("fewer than", "not yet")):
        return None
    if text.endswith("%"):
        return round(float(text[:-1].replace(",", "")) / 100, 4)
    return float(text.replace(",", ""))


TILE_SOURCES = {"value_pounds": "social-value"}


def check_one_number(page: str, bodies: dict[str, dict[str, Any]]) -> int:
    """One quantity, one number: every tile is its published total in the API, each table's
    total row is the report's published total, and the running total of hours ends at the
    period's published hours. The count of figures checked."""
    summary = bodies["summary"]
    checked = 0
    tiles = re.findall(
        r'<p class="tile-value" data-state="[a-z]+" data-figure="([a-z_]+)"[^>]*>(.*?)</p>', page
    )
    assert len(tiles) == 7, tiles
    for figure, text in tiles:
        expected = bodies[TILE_SOURCES.get(figure, "summary")][figure]
        shown = number(html.unescape(text).lstrip("£"))
        assert shown == (None if expected is None else pytest.approx(expected)), (figure, text)
        checked += 1
    for t in re.finditer(
        r'data-report="([^"]+)" data-figures="([^"]+)">(?:(?!</table>).)*?<tfoot><tr class="table-total">'
        r"<th scope=\"row\">[^<]*</th>(.*?)</tr></tfoot>",
        page,
        re.S,
    ):
        body = bodies[t.group(1)]
        cells = re.findall(r"<td[^>]*>(.*?)</td>", t.group(3), re.S)
        for name, text in zip(t.group(2).split(), cells, strict=True):
            if not text:  # a column with no total (members giving: people, not additive)
                continue
            total = body["hours"] if name == "cumulative_hours" else body[name]
            assert number(html.unescape(text)) == pytest.approx(total), (t.group(1), name)
            assert total == summary[name if name != "cumulative_hours" else "hours"]
            checked += 1
    running = bodies["timeseries"]["rows"][-1]["cumulative_hours"]
    assert running == summary["hours"], "the running total ends at the published total"
    return checked


async def published_api(
    api: Api, key: str, slugs: list[str], report: str, start: date, end: date, **extra: str
) -> Any:
    funder = api.as_key(key)
    params = {"from": start.isoformat(), "to": end.isoformat(), **extra}
    if len(slugs) == 1:
        r = await funder.get(f"/v1/timebanks/{slugs[0]}/reports/{report}", params=params)
    else:
        r = await funder.get(
            f"/v1/reports/{report}", params=[("timebank", s) for s in slugs] + list(params.items())
        )
    assert r.status_code == 200, r.text
    return r


def check_tables_against(page: str, bodies: dict[str, dict[str, Any]]) -> int:
    """Every figure of every data table equals the report's JSON value; the count checked."""
    checked = 0
    offsets: dict[str, int] = {}
    for t in tables(page):
        body = bodies[t["report"]]
        rows = body["rows"]
        if t["report"] == "demographics":  # one table per dimension, in the JSON's order
            at = offsets.get("demographics", 0)
            rows = rows[at : at + len(t["rows"])]
            offsets["demographics"] = at + len(t["rows"])
        assert len(rows) == len(t["rows"]), t["report"]
        for row, (label, cells) in zip(rows, t["rows"], strict=True):
            for name, text in zip(t["figures"], cells, strict=True):
                expected = row[name]
                shown = number(text)
                if expected is None:
                    assert shown is None, (t["report"], label, name, text)
                    if row["suppressed"]:
                        assert text.startswith("fewer than"), (t["report"], label, name, text)
                else:
                    assert shown == pytest.approx(expected, abs=0.0006), (t["report"], label, name)
                checked += 1
    return checked


async def test_every_figure_of_the_dashboard_is_the_published_report_of_the_api(
    browser: AsyncTestClient[Any], banks: dict[str, Any], clock: Clock
) -> None:
    north = banks["north"]
    assert (await sign_in(browser, "north@example.org")).headers["location"] == "/console/dashboard"
    page = await browser.get("/console/dashboard")
    assert page.status_code == 200, page.text
    start, end = last_quarter(clock.now.date())
    assert f'data-period="{start}/{end}"' in page.text
    key = await banks["api"].key(north["slug"], "funder")
    bodies = {}
    for name, options in dashboard.REPORTS:
        extra = {"interval": options.interval} if name == "timeseries" else {}
        bodies[name] = (
            await published_api(banks["api"], key, [north["slug"]], name, start, end, **extra)
        ).json()
        assert bodies[name]["perturbed"] is True
    checked = check_tables_against(page.text, bodies)
    assert checked > 100
    assert check_one_number(page.text, bodies) >= 7 + 8
    summary = bodies["summary"]
    tiles = dict(
        re.findall(
            r'<p class="tile-label">(.*?)</p>\s*<p class="tile-value"[^>]*>(.*?)</p>', page.text
        )
    )
    assert number(tiles["Hours exchanged"]) == summary["hours"]
    assert number(tiles["Exchanges"]) == summary["exchanges"]
    assert number(tiles["Members taking part"]) == summary["participating_members"]
    assert number(tiles["New members"]) == summary["new_members"]
    assert number(tiles["Social value"].lstrip("£")) == bodies["social-value"]["value_pounds"]
    assert "£12.71 an hour" in html.unescape(page.text)


async def test_a_suppressed_cell_is_labelled_fewer_than_the_threshold_never_zero(
    browser: AsyncTestClient[Any], banks: dict[str, Any]
) -> None:
    """South has 60 members: its small demographic groups are withheld."""
    await sign_in(browser, "both@example.org")
    page = await browser.get(
        f"/console/dashboard?timebank={banks['south']['slug']}&period=last-year"
    )
    assert page.status_code == 200
    withheld = [
        cells
        for t in tables(page.text)
        for _, cells in t["rows"]
        if any(c == "fewer than 10 people" for c in cells)
    ]
    assert withheld
    assert 'data-state="suppressed">fewer than 10 people<' in page.text
    assert "url(#demographics-gender-hatch)" in page.text or "-hatch)" in page.text
    # drawn as a hatched box, in the chart of a withheld group
    assert re.search(r'fill="url\(#demographics-[a-z_]+-hatch\)"', page.text)


async def test_two_banks_together_are_the_cross_bank_report_and_each_bank_alone_its_own(
    browser: AsyncTestClient[Any], banks: dict[str, Any], clock: Clock
) -> None:
    north, south = banks["north"]["slug"], banks["south"]["slug"]
    await sign_in(browser, "both@example.org")
    page = await browser.get("/console/dashboard?period=last-year")
    assert page.status_code == 200
    assert 'name="timebank" value="' + north + '"' in page.text  # a choice of banks
    start, end = dashboard.preset_range("last-year", clock.now.date())
    key = (
        await banks["api"].ok(
            "post", "/v1/api-keys", {"role": "funder", "timebanks": [north, south]}
        )
    )["secret"]
    bodies = {}
    for name, options in dashboard.REPORTS:
        extra = {"interval": options.interval} if name == "timeseries" else {}
        # the default selection: every bank in scope, by name (North …, South …)
        bodies[name] = (
            await published_api(banks["api"], key, [north, south], name, start, end, **extra)
        ).json()
    assert check_tables_against(page.text, bodies) > 100
    alone = await browser.get(f"/console/dashboard?timebank={north}&period=last-year")
    assert alone.status_code == 200
    assert tables(alone.text) != tables(page.text)


async def test_a_bank_outside_the_users_scope_is_404_as_an_unknown_one(
    browser: AsyncTestClient[Any], banks: dict[str, Any]
) -> None:
    south = banks["south"]["slug"]
    await sign_in(browser, "north@example.org")
    for path in (
        f"/console/dashboard?timebank={south}",
        f"/console/dashboard?timebank={banks['north']['slug']}&timebank={south}",
        f"/console/dashboard/download?timebank={south}&report=summary&format=csv",
        f"/console/dashboard/print?timebank={south}",
    ):
        r = await browser.get(path)
        assert r.status_code == 404, path
        unknown = await browser.get(path.replace(south, "no-such-bank"))
        assert unknown.status_code == 404
        # the same page but for the path the language switch sends you back to
        assert r.text.replace(south, "no-such-bank") == unknown.text
        assert r.text == unknown.text  # drawn without the session: no switch naming the path
    browser.cookies.clear()
    r = await browser.get("/console/dashboard", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"].startswith("/console/sign-in")


async def test_staff_see_the_same_published_figures_as_funders_never_the_exact_ones(
    browser: AsyncTestClient[Any], banks: dict[str, Any], clock: Clock
) -> None:
    north = banks["north"]["slug"]
    await sign_in(browser, "north@example.org")
    funder_page = await browser.get(f"/console/dashboard?timebank={north}&figures=exact")
    await sign_in(browser, "broker@example.org")
    home = await browser.get(f"/console/{north}")
    assert f'href="/console/dashboard?timebank={north}"' in home.text  # the broker's nav
    broker_page = await browser.get(f"/console/dashboard?timebank={north}&figures=exact")
    assert tables(broker_page.text) == tables(funder_page.text)
    start, end = last_quarter(clock.now.date())
    broker_key = await banks["api"].key(north, "broker")
    exact = (
        await banks["api"]
        .as_key(broker_key)
        .get(
            f"/v1/timebanks/{north}/reports/categories",
            params={"from": start.isoformat(), "to": end.isoformat()},
        )
    )
    shown = next(t for t in tables(broker_page.text) if t["report"] == "categories")
    exact_hours = [r["hours"] for r in exact.json()["rows"]]
    assert [number(c[0]) for _, c in shown["rows"]] != exact_hours, "perturbed, not exact"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("from=2026-07-15&to=2026-08-15", "Choose a whole month, a calendar quarter"),
        ("from=2026-02-01&to=2026-05-01", "Choose a whole month, a calendar quarter"),
        ("from=2026-07-01&to=soon", "Enter the dates as year-month-day"),
        ("period=2026-13", "Choose a period from the list"),
        ("period=last-fortnight", "Choose a period from the list"),
    ],
)
async def test_the_period_picker_refuses_periods_off_the_lattice_in_plain_english(
    browser: AsyncTestClient[Any], banks: dict[str, Any], query: str, message: str
) -> None:
    await sign_in(browser, "north@example.org")
    r = await browser.get(f"/console/dashboard?{query}")
    assert r.status_code == 422
    text = html.unescape(r.text)
    assert message in text
    assert 'class="error-message" id="period-error"' in r.text  # next to the picker
    assert '<a href="#period">' in r.text  # and in the summary, linking to it
    ok = await browser.get("/console/dashboard?from=2026-07-01&to=2026-10-01")
    assert ok.status_code == 200
    assert 'data-period="2026-07-01/2026-10-01"' in ok.text


def test_the_lattice_tokens_and_presets() -> None:
    today = date(2026, 12, 1)
    assert dashboard.preset_range("last-month", today) == (date(2026, 11, 1), date(2026, 12, 1))
    assert dashboard.preset_range("last-quarter", today) == (date(2026, 7, 1), date(2026, 10, 1))
    assert dashboard.preset_range("last-financial-year", today) == (
        date(2025, 4, 1),
        date(2026, 4, 1),
    )
    assert dashboard.preset_range("last-financial-year", date(2026, 4, 1)) == (
        date(2025, 4, 1),
        date(2026, 4, 1),
    )
    assert dashboard.preset_range("last-financial-year", date(2026, 3, 31)) == (
        date(2024, 4, 1),
        date(2025, 4, 1),
    )
    assert dashboard.preset_range("last-year", today) == (date(2025, 1, 1), date(2026, 1, 1))
    for token in ("2026-10", "2026-Q3", "FY2025", "2025"):
        found = dashboard.parse_token(token)
        assert found is not None
        assert dashboard.token_of(*found) == token
    assert dashboard.parse_token("2026-00") is None
    assert dashboard.parse_token("2026-Q5") is None


def cache_of(app: Litestar) -> PublishedCache:
    cache: PublishedCache = app.state.published_cache
    return cache


async def test_the_cache_answers_warm_as_cold_per_bank_set_and_afresh_on_a_new_day(
    app: Litestar,
    browser: AsyncTestClient[Any],
    banks: dict[str, Any],
    clock: Clock,
    session_maker: async_sessionmaker[AsyncSession],
) -> None:
    north, south = banks["north"]["slug"], banks["south"]["slug"]
    await sign_in(browser, "both@example.org")
    cold = await browser.get(f"/console/dashboard?timebank={north}")
    cache = cache_of(app)
    n = len(dashboard.REPORTS)
    assert (cache.misses, cache.hits, len(cache.items)) == (n, 0, n)
    warm = await browser.get(f"/console/dashboard?timebank={north}")
    assert cache.hits == n
    assert tables(warm.text) == tables(cold.text)
    cache.clear()
    fresh = await browser.get(f"/console/dashboard?timebank={north}")
    assert tables(fresh.text) == tables(cold.text), "a cached answer equals a fresh one"

    await browser.get(f"/console/dashboard?timebank={south}")
    await browser.get(f"/console/dashboard?timebank={north}&timebank={south}")
    assert len(cache.items) == 3 * n, "each bank set has its own entries"
    bank_sets = {k.banks for k in cache.items}
    assert len(bank_sets) == 3
    # a funder of north alone reads north's entries, and nothing of the pair's
    await sign_in(browser, "north@example.org")
    before = cache.hits
    again = await browser.get(f"/console/dashboard?timebank={north}")
    assert cache.hits == before + n
    assert tables(again.text) == tables(cold.text)

    # an admin raises south's threshold: new figures at once (the threshold is in the key)
    async with session_maker() as session:
        tb = (await session.execute(select(TimeBank).where(TimeBank.slug == south))).scalar_one()
        tb.suppression_threshold = 20
        await session.commit()
    await sign_in(browser, "both@example.org")
    raised = await browser.get(f"/console/dashboard?timebank={south}")
    assert "fewer than 20 people" in raised.text
    assert 'data-state="suppressed">fewer than 20 people<' in raised.text  # a cell, not the hint

    # the next day: as of a new midnight, a new key — nothing of yesterday is served
    days = {k.as_of for k in cache.items}
    misses = cache.misses
    clock.advance(days=1)
    await sign_in(browser, "both@example.org")
    tomorrow = await browser.get(f"/console/dashboard?timebank={north}")
    assert tomorrow.status_code == 200
    assert cache.misses == misses + n
    assert {k.as_of for k in cache.items} - days == {
        datetime.combine(clock.now.date(), datetime.min.time(), tzinfo=UTC)
    }


async def test_the_dashboard_is_plain_html_forms_and_links_and_downloads_are_the_apis_files(
    browser: AsyncTestClient[Any], banks: dict[str, Any], clock: Clock
) -> None:
    north = banks["north"]["slug"]
    await sign_in(browser, "both@example.org")
    page = await browser.get("/console/dashboard")
    assert '<form method="get" action="/console/dashboard"' in page.text
    assert '<select class="select" id="period" name="period"' in page.text
    assert "<script" not in page.text.split("</head>")[1]
    # what the form sends without JavaScript: the checked banks and the chosen period
    r = await browser.get("/console/dashboard", params=[("timebank", north), ("period", "2026-Q2")])
    assert r.status_code == 200
    assert 'data-period="2026-04-01/2026-07-01"' in r.text
    links = re.findall(r'href="(/console/dashboard/download\?[^"]+)"', r.text)
    assert len(links) == 2 * len(dashboard.REPORTS)
    csv_link = html.unescape(
        next(link for link in links if "report=categories" in link and "format=csv" in link)
    )
    got = await browser.get(csv_link)
    assert got.status_code == 200
    assert got.headers["content-type"].startswith("text/csv")
    assert f"categories_{north}_2026-04-01_2026-07-01.csv" in got.headers["content-disposition"]
    key = await banks["api"].key(north, "funder")
    api_csv = await published_api(
        banks["api"], key, [north], "categories", date(2026, 4, 1), date(2026, 7, 1), format="csv"
    )
    assert got.text == api_csv.text
    xlsx_link = csv_link.replace("format=csv", "format=xlsx")
    got = await browser.get(xlsx_link)
    assert got.status_code == 200
    assert got.content[:2] == b"PK"
    printable = await browser.get(
        "/console/dashboard/print", params=[("timebank", north), ("period", "2026-Q2")]
    )
    assert printable.status_code == 200
    assert 'class="dashboard dashboard-printable"' in printable.text
    assert "dashboard-picker" not in printable.text
    assert (
        await browser.get(csv_link.replace("report=categories", "report=nope"))
    ).status_code == 404


async def test_a_funder_lands_on_the_dashboard_and_the_front_page_sends_them_there(
    browser: AsyncTestClient[Any], banks: dict[str, Any]
) -> None:
    r = await sign_in(browser, "north@example.org")
    assert r.headers["location"] == "/console/dashboard"
    front = await browser.get("/console", follow_redirects=False)
    assert front.status_code == 303
    assert front.headers["location"] == "/console/dashboard"
    page = await browser.get("/console/dashboard")
    assert 'aria-current="page">Impact dashboard</a>' in page.text


async def test_requests_for_the_same_cold_view_at_once_build_it_once(
    banks: dict[str, Any],
    session_maker: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The second request waits for the first's build and reads its answer (no wall-clock
    waits: the first build is held until the second is seen waiting)."""
    calls = 0
    gate = asyncio.Event()
    real = cache_module.run.build_many

    async def held(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        await gate.wait()
        return await real(*args, **kwargs)

    monkeypatch.setattr(cache_module.run, "build_many", held)
    cache = PublishedCache()
    async with session_maker() as one, session_maker() as two:
        slug = banks["north"]["slug"]
        tb = (await one.execute(select(TimeBank).where(TimeBank.slug == slug))).scalar_one()
        start, end = dashboard.preset_range("last-year", date.today())
        period = Period(start, end, datetime.combine(date.today(), datetime.min.time(), tzinfo=UTC))
        wanted = dashboard.REPORTS[:3]
        first = asyncio.create_task(
            cache_module.published(one, cache, wanted, [tb], period, timeout_ms=60_000)
        )
        second = asyncio.create_task(
            cache_module.published(two, cache, wanted, [tb], period, timeout_ms=60_000)
        )
        for _ in range(1000):  # until the first is building and the second waits (≤ 10 s)
            if (calls and sum(u[0] for _, u in cache._building.values()) == 2) or calls == 2:
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("the second request never came to wait for the first")
        gate.set()
        a, b = await asyncio.gather(first, second)
    assert calls == 1
    assert cache.builds == 1
    assert [r.built for r in a] == [r.built for r in b]
    assert all(x is y for x, y in zip(a, b, strict=True))  # the second read the first's
    assert not cache._building  # nothing left behind


async def test_a_request_cancelled_while_it_waits_for_a_build_leaves_nothing_behind() -> None:
    cache = PublishedCache()
    keys = (cast(Any, "k"),)
    async with cache.building(keys):
        waiter = asyncio.create_task(cache.building(keys).__aenter__())
        for _ in range(100):
            if cache._building[keys][1][0] == 2:
                break
            await asyncio.sleep(0)
        else:
            pytest.fail("the second request never came to wait")
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert cache._building[keys][1][0] == 1
    assert not cache._building


async def test_a_change_to_a_member_gives_fresh_figures_the_same_day(
    app: Litestar,
    browser: AsyncTestClient[Any],
    banks: dict[str, Any],
    session_maker: async_sessionmaker[AsyncSession],
) -> None:
    """Consent withdrawn (or a member erased) leaves the figures at once, as in the API:
    a cached figure must equal a fresh one, or the two would tell the difference."""
    north = banks["north"]["slug"]
    await sign_in(browser, "north@example.org")
    assert (await browser.get(f"/console/dashboard?timebank={north}")).status_code == 200
    cache = cache_of(app)
    builds = cache.builds
    assert (await browser.get(f"/console/dashboard?timebank={north}")).status_code == 200
    assert cache.builds == builds  # warm
    async with session_maker() as session:
        tb = (await session.execute(select(TimeBank).where(TimeBank.slug == north))).scalar_one()
        member = (
            (
                await session.execute(
                    select(Member).where(Member.timebank_id == tb.id, Member.statistics_consent)
                )
            )
            .scalars()
            .first()
        )
        assert member is not None
        member.statistics_consent = False
        await session.commit()
    assert (await browser.get(f"/console/dashboard?timebank={north}")).status_code == 200
    assert cache.builds == builds + 1  # built afresh


async def test_the_method_page_in_english_and_welsh_and_the_incomplete_period(
    browser: AsyncTestClient[Any], banks: dict[str, Any], clock: Clock
) -> None:
    await sign_in(browser, "north@example.org")
    page = await browser.get("/console/dashboard")
    assert '<a href="/console/dashboard/method">How the figures are protected</a>' in page.text
    hint = html.unescape(page.text)
    assert (
        "Small numbers are shown with a little noise, never exactly; groups of fewer than 10 "
        "registered people are not shown." in hint
    )
    assert "data-incomplete" not in page.text  # last quarter is over
    method = await browser.get("/console/dashboard/method")
    assert method.status_code == 200
    text = html.unescape(method.text)
    assert "How the figures are protected" in text and "cellkey-2" in text
    assert (
        "Every number of hours is moved by up to 4 hours either way; from 80 hours on, by at most 5%."
        in text
    )
    browser.cookies.set("timebank_lang", "cy", path="/console")
    welsh = html.unescape((await browser.get("/console/dashboard/method")).text)
    assert "Sut y caiff y ffigurau eu diogelu" in welsh
    assert "o 80 awr ymlaen, 5% ar y mwyaf" in welsh
    browser.cookies.delete("timebank_lang", path="/console")

    # the current month is labelled incomplete in the picker and on the page
    today = clock.now.date()
    this_month = f"{today:%Y-%m}"
    assert re.search(
        rf'<option value="{this_month}">[^<]*\(incomplete: not over yet\)</option>', page.text
    )
    current = await browser.get(f"/console/dashboard?period={this_month}")
    assert current.status_code == 200
    assert 'data-incomplete="true"' in current.text
    assert "is not over yet, so its figures are not final" in html.unescape(current.text)
