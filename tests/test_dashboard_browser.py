"""The funder dashboard in a real browser: Playwright driving Debian's Chromium against a
real ``timebank serve`` (SQLite) with two generated communities, as a funder would use it —
sign in (landing on the dashboard), read the figures, change the period and the banks,
download CSV and XLSX — with every figure of every chart's data table checked against the
published report the API gives a funder key for the same banks and period; a withheld
cell drawn as a labelled hatched box, never a zero bar; axe-core at desktop and phone
width (no serious or critical violation), screenshots in tests/artifacts/console/.

No sleeps: every step waits for a state of the page.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from openpyxl import load_workbook

from tests.servers import cli, create_admin_key, running_server, server_env
from tests.test_console_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    PASSWORD,
    WIDTHS,
    _chromium_or_skip,
    check_page,
    sign_in,
)
from tests.test_dashboard import TILE_SOURCES, check_one_number, check_tables_against, number
from timebank.console import dashboard

pytestmark = pytest.mark.slow

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - a dev dependency
    sync_playwright = None  # type: ignore[assignment]


@pytest.fixture(scope="module")
def site(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """A server on SQLite with two generated communities (Kyle: 400 members; Loch: 60, so
    some of its cells are withheld) and a funder of both, made with the CLI."""
    _chromium_or_skip()
    work = tmp_path_factory.mktemp("dashboard-browser")
    db = work / "dashboard.db"
    shutil.copy(sqlite_template, db)
    db_url = f"sqlite+aiosqlite:///{db}"
    cli(
        db_url,
        "demo",
        "generate",
        "--timebank",
        "kyle",
        "--members",
        "400",
        "--exchanges",
        "4000",
        cwd=work,
    )
    cli(
        db_url,
        "demo",
        "generate",
        "--timebank",
        "loch",
        "--members",
        "60",
        "--exchanges",
        "500",
        "--seed",
        "2",
        cwd=work,
    )
    done = subprocess.run(
        [
            str(Path(__file__).resolve().parent.parent / ".venv/bin/timebank"),
            "users",
            "create",
            "--role",
            "funder",
            "--email",
            "funder@kyle.example",
            "--timebank",
            "kyle",
            "--timebank",
            "loch",
        ],
        input=PASSWORD + "\n",
        env=server_env(db_url),
        capture_output=True,
        text=True,
        cwd=work,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    with running_server(db_url, work / "server", workers=1) as server:
        admin_key = create_admin_key(db_url, work)
        api = httpx.Client(
            base_url=server.base_url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=120
        )
        r = api.post("/v1/api-keys", json={"role": "funder", "timebanks": ["kyle", "loch"]})
        assert r.status_code == 201, r.text
        funder = httpx.Client(
            base_url=server.base_url,
            headers={"Authorization": f"Bearer {r.json()['secret']}"},
            timeout=120,
        )
        yield {"server": server, "funder": funder}
        api.close()
        funder.close()


@pytest.fixture(scope="module")
def browser(site: dict[str, Any]) -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser, site: dict[str, Any]) -> Iterator[Page]:
    ctx = browser.new_context(
        base_url=site["server"].base_url, viewport=WIDTHS["desktop"], accept_downloads=True
    )
    ctx.set_default_timeout(30_000)
    yield ctx.new_page()
    ctx.close()


def published(
    site: dict[str, Any], slugs: list[str], start: date, end: date, fmt: str = "json"
) -> dict[str, Any]:
    """Every dashboard report from the API, for a funder key, same banks and period."""
    out: dict[str, Any] = {}
    for name, options in dashboard.REPORTS:
        params: list[tuple[str, str]] = [("timebank", s) for s in slugs]
        params += [("from", start.isoformat()), ("to", end.isoformat()), ("format", fmt)]
        if name == "timeseries":
            params.append(("interval", options.interval))
        r = site["funder"].get(f"/v1/reports/{name}", params=params)
        assert r.status_code == 200, r.text
        out[name] = r.json() if fmt == "json" else r.text
    return out


def shown_period(page: Page) -> tuple[date, date]:
    start, end = page.locator("[data-period]").get_attribute("data-period").split("/")  # type: ignore[union-attr]
    return date.fromisoformat(start), date.fromisoformat(end)


def test_a_funder_reads_changes_and_downloads_the_published_figures(
    page: Page, site: dict[str, Any]
) -> None:
    sign_in(page, "funder@kyle.example")
    expect(page.get_by_role("heading", level=1)).to_have_text("Impact dashboard")
    expect(page.get_by_role("link", name="Impact dashboard")).to_have_attribute(
        "aria-current", "page"
    )
    # last quarter, both banks: every figure of every data table is the API's
    start, end = shown_period(page)
    assert (start, end) == dashboard.preset_range("last-quarter", date.today())
    bodies = published(site, ["kyle", "loch"], start, end)
    assert check_tables_against(page.content(), bodies) > 100
    # one quantity, one number: the headline, the running total's end and every tile, as
    # the browser shows them, are the published totals of the API
    total_hours = bodies["summary"]["hours"]
    assert number(page.locator('[data-figure="hours"]').inner_text()) == total_hours
    months = page.locator('#hours-per-month table[data-report="timeseries"] tbody tr')
    assert months.count() == 3
    assert number(months.last.locator("td").nth(1).inner_text()) == total_hours
    tiles = page.locator(".tile-value[data-figure]")
    assert tiles.count() == 7
    for i in range(tiles.count()):
        tile = tiles.nth(i)
        figure = tile.get_attribute("data-figure")
        assert figure is not None
        expected = bodies[TILE_SOURCES.get(figure, "summary")][figure]
        assert number(tile.inner_text().lstrip("£")) == expected, figure
    assert check_one_number(page.content(), bodies) >= 15
    expect(page.locator("#protection")).to_contain_text(
        "Small numbers are shown with a little noise, never exactly; groups of fewer than 10 "
        "registered people are not shown."
    )
    assert page.locator("#period option", has_text="incomplete").count() >= 3
    check_page(page, "dashboard")

    # the page on how the figures are protected, linked from the dashboard
    page.locator("#protection").get_by_role("link", name="How the figures are protected").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("How the figures are protected")
    check_page(page, "dashboard-method")
    page.get_by_role("link", name="Back to the impact dashboard").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Impact dashboard")

    # another period: the last financial year, chosen from the picker
    page.get_by_label("Period", exact=True).select_option("last-financial-year")
    page.get_by_role("button", name="Show figures").click()
    expect(page.locator("[data-period]")).to_have_attribute(
        "data-period", "{}/{}".format(*dashboard.preset_range("last-financial-year", date.today()))
    )
    start, end = shown_period(page)
    assert check_tables_against(page.content(), published(site, ["kyle", "loch"], start, end)) > 100

    # one bank: Loch alone (its small groups withheld, drawn as labelled hatched boxes)
    page.get_by_label("Kyle", exact=True).uncheck()
    page.get_by_role("button", name="Show figures").click()
    expect(page.locator(".lead strong")).to_have_text("Loch")
    assert check_tables_against(page.content(), published(site, ["loch"], start, end)) > 100
    hatched = page.locator('svg rect[fill$="-hatch)"]')
    expect(hatched.first).to_be_visible()
    assert page.locator("svg text", has_text="fewer than 10").count() >= hatched.count()
    expect(page.locator('td[data-state="suppressed"]').first).to_have_text("fewer than 10 people")
    check_page(page, "dashboard-one-bank")

    # downloads: the API's files of the same figures
    files = published(site, ["loch"], start, end, fmt="csv")
    with page.expect_download() as got:
        page.get_by_role("link", name="CSV Categories").click()
    text = Path(got.value.path()).read_bytes().decode()
    assert text == files["categories"]
    assert next(csv.reader(io.StringIO(text)))[:3] == ["report", "timebanks", "period_from"]
    with page.expect_download() as got:
        page.get_by_role("link", name="XLSX Summary").click()
    book = load_workbook(io.BytesIO(Path(got.value.path()).read_bytes()))
    assert {"Report", "Tidy"} <= set(book.sheetnames)
    assert got.value.suggested_filename == f"summary_loch_{start}_{end}.xlsx"

    # the printable page: no picker, one page per section when printed
    page.get_by_role("link", name="Printable page").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Impact dashboard")
    expect(page.locator(".dashboard-picker")).to_have_count(0)
    page.emulate_media(media="print")
    expect(page.locator(".header")).to_be_hidden()
    assert (
        page.locator(".dashboard-section").nth(1).evaluate("e => getComputedStyle(e).breakBefore")
        == "page"
    )
    page.emulate_media(media="screen")
    check_page(page, "dashboard-print")


def test_the_dashboard_works_with_javascript_off(browser: Browser, site: dict[str, Any]) -> None:
    ctx = browser.new_context(
        base_url=site["server"].base_url, viewport=WIDTHS["desktop"], java_script_enabled=False
    )
    try:
        page = ctx.new_page()
        sign_in(page, "funder@kyle.example")
        expect(page.get_by_role("heading", level=1)).to_have_text("Impact dashboard")
        page.get_by_label("Period", exact=True).select_option("last-year")
        page.get_by_role("button", name="Show figures").click()
        expect(page.locator("[data-period]")).to_have_attribute(
            "data-period", "{}/{}".format(*dashboard.preset_range("last-year", date.today()))
        )
        expect(page.locator("svg.chart-svg").first).to_be_visible()
        check_page(page, "dashboard-no-js", axe=False)
    finally:
        ctx.close()
