"""The console (SPEC §3.9) through its HTTP surface, on both engines: sessions and their
cookie, CSRF, throttled sign-in (an injected clock, never a sleep), timeouts and revocation,
scope (§7.1), who acted (§7.2), plain-English refusals next to the field, a form sent twice
recording once, and the users CLI. The same flows in a real browser: test_console_browser.py.
"""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import Api
from timebank.access import SYSTEM, Role
from timebank.app import create_app
from timebank.audit.models import AuditEvent
from timebank.auth.models import ConsoleSession
from timebank.auth.users import create_user
from timebank.config import Settings
from timebank.ledger.models import Exchange

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(settings: Settings, clock: Clock) -> Litestar:
    app = create_app(settings)
    app.state.clock = clock
    return app


@pytest.fixture
async def browser(app: Litestar) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(app=app, timeout=120) as c:  # a cold dashboard view
        yield c


@pytest.fixture
async def bank(browser: AsyncTestClient[Any], admin_secret: str) -> dict[str, Any]:
    """One test client per app: on PostgreSQL the pool's connections belong to its loop."""
    api = Api(browser, admin_secret)
    tb = await api.timebank(member_min_balance_minutes=-600)
    may = await api.member(tb["slug"], "May Reid")
    sam = await api.member(tb["slug"], "Sam Cole")
    other = await api.timebank()
    return {"tb": tb, "may": may, "sam": sam, "other": other}


async def make_user(
    maker: async_sessionmaker[AsyncSession],
    email: str,
    role: Role,
    banks: list[str],
    clock: Clock,
) -> None:
    async with maker() as session:
        await create_user(
            session,
            SYSTEM,
            email=email,
            password=PASSWORD,
            role=role,
            timebank_ids=[uuid.UUID(b) for b in banks],
            now=clock(),
        )


def token(html: str, name: str = "csrf_token") -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no {name} in the page"
    return found.group(1)


def errors(html: str) -> list[str]:
    return [
        re.sub(r"<[^>]+>|\s+", " ", m).replace("Error:", "").strip()
        for m in re.findall(r'class="error-message"[^>]*>(.*?)</p>', html, re.S)
    ]


async def sign_in(c: AsyncTestClient[Any], email: str, password: str = PASSWORD) -> Any:
    c.cookies.clear()
    page = await c.get("/console/sign-in")
    return await c.post(
        "/console/sign-in",
        data={"email": email, "password": password, "csrf_token": token(page.text), "next": ""},
        follow_redirects=False,
    )


@pytest.fixture
async def broker(
    browser: AsyncTestClient[Any],
    bank: dict[str, Any],
    session_maker: async_sessionmaker[AsyncSession],
    clock: Clock,
) -> AsyncTestClient[Any]:
    await make_user(session_maker, "broker@example.org", Role.broker, [bank["tb"]["id"]], clock)
    r = await sign_in(browser, "broker@example.org")
    assert r.status_code == 303, r.text
    assert r.headers["location"] == f"/console/{bank['tb']['slug']}"
    return browser


async def test_sign_in_sets_an_httponly_samesite_session_cookie_secure_only_behind_tls(
    broker: AsyncTestClient[Any], settings: Settings, clock: Clock, admin_secret: str
) -> None:
    r = await sign_in(broker, "broker@example.org")
    assert r.status_code == 303, r.text
    cookie = next(h for h in r.headers.get_list("set-cookie") if "timebank_session=" in h)
    flags = {f.strip().lower() for f in cookie.split(";")[1:]}
    assert {"httponly", "samesite=lax", "path=/console"} <= flags
    assert "secure" not in flags  # plain http here
    app = create_app(settings)  # console_secure_cookie "auto": Secure over https
    app.state.clock = clock
    async with AsyncTestClient(app=app, base_url="https://timebank.example") as c:
        r = await sign_in(c, "broker@example.org")
        cookie = next(h for h in r.headers.get_list("set-cookie") if "timebank_session=" in h)
        assert "secure" in cookie.lower()


async def test_a_wrong_password_is_refused_in_plain_english_and_signs_no_one_in(
    browser: AsyncTestClient[Any], broker: AsyncTestClient[Any], bank: dict[str, Any]
) -> None:
    r = await sign_in(browser, "broker@example.org", "not the password")
    assert r.status_code == 401
    assert "The email address or password is not right" in errors(r.text)
    home = await browser.get(f"/console/{bank['tb']['slug']}", follow_redirects=False)
    assert home.status_code == 303 and home.headers["location"].startswith("/console/sign-in")


async def test_sign_in_is_throttled_per_account_until_the_window_passes(
    broker: AsyncTestClient[Any], clock: Clock
) -> None:
    for _ in range(5):
        assert (await sign_in(broker, "broker@example.org", "guess")).status_code == 401
    throttled = await sign_in(broker, "broker@example.org")  # even the right password
    assert throttled.status_code == 429
    assert "too many attempts" in throttled.text.lower()
    clock.advance(minutes=16)
    assert (await sign_in(broker, "broker@example.org")).status_code == 303


async def test_sign_in_is_throttled_per_address_across_accounts(
    broker: AsyncTestClient[Any], clock: Clock
) -> None:
    for i in range(20):
        assert (await sign_in(broker, f"nobody{i}@example.org", "guess")).status_code == 401
    assert (await sign_in(broker, "broker@example.org")).status_code == 429


async def test_a_form_without_the_csrf_token_is_refused_and_records_nothing(
    broker: AsyncTestClient[Any],
    bank: dict[str, Any],
    session_maker: async_sessionmaker[AsyncSession],
) -> None:
    slug = bank["tb"]["slug"]
    form = {
        "provider": "May Reid",
        "recipient": "Sam Cole",
        "hours": "1",
        "category": "transport",
        "idempotency_key": uuid.uuid4().hex,
    }
    r = await broker.post(f"/console/{slug}/exchanges/new", data=form)
    assert r.status_code == 403
    r = await broker.post(f"/console/{slug}/exchanges/new", data={**form, "csrf_token": "forged"})
    assert r.status_code == 403
    async with session_maker() as s:
        assert await s.scalar(select(func.count()).select_from(Exchange)) == 0
    page = await broker.get(f"/console/{slug}/exchanges/new")
    r = await broker.post(
        f"/console/{slug}/exchanges/new",
        data={**form, "csrf_token": token(page.text)},
        follow_redirects=False,
    )
    assert r.status_code == 303


async def test_an_exchange_recorded_by_name_twice_from_one_form_records_once_as_the_user(
    broker: AsyncTestClient[Any],
    bank: dict[str, Any],
    session_maker: async_sessionmaker[AsyncSession],
) -> None:
    slug = bank["tb"]["slug"]
    page = await broker.get(f"/console/{slug}/exchanges/new")
    form = {
        "csrf_token": token(page.text),
        "idempotency_key": token(page.text, "idempotency_key"),
        "provider": "  may REID ",
        "recipient": "Sam Cole",
        "hours": "1",
        "minutes": "30",
        "category": "transport",
        "description": "Lift to the clinic",
    }
    first = await broker.post(f"/console/{slug}/exchanges/new", data=form, follow_redirects=False)
    again = await broker.post(f"/console/{slug}/exchanges/new", data=form, follow_redirects=False)
    assert first.status_code == again.status_code == 303
    assert first.headers["location"] == again.headers["location"]
    async with session_maker() as s:
        (ex,) = (await s.execute(select(Exchange))).scalars()
        assert ex.minutes == 90 and ex.logged_by_key_id is None
        assert ex.logged_by_user_id is not None and ex.logged_by_role == "broker"
        event = (
            await s.execute(select(AuditEvent).where(AuditEvent.action == "exchange.record"))
        ).scalar_one()
        assert event.user_id == ex.logged_by_user_id and event.key_id is None
    page = await broker.get(first.headers["location"])
    assert "May Reid" in page.text and "1 h 30 min" in page.text
    member = await broker.get(f"/console/{slug}/members/{bank['may']['id']}")
    assert re.search(r"data-balance>1 h 30 min<", member.text)


async def test_an_exchange_past_a_limit_is_refused_with_the_name_and_the_limit_in_words(
    broker: AsyncTestClient[Any], bank: dict[str, Any]
) -> None:
    slug = bank["tb"]["slug"]
    page = await broker.get(f"/console/{slug}/exchanges/new")
    form = {
        "csrf_token": token(page.text),
        "idempotency_key": token(page.text, "idempotency_key"),
        "provider": "Sam Cole",
        "recipient": "May Reid",
        "hours": "11",
        "minutes": "55",
        "category": "transport",
    }
    r = await broker.post(f"/console/{slug}/exchanges/new", data=form)
    assert r.status_code == 422
    assert "May Reid would go to −11 h 55 min; the lowest they may go is −10 h" in errors(r.text)
    assert 'class="error-summary"' in r.text


async def test_unknown_and_ambiguous_names_are_refused_next_to_the_field_with_choices(
    broker: AsyncTestClient[Any], bank: dict[str, Any], admin_secret: str
) -> None:
    await Api(broker, admin_secret).member(bank["tb"]["slug"], "Sam Cole")  # a second one
    slug = bank["tb"]["slug"]
    page = await broker.get(f"/console/{slug}/exchanges/new")
    form = {
        "csrf_token": token(page.text),
        "idempotency_key": token(page.text, "idempotency_key"),
        "provider": "Nobody Atall",
        "recipient": "sam cole",
        "hours": "x",
    }
    r = await broker.post(f"/console/{slug}/exchanges/new", data=form)
    assert r.status_code == 422
    found = errors(r.text)
    assert "No active member or organisation is called Nobody Atall" in found
    assert "More than one person is called sam cole. Choose one." in found
    assert "Hours must be a whole number, like 2" in found
    assert r.text.count('name="recipient_pick"') == 2


async def test_a_session_revoked_by_an_admin_is_refused_at_the_next_request(
    broker: AsyncTestClient[Any],
    bank: dict[str, Any],
    session_maker: async_sessionmaker[AsyncSession],
    clock: Clock,
) -> None:
    slug = bank["tb"]["slug"]
    broker_cookie = broker.cookies["timebank_session"]
    await make_user(session_maker, "admin@example.org", Role.admin, [bank["tb"]["id"]], clock)
    admin = broker  # the same client, the admin's cookie
    assert (await sign_in(admin, "admin@example.org")).status_code == 303
    users = await admin.get(f"/console/{slug}/admin/users")
    assert "broker@example.org" in users.text
    async with session_maker() as s:
        broker_session = (
            (await s.execute(select(ConsoleSession.id).order_by(ConsoleSession.created_at)))
            .scalars()
            .first()
        )
    r = await admin.post(
        f"/console/{slug}/admin/sessions/{broker_session}/revoke",
        data={"csrf_token": token(users.text)},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert (await admin.get(f"/console/{slug}")).status_code == 200  # the admin's goes on
    broker.cookies.clear()
    broker.cookies.set("timebank_session", broker_cookie, path="/console")
    r = await broker.get(f"/console/{slug}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/console/sign-in")


async def test_sessions_end_after_idle_and_absolute_timeouts_and_last_seen_lags_a_minute(
    broker: AsyncTestClient[Any],
    bank: dict[str, Any],
    session_maker: async_sessionmaker[AsyncSession],
    clock: Clock,
) -> None:
    slug = bank["tb"]["slug"]

    async def last_seen() -> datetime:
        async with session_maker() as s:
            return (await s.execute(select(ConsoleSession.last_seen_at))).scalar_one()

    signed_in_at = await last_seen()
    clock.advance(seconds=50)
    assert (await broker.get(f"/console/{slug}")).status_code == 200
    assert await last_seen() == signed_in_at  # not written within the minute
    for _ in range(24):  # active every 29 minutes: never idle (11 h 36 min in all)
        clock.advance(minutes=29)
        assert (await broker.get(f"/console/{slug}", follow_redirects=False)).status_code == 200
    assert await last_seen() == clock.now
    clock.advance(minutes=29)  # 12 h 5 min after sign-in: past the absolute timeout
    assert (await broker.get(f"/console/{slug}", follow_redirects=False)).status_code == 303
    await sign_in(broker, "broker@example.org")
    clock.advance(minutes=30)  # idle for 30 minutes
    assert (await broker.get(f"/console/{slug}", follow_redirects=False)).status_code == 303


async def test_a_user_of_bank_b_gets_404_for_bank_a_and_a_funder_403_for_broker_pages(
    browser: AsyncTestClient[Any],
    bank: dict[str, Any],
    session_maker: async_sessionmaker[AsyncSession],
    clock: Clock,
) -> None:
    slug, other = bank["tb"]["slug"], bank["other"]
    await make_user(session_maker, "b@example.org", Role.broker, [other["id"]], clock)
    await make_user(session_maker, "funder@example.org", Role.funder, [bank["tb"]["id"]], clock)
    assert (await sign_in(browser, "b@example.org")).status_code == 303
    for path in ("", "/members", f"/members/{bank['may']['id']}", "/exchanges/new", "/admin"):
        r = await browser.get(f"/console/{slug}{path}")
        assert r.status_code == 404, path
        # the same page as an unknown bank's (the language switch names the page's own path)
        unknown = (await browser.get(f"/console/no-such-bank{path}")).text
        assert r.text.replace(slug, "no-such-bank") == unknown
        assert r.text == unknown  # drawn without the session: not even the switch names it
    assert (await browser.get(f"/console/{other['slug']}")).status_code == 200
    assert (await browser.get(f"/console/{other['slug']}/admin")).status_code == 403
    assert (await sign_in(browser, "funder@example.org")).status_code == 303
    for path in ("", "/members", "/exchanges/new", "/proposals"):
        assert (await browser.get(f"/console/{slug}{path}")).status_code == 403, path


async def test_bad_input_in_the_address_or_form_is_a_page_not_a_500(
    broker: AsyncTestClient[Any], bank: dict[str, Any]
) -> None:
    slug = bank["tb"]["slug"]
    for path in (
        f"/console/{slug}/members/not-a-uuid",
        f"/console/{slug}/exchanges/{uuid.uuid4()}",
        f"/console/{slug}/members?after=%%%",
        f"/console/{slug}/admin/audit?after=x",
        "/console/static/x/../../app.py",
    ):
        r = await broker.get(path)
        assert r.status_code in (200, 400, 404), (path, r.status_code)  # a bad cursor: page 1
        assert "<html" in r.text or r.status_code == 404
    page = await broker.get(f"/console/{slug}/members/new")
    r = await broker.post(
        f"/console/{slug}/members/new",
        data={"csrf_token": token(page.text), "display_name": " ", "birth_year": "soon"},
    )
    assert r.status_code == 422
    assert errors(r.text) == ["Full name must not be blank", "Year of birth must be a whole number"]


async def test_console_routes_stay_out_of_the_openapi_document(openapi: dict[str, Any]) -> None:
    assert not [p for p in openapi["paths"] if p.startswith("/console")]


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every message the console's templates and Python use, as ``pybabel extract`` finds
    them (``babel.cfg``) — once for the catalogue tests."""
    from babel.messages import pofile

    pot = tmp_path_factory.mktemp("locale") / "messages.pot"
    subprocess.run(
        [str(ROOT / ".venv/bin/pybabel"), "extract", "-F", "babel.cfg", "-o", str(pot), "."],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    with pot.open("rb") as f:
        ids = {str(m.id) for m in pofile.read_po(f) if m.id}
    assert len(ids) > 100  # babel.cfg found the console (an empty extraction proves nothing)
    return ids


def test_every_console_string_is_in_the_english_catalogue(extracted: set[str]) -> None:
    """A new string without a catalogue entry fails here (issue 17 builds on it)."""
    from babel.messages import pofile

    wanted = extracted
    po = ROOT / "timebank/console/locale/en/LC_MESSAGES/messages.po"
    with po.open("rb") as f:
        have = {m.id for m in pofile.read_po(f) if m.id}
    missing = sorted(str(m) for m in wanted - have)
    assert not missing, (
        f"{len(missing)} console strings are not in the catalogue; run the pybabel commands "
        f"of the README's console section. First: {missing[:5]}"
    )


def test_users_cli_creates_lists_and_disables_with_the_password_from_stdin(
    db_url: str, tmp_path: Path
) -> None:
    from tests.servers import server_env

    env = server_env(db_url)
    cli = str(ROOT / ".venv/bin/timebank")
    subprocess.run([cli, "db", "upgrade"], env=env, check=True, cwd=tmp_path)
    made = subprocess.run(
        [cli, "users", "create", "--role", "admin", "--email", "Root@Example.org"],
        input="a long enough password\n",
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert made.returncode == 0, made.stderr
    short = subprocess.run(
        [cli, "users", "create", "--role", "admin", "--email", "x@example.org"],
        input="short\n",
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert short.returncode != 0 and "at least 10 characters" in short.stderr
    listed = subprocess.run(
        [cli, "users", "list"], env=env, capture_output=True, text=True, check=True, cwd=tmp_path
    ).stdout
    assert "root@example.org" in listed and "global" in listed and "active" in listed
    subprocess.run([cli, "users", "disable", "root@example.org"], env=env, check=True, cwd=tmp_path)
    listed = subprocess.run(
        [cli, "users", "list"], env=env, capture_output=True, text=True, check=True, cwd=tmp_path
    ).stdout
    assert "disabled" in listed


async def test_a_broker_of_two_banks_works_in_each_and_sign_in_and_out_are_audited(
    browser: AsyncTestClient[Any],
    bank: dict[str, Any],
    session_maker: async_sessionmaker[AsyncSession],
    clock: Clock,
) -> None:
    a, b = bank["tb"], bank["other"]
    await make_user(session_maker, "both@example.org", Role.broker, [a["id"], b["id"]], clock)
    r = await sign_in(browser, "both@example.org")
    assert r.headers["location"] == "/console"  # several banks: the list of them
    front = await browser.get("/console")
    assert a["name"] in front.text and b["name"] in front.text
    assert (await browser.get(f"/console/{a['slug']}")).status_code == 200
    assert (await browser.get(f"/console/{b['slug']}")).status_code == 200
    home = await browser.get(f"/console/{a['slug']}")
    out = await browser.post(
        "/console/sign-out", data={"csrf_token": token(home.text)}, follow_redirects=False
    )
    assert out.status_code == 303
    assert (await browser.get(f"/console/{a['slug']}", follow_redirects=False)).status_code == 303
    async with session_maker() as s:
        events = (
            await s.execute(
                select(AuditEvent.action, AuditEvent.timebank_id, AuditEvent.user_id).where(
                    AuditEvent.action.like("console_user.sign_%")
                )
            )
        ).all()
    actions = sorted((action, str(tb)) for action, tb, user in events if user is not None)
    assert actions == sorted(
        (action, tb)
        for action in ("console_user.sign_in", "console_user.sign_out")
        for tb in (a["id"], b["id"])
    )


# ---- English and Welsh (issue 17) -----------------------------------------------------------


def html_lang(html: str) -> str:
    found = re.search(r'<html lang="([^"]+)"', html)
    assert found, "no <html lang>"
    return found.group(1)


def test_every_console_string_has_a_translation_in_every_language_marked_for_review(
    extracted: set[str],
) -> None:
    """No language may leave a console string untranslated (a new English string fails
    here until each catalogue has it), every form of a plural is filled, the placeholders
    agree, and every Welsh entry is flagged ``needs-review`` (not ``fuzzy``: gettext would
    then ignore it) until a Welsh speaker checks it."""
    from babel.messages import pofile

    from timebank.console.i18n import LOCALE_DIR, SOURCE, available, gettext

    wanted = extracted
    langs = [lang for lang in available() if lang != SOURCE]
    assert "cy" in langs
    for lang in langs:
        with (LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po").open("rb") as f:
            catalog = pofile.read_po(f, locale=lang)
        have = {m.id: m for m in catalog if m.id}
        missing = sorted(str(m) for m in wanted if m not in have)
        empty = sorted(
            str(m.id)
            for m in have.values()
            if m.id in wanted
            and (not m.string or (isinstance(m.string, tuple | list) and not all(m.string)))
        )
        assert not missing and not empty, (
            f"{lang}: {len(missing)} console strings missing and {len(empty)} untranslated; "
            f"refresh the catalogues (README, Cymraeg / Welsh) and translate them. "
            f"First: {(missing + empty)[:5]}"
        )
        assert not [m.id for m in have.values() if m.fuzzy], f"{lang}: fuzzy entries are ignored"
        problems = [(m.id, [str(e) for e in errs]) for m, errs in catalog.check()]
        assert not problems, f"{lang}: placeholders disagree: {problems[:5]}"
        if lang == "cy":
            unflagged = [m.id for m in have.values() if "needs-review" not in m.flags]
            assert not unflagged, f"cy entries not marked needs-review: {unflagged[:5]}"
        # Babel uses the flagged translations
        assert gettext(lang, "Sign in") == have["Sign in"].string


async def switch(c: AsyncTestClient[Any], lang: str, next_: str, csrf: str = "") -> Any:
    return await c.post(
        "/console/language",
        data={"lang": lang, "next": next_, "csrf_token": csrf},
        follow_redirects=False,
    )


async def test_the_language_switch_round_trips_and_is_remembered_per_user_and_in_a_cookie(
    broker: AsyncTestClient[Any], bank: dict[str, Any]
) -> None:
    home = f"/console/{bank['tb']['slug']}"
    page = await broker.get(home)
    assert html_lang(page.text) == "en" and "Record an exchange" in page.text
    # the switch offers Cymraeg, marked as Welsh, in a form with the session's CSRF token
    assert re.search(r'<button[^>]*lang="cy"[^>]*>Cymraeg</button>', page.text)
    assert (await switch(broker, "cy", home)).status_code == 403  # no CSRF token: refused
    r = await switch(broker, "cy", home, token(page.text))
    assert r.status_code == 303 and r.headers["location"] == home
    assert any("timebank_lang=cy" in h for h in r.headers.get_list("set-cookie"))
    page = await broker.get(home)
    assert html_lang(page.text) == "cy"
    assert "Cofnodi cyfnewid" in page.text and "Record an exchange" not in page.text
    assert re.search(r'<button[^>]*lang="en"[^>]*>English</button>', page.text)
    r = await broker.get(f"{home}/exchanges/{uuid.UUID(int=7)}")  # an error page, in Welsh
    assert r.status_code == 404 and html_lang(r.text) == "cy"
    assert "Heb ddod o hyd i'r dudalen" in unescape(r.text)
    # drawn without the session, it has no CSRF token to send: no switch there (it would be
    # refused as an expired form)
    assert 'action="/console/language"' not in r.text
    # signed out: the sign-in page is in Welsh (the cookie)
    r = await broker.post(
        "/console/sign-out", data={"csrf_token": token(page.text)}, follow_redirects=True
    )
    assert html_lang(r.text) == "cy" and "Rydych wedi allgofnodi." in r.text
    # another browser (no cookie): English until they sign in, then their choice
    broker.cookies.clear()
    assert html_lang((await broker.get("/console/sign-in")).text) == "en"
    r = await sign_in(broker, "broker@example.org")
    assert any("timebank_lang=cy" in h for h in r.headers.get_list("set-cookie"))
    broker.cookies.delete("timebank_lang", path="/console")
    page = await broker.get(home)
    assert html_lang(page.text) == "cy"  # the user's column, not the cookie
    # and back to English
    r = await switch(broker, "en", home, token(page.text))
    page = await broker.get(home)
    assert html_lang(page.text) == "en" and "Record an exchange" in page.text
    # an unknown language changes nothing; another site as next is refused
    r = await switch(broker, "xx", home, token(page.text))
    assert r.status_code == 303 and html_lang((await broker.get(home)).text) == "en"
    r = await switch(broker, "cy", "https://evil.example/", token(page.text))
    assert r.headers["location"] == "/console"


async def test_before_sign_in_the_cookie_then_accept_language_choose_the_language(
    browser: AsyncTestClient[Any],
) -> None:
    page = await browser.get("/console/sign-in")
    assert html_lang(page.text) == "en" and ">Sign in<" in page.text
    page = await browser.get("/console/sign-in", headers={"Accept-Language": "cy-GB,en;q=0.5"})
    assert html_lang(page.text) == "cy" and "Mewngofnodi" in page.text
    # the switch works signed out (no session: only the cookie is set)
    r = await switch(browser, "cy", "/console/sign-in")
    assert r.status_code == 303 and r.headers["location"] == "/console/sign-in"
    page = await browser.get("/console/sign-in", headers={"Accept-Language": "en"})
    assert html_lang(page.text) == "cy"  # the choice beats the browser's language
    assert "Cyfeiriad e-bost" in page.text
    # refusals, and the error pages, in Welsh too
    r = await browser.post(
        "/console/sign-in",
        data={"email": "", "password": "", "csrf_token": token(page.text, "csrf_token")},
    )
    assert html_lang(r.text) == "cy" and "Rhowch eich cyfeiriad e-bost" in r.text


async def test_a_banks_default_language_applies_to_its_users_who_have_not_chosen(
    browser: AsyncTestClient[Any],
    bank: dict[str, Any],
    session_maker: async_sessionmaker[AsyncSession],
    clock: Clock,
) -> None:
    slug = bank["tb"]["slug"]
    await make_user(session_maker, "admin@example.org", Role.admin, [bank["tb"]["id"]], clock)
    await make_user(session_maker, "broker2@example.org", Role.broker, [bank["tb"]["id"]], clock)
    await sign_in(browser, "admin@example.org")
    page = await browser.get(f"/console/{slug}/admin/settings")
    assert 'name="default_language"' in page.text
    form = {
        "csrf_token": token(page.text),
        "name": bank["tb"]["name"],
        "member_min_balance_minutes": "-10",
        "pending_expiry_days": "30",
        "default_language": "cy",
    }
    r = await browser.post(f"/console/{slug}/admin/settings", data=form, follow_redirects=False)
    assert r.status_code == 303, r.text
    page = await browser.get(f"/console/{slug}/admin/settings")
    assert html_lang(page.text) == "cy"  # the admin has not chosen either
    assert re.search(r'<option value="cy" lang="cy" selected>Cymraeg</option>', page.text)
    r = await browser.post(
        f"/console/{slug}/admin/settings",
        data={**form, "csrf_token": token(page.text), "default_language": "xx"},
    )
    assert r.status_code == 422 and "Dewiswch iaith o'r rhestr" in unescape(r.text)
    await sign_in(browser, "broker2@example.org")
    page = await browser.get(f"/console/{slug}", headers={"Accept-Language": "en"})
    assert html_lang(page.text) == "cy"  # the bank's default beats the browser's
    await switch(browser, "en", f"/console/{slug}", token(page.text))
    assert html_lang((await browser.get(f"/console/{slug}")).text) == "en"  # their choice wins


async def test_api_problems_follow_accept_language_with_the_same_code(
    browser: AsyncTestClient[Any], admin_secret: str, bank: dict[str, Any]
) -> None:
    api = Api(browser, admin_secret)
    path = f"/v1/timebanks/{bank['tb']['slug']}/exchanges/{uuid.UUID(int=7)}"
    english = await api.get(path)
    welsh = await api.get(path, headers={"Accept-Language": "cy"})
    assert english.status_code == welsh.status_code == 404
    en, cy = english.json(), welsh.json()
    assert en["code"] == cy["code"] == "not_found" and en["type"] == cy["type"]
    assert en["title"] == "Not found" and cy["title"] == "Heb ei ganfod"
    assert en["detail"] == "No such exchange in this time bank"
    assert cy["detail"] == "Nid oes cyfnewid o'r fath yn y banc amser hwn"
    assert welsh.headers["content-language"] == "cy"
    assert "content-language" not in english.headers
    assert "accept-language" in english.headers["vary"].lower()
    # a key that does not exist: Welsh title and detail, the same code
    r = await browser.get(
        "/v1/timebanks", headers={"Authorization": "Bearer tbk_nope", "Accept-Language": "cy"}
    )
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    assert r.json()["title"] == "Heb awdurdod"


async def test_every_problem_follows_accept_language_rate_limits_included(db_url: str) -> None:
    """Problems made outside the exception handlers (a middleware's 429) are in Welsh too;
    Vary says so on every problem, beside CORS's own Vary: Origin; and only the API's own
    words are translated — a detail that happens to be a console string stays English."""
    from timebank.web.language import API_MESSAGES

    settings = Settings(
        database_url=db_url,
        log_json=False,
        log_level="WARNING",
        rate_limit_per_minute=1,
        cors_origins="https://partner.example",
    )
    async with AsyncTestClient(app=create_app(settings)) as c:
        h = {"Authorization": "Bearer tbk_nope", "Accept-Language": "cy"}
        await c.get("/v1/timebanks", headers=h)
        r = await c.get("/v1/timebanks", headers={**h, "Origin": "https://partner.example"})
        assert r.status_code == 429 and r.json()["code"] == "rate_limited"
        assert r.json()["title"] != "Rate limited" and r.headers["content-language"] == "cy"
        vary = [v.strip().lower() for v in r.headers["vary"].split(",")]
        assert "accept-language" in vary and "origin" in vary
    assert "Members" not in API_MESSAGES and "Rate limited" in API_MESSAGES
