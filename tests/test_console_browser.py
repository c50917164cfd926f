"""The console in a real browser: Playwright driving Debian's Chromium against a real
``timebank serve`` (SQLite), as a coordinator would use it — sign in, register a member,
record an exchange by typing names, see the balance move, confirm a proposal a member's
app made through the API, reverse, download a statement, sign out; with the keyboard only;
with JavaScript off for the core flows; axe-core on every page (no serious or critical
violation) at desktop and phone width, with screenshots saved to tests/artifacts/console/.

No sleeps: every step waits for a state of the page (Playwright's locators and
``expect``). With CI=true a missing Chromium fails these tests instead of skipping them.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import ServerProcess, cli, create_admin_key, running_server

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
CHROMIUM = os.environ.get("TIMEBANK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "console"
PASSWORD = "a long enough password"
WIDTHS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 360, "height": 740}}

pytestmark = pytest.mark.slow

try:
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - a dev dependency
    sync_playwright = None  # type: ignore[assignment]


def _chromium_or_skip() -> None:
    if sync_playwright is not None and Path(CHROMIUM).exists():
        return
    if CI:
        pytest.fail(
            f"CI=true but Chromium ({CHROMIUM}) or Playwright is missing: the browser tests "
            "must run (.ci/run installs chromium with apt-get)"
        )
    pytest.skip(
        f"!!! Chromium not found at {CHROMIUM}: browser tests SKIPPED (they fail with CI=true)"
    )


@pytest.fixture(scope="module")
def site(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """A server on a SQLite database with a bank, members, an organisation, and console
    users made with the CLI as an operator would."""
    _chromium_or_skip()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "axe.txt").write_text("")
    work = tmp_path_factory.mktemp("console-browser")
    db = work / "console.db"
    shutil.copy(sqlite_template, db)
    db_url = f"sqlite+aiosqlite:///{db}"
    with running_server(db_url, work / "server", workers=1) as server:
        admin_key = create_admin_key(db_url, work)
        api = httpx.Client(
            base_url=server.base_url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=60
        )

        def ok(method: str, path: str, body: Any = None) -> Any:
            r = api.request(method, path, json=body)
            assert r.status_code in (200, 201), f"{method} {path}: {r.status_code} {r.text}"
            return r.json()

        tb = ok(
            "post",
            "/v1/timebanks",
            {
                "slug": "riverside",
                "name": "Riverside Time Bank",
                "settings": {"member_min_balance_minutes": -600},
            },
        )
        other = ok("post", "/v1/timebanks", {"slug": "hillside", "name": "Hillside Time Bank"})
        people = {
            name: ok("post", "/v1/timebanks/riverside/members", {"display_name": name})
            for name in ("May Reid", "Sam Cole", "Priya Shah", "Tom Hughes")
        }
        org = ok(
            "post",
            "/v1/timebanks/riverside/organisations",
            {"name": "Riverside Food Bank", "kind": "charity"},
        )
        for email, role, slug in (
            ("admin@riverside.example", "admin", "riverside"),
            ("broker@riverside.example", "broker", "riverside"),
            ("funder@riverside.example", "funder", "riverside"),
            ("broker@hillside.example", "broker", "hillside"),
        ):
            done = subprocess.run(
                [
                    str(Path(__file__).resolve().parent.parent / ".venv/bin/timebank"),
                    "users",
                    "create",
                    "--role",
                    role,
                    "--email",
                    email,
                    "--timebank",
                    slug,
                ],
                input=PASSWORD + "\n",
                env={**os.environ, "TIMEBANK_DATABASE_URL": db_url},
                capture_output=True,
                text=True,
                cwd=work,
                check=False,
            )
            assert done.returncode == 0, done.stderr
        may_key = ok(
            "post",
            "/v1/timebanks/riverside/api-keys",
            {"role": "member", "member_id": people["May Reid"]["id"], "label": "May's phone"},
        )["secret"]
        yield {
            "server": server,
            "tb": tb,
            "other": other,
            "people": people,
            "api": api,
            "ok": ok,
            "may_key": may_key,
            "db_url": db_url,
            "org": org,
        }
        api.close()


@pytest.fixture(scope="module")
def browser(site: dict[str, Any]) -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def context(browser: Browser, site: dict[str, Any]) -> Iterator[BrowserContext]:
    ctx = browser.new_context(
        base_url=site["server"].base_url, viewport=WIDTHS["desktop"], accept_downloads=True
    )
    ctx.set_default_timeout(15_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


AXE = None


def check_page(page: Page, name: str, *, axe: bool = True) -> None:
    """axe-core at desktop and phone width (no serious or critical violation), and a
    screenshot of each (only the screenshots with JavaScript off: axe is a script)."""
    global AXE
    AXE = AXE or Axe()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size
    found = []
    for width, viewport in WIDTHS.items():
        page.set_viewport_size(viewport)
        page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)
        if not axe:
            continue
        results = AXE.run(page)
        found += [
            f"{width}: {v['id']} ({v['impact']}): {v['help']} — "
            + "; ".join(n["target"][0] for n in v["nodes"][:3])
            for v in results.response["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        # no sideways scrolling of the page itself at 360 px (tables scroll in their box)
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{name} scrolls sideways at {width} width by {overflow}px"
    if size:
        page.set_viewport_size(size)
    assert not found, f"{name}: " + "\n".join(found)
    verdict = "no serious or critical violations" if axe else "screenshots only (JavaScript off)"
    with (ARTIFACTS / "axe.txt").open("a") as log:
        log.write(f"{name}: {verdict}\n")


def sign_in(page: Page, email: str, password: str = PASSWORD) -> None:
    page.goto("/console/sign-in")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def pick_name(page: Page, label: str, typed: str, choose: str) -> None:
    """Type part of a name into a name box and pick the person from the typeahead."""
    box = page.get_by_role("combobox", name=label)
    box.fill(typed)
    page.get_by_role("option", name=choose).click()
    expect(box).to_have_value(choose)


def balance_of(page: Page, slug: str, member: dict[str, Any]) -> str:
    page.goto(f"/console/{slug}/members/{member['id']}")
    return page.locator("[data-balance]").inner_text()


def test_a_coordinator_walks_the_console_end_to_end(page: Page, site: dict[str, Any]) -> None:
    slug, people = "riverside", site["people"]
    sign_in(page, "broker@riverside.example")
    expect(page.get_by_role("heading", level=1)).to_have_text("Riverside Time Bank")
    check_page(page, "home")

    # register a member
    page.get_by_role("link", name="Members", exact=True).click()
    check_page(page, "members")
    page.get_by_role("link", name="Register a member").click()
    check_page(page, "member-register")
    page.get_by_role("button", name="Register").click()  # nothing filled in
    expect(page.locator(".error-summary")).to_contain_text("Full name must not be blank")
    check_page(page, "member-register-errors")
    page.get_by_label("Full name").fill("Ann Brown")
    page.get_by_label("Town or neighbourhood (optional)").fill("Riverside")
    page.get_by_role("button", name="Register").click()
    expect(page.get_by_role("status")).to_contain_text("Ann Brown is registered.")
    check_page(page, "member")

    # search by name as you type
    page.get_by_role("link", name="Members", exact=True).click()
    page.get_by_label("Search by name").fill("ann")
    expect(page.locator("#members-results")).to_contain_text("Ann Brown")
    expect(page.locator("#members-results")).not_to_contain_text("May Reid")

    # record an exchange by typing names
    before = balance_of(page, slug, people["Priya Shah"])
    page.get_by_role("link", name="Record an exchange").first.click()
    check_page(page, "record")
    pick_name(page, "Who gave the time", "pri", "Priya Shah")
    pick_name(page, "Who received it", "ann b", "Ann Brown")
    page.get_by_label("Hours").fill("2")
    page.get_by_label("Minutes").fill("15")
    page.get_by_label("Category", exact=True).select_option(label="Home and garden")
    page.get_by_label("What was done (optional)").fill("Dug the vegetable beds")
    page.get_by_role("button", name="Record the exchange").click()
    expect(page.get_by_role("status")).to_have_text("The exchange is recorded.")
    check_page(page, "exchange")
    assert before == "0 min"
    assert balance_of(page, slug, people["Priya Shah"]) == "2 h 15 min"

    # a refusal in plain English, next to the field
    page.goto(f"/console/{slug}/exchanges/new")
    page.get_by_label("Who gave the time").fill("Sam Cole")
    page.get_by_label("Who received it").fill("Tom Hughes")
    page.get_by_label("Hours").fill("10")
    page.get_by_label("Minutes").fill("5")
    page.get_by_label("Category", exact=True).select_option(label="Home and garden")
    page.get_by_role("button", name="Record the exchange").click()
    expect(page.locator("#recipient-error")).to_contain_text(
        "Tom Hughes would go to −10 h 5 min; the lowest they may go is −10 h"
    )
    expect(page.locator(".error-summary")).to_be_focused()
    check_page(page, "record-errors")

    # a member's app proposes through the API; the coordinator confirms it
    r = httpx.post(
        f"{site['server'].base_url}/v1/timebanks/{slug}/exchanges",
        headers={"Authorization": f"Bearer {site['may_key']}"},
        json={
            "provider": {"member_id": people["May Reid"]["id"]},
            "recipient": {"member_id": people["Sam Cole"]["id"]},
            "minutes": 45,
            "category": "transport",
            "description": "Lift to the surgery",
        },
    )
    assert r.status_code == 201 and r.json()["status"] == "pending", r.text
    page.get_by_role("link", name="Proposals").click()
    check_page(page, "proposals")
    card = page.locator(".card", has_text="Lift to the surgery")
    card.get_by_role("button", name=re.compile("^Confirm")).click()
    expect(page.get_by_role("status")).to_have_text("The proposal is confirmed and recorded.")
    assert balance_of(page, slug, people["May Reid"]) == "45 min"

    # reverse it with a reason
    page.get_by_role("link", name="Lift to the surgery").click()
    page.get_by_role("link", name="Reverse this exchange").click()
    check_page(page, "reverse")
    page.get_by_role("button", name="Reverse the exchange").click()
    expect(page.locator("#reason-error")).to_contain_text(
        "Enter why this exchange is being reversed"
    )
    page.get_by_label("Why is it being reversed?").fill("May says the lift was cancelled")
    page.get_by_role("button", name="Reverse the exchange").click()
    expect(page.get_by_role("status")).to_contain_text("The exchange was reversed")
    check_page(page, "reversal")
    assert balance_of(page, slug, people["May Reid"]) == "0 min"

    # download the statement
    with page.expect_download() as download:
        page.get_by_role("link", name=re.compile("Download the statement .CSV")).click()
    assert download.value.suggested_filename == "statement-may-reid.csv"
    text = Path(download.value.path()).read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text.split("\n\n", 1)[1].replace("\r", ""))))
    assert [r["row"] for r in rows] == ["opening_balance", "entry", "entry", "closing_balance"]
    assert rows[-1]["balance_after_minutes"] == "0"

    # sign out
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_have_text("You have signed out.")
    check_page(page, "sign-in")
    page.goto(f"/console/{slug}")
    expect(page).to_have_url(re.compile(r"/console/sign-in\?next="))


def test_every_other_page_passes_axe_at_desktop_and_phone_width(
    page: Page, site: dict[str, Any]
) -> None:
    slug, may = "riverside", site["people"]["May Reid"]
    sign_in(page, "admin@riverside.example")
    expect(page.get_by_role("heading", level=1)).to_have_text("Riverside Time Bank")
    for name, path in (
        ("organisations", "/organisations"),
        ("organisation-register", "/organisations/new"),
        ("organisation", f"/organisations/{site['org']['id']}"),
        ("organisation-edit", f"/organisations/{site['org']['id']}/edit"),
        ("member-edit", f"/members/{may['id']}/edit"),
        ("member-erase", f"/members/{may['id']}/erase"),
        ("record-group", "/exchanges/new-group"),
        ("admin", "/admin"),
        ("admin-settings", "/admin/settings"),
        ("admin-users", "/admin/users"),
        ("admin-keys", "/admin/keys"),
        ("admin-audit", "/admin/audit"),
        ("password", "/../password"),
        ("not-found", "/exchanges/00000000-0000-7000-8000-000000000000"),
    ):
        page.goto(f"/console/{slug}{path}" if not path.startswith("/..") else "/console/password")
        expect(page.locator("h1")).to_be_visible()
        check_page(page, name)
    page.goto(f"/console/{slug}/members/{may['id']}")
    page.get_by_label("Name of the app (optional)").fill("Tablet")
    page.get_by_role("button", name="Create a key").click()
    expect(page.locator("#secret")).to_have_text(re.compile(r"^tbk_"))
    check_page(page, "member-key-created")
    page.goto(f"/console/{slug}/organisations/{site['org']['id']}/edit")
    page.get_by_label("Town or neighbourhood (optional)").fill("Riverside East")
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("status")).to_have_text("Your changes are saved.")
    page.get_by_role("button", name="Suspend").click()
    expect(page.get_by_role("status")).to_have_text("Riverside Food Bank is suspended.")
    page.get_by_role("button", name="Make active again").click()
    expect(page.get_by_role("status")).to_have_text("Riverside Food Bank is active again.")
    page.goto(f"/console/{slug}/admin/settings")
    page.get_by_label("Lowest balance a member may reach, in hours below zero").fill("lots")
    page.get_by_role("button", name="Save settings").click()
    expect(page.locator(".error-summary")).to_contain_text("must be a number")
    check_page(page, "admin-settings-errors")


def test_record_an_exchange_with_the_keyboard_only(page: Page, site: dict[str, Any]) -> None:
    sign_in(page, "broker@riverside.example")
    page.goto("/console/riverside/exchanges/new")

    def tab_to(element_id: str) -> None:
        for _ in range(40):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement && document.activeElement.id") == element_id:
                return
        raise AssertionError(f"Tab never reached #{element_id}")

    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to main content")).to_be_focused()
    page.keyboard.press("Enter")
    tab_to("provider")
    # the focused box is visibly marked (a 3px outline)
    assert page.evaluate("getComputedStyle(document.activeElement).outlineWidth") == "3px"
    page.keyboard.type("tom h")
    expect(page.get_by_role("option", name="Tom Hughes")).to_be_visible()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    expect(page.get_by_label("Who gave the time")).to_have_value("Tom Hughes")
    tab_to("recipient")
    page.keyboard.type("Priya Shah")  # the whole name: no need to pick
    page.keyboard.press("Escape")
    tab_to("hours")
    page.keyboard.type("1")
    tab_to("category")
    page.keyboard.press("ArrowDown")  # the first category
    tab_to("description")
    page.keyboard.type("Fixed a bicycle")
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent.trim()") == "Record the exchange":
            break
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_have_text("The exchange is recorded.")
    expect(page.locator(".summary")).to_contain_text("Tom Hughes")
    expect(page.locator(".summary")).to_contain_text("1 h")


def test_core_flows_work_with_javascript_off(browser: Browser, site: dict[str, Any]) -> None:
    slug, people = "riverside", site["people"]
    ctx = browser.new_context(base_url=site["server"].base_url, java_script_enabled=False)
    ctx.set_default_timeout(15_000)
    page = ctx.new_page()
    try:
        sign_in(page, "broker@riverside.example")
        # register
        page.goto(f"/console/{slug}/members/new")
        page.get_by_label("Full name").fill("Olu Adeyemi")
        page.get_by_role("button", name="Register").click()
        expect(page.get_by_role("status")).to_contain_text("Olu Adeyemi is registered.")
        # record: a part of a name offers the people it could be; choose, then send again
        page.goto(f"/console/{slug}/exchanges/new")
        page.get_by_label("Who gave the time").fill("olu")
        page.get_by_label("Who received it").fill("Sam Cole")
        page.get_by_label("Hours").fill("1")
        page.get_by_label("Category", exact=True).select_option(label="Home and garden")
        page.get_by_role("button", name="Record the exchange").click()
        expect(page.locator("#provider-error")).to_contain_text("No one is called exactly olu")
        check_page(page, "record-choose-no-js", axe=False)
        page.get_by_label("Olu Adeyemi").check()
        page.get_by_role("button", name="Record the exchange").click()
        expect(page.get_by_role("status")).to_have_text("The exchange is recorded.")
        # reverse
        page.get_by_role("link", name="Reverse this exchange").click()
        page.get_by_label("Why is it being reversed?").fill("Recorded for the wrong day")
        page.get_by_role("button", name="Reverse the exchange").click()
        expect(page.get_by_role("status")).to_contain_text("The exchange was reversed")
        # confirm a proposal
        r = httpx.post(
            f"{site['server'].base_url}/v1/timebanks/{slug}/exchanges",
            headers={"Authorization": f"Bearer {site['may_key']}"},
            json={
                "provider": {"member_id": people["May Reid"]["id"]},
                "recipient": {"member_id": people["Priya Shah"]["id"]},
                "minutes": 30,
                "category": "transport",
                "description": "Shopping trip",
            },
        )
        assert r.status_code == 201, r.text
        page.goto(f"/console/{slug}/proposals")
        page.locator(".card", has_text="Shopping trip").get_by_role(
            "button", name=re.compile("^Confirm")
        ).click()
        expect(page.get_by_role("status")).to_have_text("The proposal is confirmed and recorded.")
    finally:
        ctx.close()


def test_a_funder_and_another_banks_broker_cannot_reach_broker_pages(
    page: Page, site: dict[str, Any]
) -> None:
    sign_in(page, "funder@riverside.example")
    expect(page.get_by_role("heading", level=1)).to_have_text("Impact dashboard")
    for path in ("", "/members", "/exchanges/new", "/proposals", "/admin"):
        r = page.goto(f"/console/riverside{path}")
        assert r is not None and r.status == 403, path
        expect(page.get_by_role("heading", level=1)).to_have_text("You cannot use this page")
    check_page(page, "forbidden")
    sign_in(page, "broker@hillside.example")
    expect(page.get_by_role("heading", level=1)).to_have_text("Hillside Time Bank")
    for path in ("", "/members", f"/members/{site['people']['May Reid']['id']}"):
        r = page.goto(f"/console/riverside{path}")
        assert r is not None and r.status == 404, path
        expect(page.get_by_role("heading", level=1)).to_have_text("Page not found")


def test_a_session_revoked_by_an_admin_is_refused_at_the_next_click(
    browser: Browser, page: Page, site: dict[str, Any]
) -> None:
    sign_in(page, "broker@riverside.example")
    expect(page.get_by_role("heading", level=1)).to_have_text("Riverside Time Bank")
    admin_ctx = browser.new_context(base_url=site["server"].base_url)
    admin_ctx.set_default_timeout(15_000)
    admin = admin_ctx.new_page()
    try:
        sign_in(admin, "admin@riverside.example")
        admin.goto("/console/riverside/admin/users")
        rows = admin.locator("tr[data-session='broker@riverside.example']")
        while rows.count():
            rows.first.get_by_role("button", name=re.compile("^Sign out")).click()
            expect(admin.get_by_role("status")).to_have_text("That session is signed out.")
    finally:
        admin_ctx.close()
    page.get_by_role("link", name="Members", exact=True).click()
    expect(page).to_have_url(re.compile(r"/console/sign-in\?next=.*members"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")


def test_a_paper_time_sheet_is_uploaded_fixed_and_recorded(
    page: Page, site: dict[str, Any], tmp_path: Path
) -> None:
    """Issue 14 in the console: upload, the refused line highlighted with its reason, the
    person chosen from the names that matched, commit; a second upload records nothing."""
    sheet = tmp_path / "week-48.csv"
    sheet.write_text(
        "Date,Giver,Receiver,Hours,Category\n"
        "28/11/2026,Priya Shah,Tom Hughes,1:30,Home and garden\n"
        "29/11/2026,Tom Hughez,Priya Shah,45m,Home and garden\n"
    )
    sign_in(page, "broker@riverside.example")
    page.get_by_role("link", name="Time sheets").click()
    check_page(page, "sheets")
    page.get_by_label("The sheet's file").set_input_files(str(sheet))
    page.get_by_role("button", name="Upload and check").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("week-48")
    refused = page.locator("#line-3")
    expect(refused).to_have_class(re.compile("row-refused"))
    expect(refused).to_contain_text("nobody in this time bank is called 'Tom Hughez'")
    check_page(page, "sheet-preview")
    refused.get_by_label("Who was it?").select_option(label="Tom Hughes")
    refused.get_by_role("button", name="Use this person").click()
    expect(page.get_by_role("status")).to_have_text("Chosen. Every line was checked again.")
    expect(page.locator("#line-3")).to_contain_text("Ready")
    page.get_by_role("button", name="Record the ready lines").click()
    expect(page.get_by_role("status")).to_have_text("The ready lines are recorded.")
    expect(page.locator("tbody tr").filter(has_text="Recorded")).to_have_count(2)
    # the same sheet again: both lines already recorded (even the misspelt one), nothing to record
    page.get_by_role("link", name="All time sheets").click()
    page.get_by_label("The sheet's file").set_input_files(str(sheet))
    page.get_by_role("button", name="Upload and check").click()
    expect(page.locator("tbody tr").filter(has_text="Already recorded")).to_have_count(2)
    expect(page.get_by_role("button", name="Record the ready lines")).to_be_disabled()


def test_a_repeated_line_needs_a_choice_and_a_reupload_records_nothing(
    page: Page, site: dict[str, Any], tmp_path: Path
) -> None:
    """Issue 24: a line typed twice is a repeat until the broker says it is a separate
    exchange; the same sheet uploaded again as a browser names a second download, or under
    any other name, records nothing."""
    text = (
        "Date,Giver,Receiver,Hours,Category\n"
        "10/11/2026,Sam Cole,Tom Hughes,1,Home and garden\n"
        "10/11/2026,sam cole,Tom Hughes,60m,home-garden\n"
        "11/11/2026,Tom Hughes,Sam Cole,30m,Home and garden\n"
    )
    sheet = tmp_path / "rhagfyr.csv"
    sheet.write_text(text)
    sign_in(page, "broker@riverside.example")
    page.get_by_role("link", name="Time sheets").click()
    page.get_by_label("The sheet's file").set_input_files(str(sheet))
    page.get_by_role("button", name="Upload and check").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("rhagfyr")
    repeat = page.locator("#line-3")
    expect(repeat).to_contain_text("Repeat")
    expect(repeat).to_contain_text("The same as line 2")
    expect(page.locator("#line-2")).to_contain_text("Ready")
    check_page(page, "sheet-repeat")
    repeat.get_by_role("button", name="This is a separate exchange").click()
    expect(page.get_by_role("status")).to_have_text("Noted. Every line was checked again.")
    expect(page.locator("#line-3")).to_contain_text("Ready")
    expect(page.locator("#line-3")).to_contain_text("You said this is a separate exchange.")
    page.get_by_role("button", name="Record the ready lines").click()
    expect(page.get_by_role("status")).to_have_text("The ready lines are recorded.")
    expect(page.locator("tbody tr").filter(has_text="Recorded")).to_have_count(3)

    # as a browser names a second download of the same file: the same sheet, nothing new
    again = tmp_path / "rhagfyr (1).csv"
    again.write_text(text)
    page.get_by_role("link", name="All time sheets").click()
    page.get_by_label("The sheet's file").set_input_files(str(again))
    page.get_by_role("button", name="Upload and check").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("rhagfyr")
    expect(page.locator("tbody tr").filter(has_text="Already recorded")).to_have_count(3)
    expect(page.get_by_role("button", name="Record the ready lines")).to_be_disabled()

    # under any other name: every line is already in the ledger, so a repeat; nothing ready
    other = tmp_path / "sam-a-tom.csv"
    other.write_text(text)
    page.get_by_role("link", name="All time sheets").click()
    page.get_by_label("The sheet's file").set_input_files(str(other))
    page.get_by_role("button", name="Upload and check").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("sam-a-tom")
    expect(page.locator("tbody tr").filter(has_text="Already in the ledger")).to_have_count(3)
    expect(page.get_by_role("button", name="Record the ready lines")).to_be_disabled()
    expect(page.get_by_role("button", name="This is a separate exchange")).to_have_count(3)


def test_the_core_flows_in_welsh(page: Page, site: dict[str, Any]) -> None:
    """Issue 17: switch to Cymraeg on the sign-in page (by keyboard, before signing in),
    sign in, record an exchange by typing names, confirm a proposal, reverse; every page
    ``lang="cy"`` and axe-clean; then back to English, remembered after signing out."""
    slug, people = "riverside", site["people"]
    page.goto("/console/sign-in")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    switch = page.get_by_role("button", name="Cymraeg")
    expect(switch).to_have_attribute("lang", "cy")  # a Welsh word on an English page
    switch.focus()
    page.keyboard.press("Enter")
    expect(page.locator("html")).to_have_attribute("lang", "cy")
    expect(page.get_by_role("heading", level=1)).to_have_text("Mewngofnodi")
    expect(page.get_by_role("button", name="English")).to_have_attribute("lang", "en")
    check_page(page, "cy-sign-in")
    page.get_by_label("Cyfeiriad e-bost").fill("broker@riverside.example")
    page.get_by_label("Cyfrinair").fill(PASSWORD)
    page.get_by_role("button", name="Mewngofnodi").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Riverside Time Bank")
    expect(page.locator("html")).to_have_attribute("lang", "cy")
    check_page(page, "cy-home")

    # record an exchange by typing names
    page.get_by_role("link", name="Cofnodi cyfnewid").first.click()
    expect(page.locator("html")).to_have_attribute("lang", "cy")
    check_page(page, "cy-record")
    page.get_by_role("button", name="Cofnodi'r cyfnewid").click()  # nothing filled in
    expect(page.locator(".error-summary")).to_contain_text("Mae problem")
    check_page(page, "cy-record-errors")
    pick_name(page, "Pwy roddodd yr amser", "pri", "Priya Shah")
    pick_name(page, "Pwy a'i derbyniodd", "sam c", "Sam Cole")
    page.get_by_label("Oriau").fill("1")
    page.get_by_label("Munudau").fill("30")
    page.get_by_label("Categori", exact=True).select_option(label="Home and garden")
    page.get_by_label("Beth a wnaed (dewisol)").fill("Torri'r gwair")
    page.get_by_role("button", name="Cofnodi'r cyfnewid").click()
    expect(page.get_by_role("status")).to_have_text("Mae'r cyfnewid wedi'i gofnodi.")
    expect(page.locator(".summary")).to_contain_text("1 awr 30 munud")
    check_page(page, "cy-exchange")
    recorded = page.url

    # confirm a proposal a member's app made
    r = httpx.post(
        f"{site['server'].base_url}/v1/timebanks/{slug}/exchanges",
        headers={"Authorization": f"Bearer {site['may_key']}"},
        json={
            "provider": {"member_id": people["May Reid"]["id"]},
            "recipient": {"member_id": people["Tom Hughes"]["id"]},
            "minutes": 20,
            "category": "transport",
            "description": "Lifft i'r feddygfa",
        },
    )
    assert r.status_code == 201, r.text
    page.get_by_role("link", name="Cynigion", exact=True).click()
    check_page(page, "cy-proposals")
    card = page.locator(".card", has_text="Lifft i'r feddygfa")
    card.get_by_role("button", name=re.compile("^Cadarnhau")).click()
    expect(page.get_by_role("status")).to_have_text("Mae'r cynnig wedi'i gadarnhau a'i gofnodi.")

    # reverse the exchange recorded above
    page.goto(recorded)
    page.get_by_role("link", name="Gwrthdroi'r cyfnewid hwn").click()
    check_page(page, "cy-reverse")
    page.get_by_role("button", name="Gwrthdroi'r cyfnewid").click()
    expect(page.locator("#reason-error")).to_contain_text(
        "Rhowch pam mae'r cyfnewid hwn yn cael ei wrthdroi"
    )
    page.get_by_label("Pam mae'n cael ei wrthdroi?").fill("Cofnodwyd ddwywaith")
    page.get_by_role("button", name="Gwrthdroi'r cyfnewid").click()
    expect(page.get_by_role("status")).to_contain_text("Cafodd y cyfnewid ei wrthdroi")
    expect(page.locator("html")).to_have_attribute("lang", "cy")
    check_page(page, "cy-reversal")

    # back to English: remembered for this user after signing out and in again
    page.get_by_role("button", name="English").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_role("status")).to_contain_text("The exchange was reversed")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_have_text("You have signed out.")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    # a browser asking for Welsh, no cookie: Welsh until sign-in, then the user's English
    page.context.clear_cookies()
    page.set_extra_http_headers({"Accept-Language": "cy"})
    page.goto("/console/sign-in")
    expect(page.locator("html")).to_have_attribute("lang", "cy")
    page.get_by_label("Cyfeiriad e-bost").fill("broker@riverside.example")
    page.get_by_label("Cyfrinair").fill(PASSWORD)
    page.get_by_role("button", name="Mewngofnodi").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


__all__ = ["ServerProcess", "cli"]
