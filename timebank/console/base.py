"""What every console page shares: who is signed in (from the session cookie), the time
bank of the path, the CSRF check, the language, and rendering a template.

A page handler reads top to bottom: ``ctx = await staff(request, db_session, tb)`` (signed
in, the bank in scope, a role that may use the page), parse the form, call the same service
the API calls with ``ctx.principal``, render or redirect.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from jinja2 import Environment, FileSystemLoader, select_autoescape
from litestar import Request, Response
from litestar.datastructures import Cookie
from litestar.response import Redirect
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.access import STAFF, Principal, Role
from timebank.auth import users
from timebank.auth.users import SignedIn
from timebank.config import Settings
from timebank.console import formatting
from timebank.console.i18n import (
    LANG_COOKIE,
    SOURCE,
    available,
    choose,
    native_name,
    translations,
)
from timebank.db import utcnow
from timebank.errors import DomainError, Forbidden, NotFound
from timebank.timebanks.models import TimeBank

T = TypeVar("T")
SESSION_COOKIE = users.SESSION_COOKIE
SIGN_IN_COOKIE = "timebank_sign_in"  # the sign-in form's double-submit CSRF token
HERE = Path(__file__).parent
STATIC = HERE / "static"
# the static files' URL changes with their content, so browsers may cache them for a year
VERSION = hashlib.sha256(
    b"".join(p.read_bytes() for p in sorted(STATIC.rglob("*")) if p.is_file())
).hexdigest()[:12]


def _templates() -> Environment:
    return Environment(
        loader=FileSystemLoader(str(HERE / "templates")),
        autoescape=select_autoescape(["html"]),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
        cache_size=400,
    )


CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)


class NotSignedIn(Exception):
    """No live session: the page sends the browser to sign in (and back afterwards)."""


class MustChoosePassword(Exception):
    """A user signed in with a one-time password: every page but the password page (and
    signing out, and the language switch) sends them to choose their own first."""


# the pages a user with a one-time password may still use
ONE_TIME_ALLOWED = ("/console/password", "/console/sign-out", "/console/language")


class CsrfRefused(Exception):
    """A form came without this session's CSRF token."""


def settings_of(request: Request[Any, Any, Any]) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def now(request: Request[Any, Any, Any]) -> datetime:
    """The console's clock: ``app.state.clock`` if a test set one, else the wall clock."""
    clock: Callable[[], datetime] = request.app.state.get("clock") or utcnow
    return clock()


def timeouts(request: Request[Any, Any, Any]) -> tuple[timedelta, timedelta]:
    s = settings_of(request)
    return timedelta(minutes=s.console_idle_minutes), timedelta(hours=s.console_absolute_hours)


def secure_cookie(request: Request[Any, Any, Any]) -> bool:
    mode = settings_of(request).console_secure_cookie
    return mode == "always" or (mode == "auto" and request.url.scheme == "https")


def client_address(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client else "unknown"


@dataclass
class Ctx:
    """One page's context: the request, the language, who is signed in, and the bank."""

    request: Request[Any, Any, Any]
    lang: str
    who: SignedIn | None = None
    tb: TimeBank | None = None
    banks: list[TimeBank] = field(default_factory=list)

    @property
    def principal(self) -> Principal:
        assert self.who is not None
        return self.who.principal(self.tb.id if self.tb else None)

    @property
    def role(self) -> Role | None:
        return self.who.user.role if self.who else None

    def gettext(self, message: str) -> str:
        return str(translations(self.lang).gettext(message))

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return str(translations(self.lang).ngettext(singular, plural, n))

    def pgettext(self, context: str, message: str) -> str:
        """A message whose translation depends on where it is used (``context``)."""
        return str(translations(self.lang).pgettext(context, message))

    def duration(self, minutes: int | None) -> str:
        return formatting.duration(minutes, self.gettext)

    def day(self, value: Any) -> str:
        return formatting.day(value, self.lang)

    def moment(self, value: Any) -> str:
        return formatting.moment(value, self.lang, self.tb.time_zone if self.tb else "UTC")

    def number(self, value: float | int | None) -> str:
        return formatting.number(value, self.lang)

    @property
    def languages(self) -> list[tuple[str, str]]:
        """Every language of the switch: (code, its name in itself)."""
        return [(lang, native_name(lang)) for lang in available()]

    @property
    def here(self) -> str:
        """This page's path and query: where the language switch comes back to."""
        target = self.request.url.path
        if self.request.url.query:
            target += "?" + self.request.url.query
        return target

    def english(self, text: str) -> str:
        """English words (a service's message the catalogue has not) on this page: marked
        ``lang="en"`` when the page is in another language, so a screen reader says them
        as English."""
        if self.lang == SOURCE or not text:
            return text
        return Markup('<span lang="en">{}</span>').format(text)

    def url(self, path: str = "") -> str:
        """A page of this bank: ``/console/<slug><path>``."""
        assert self.tb is not None
        return f"/console/{self.tb.slug}{path}"

    @property
    def csrf(self) -> str:
        return self.who.session.csrf_token if self.who else ""

    @property
    def can_switch_language(self) -> bool:
        """Whether the language switch can work here: signed in with the session's CSRF
        token, or signed out. A page drawn without its session (an error page of a
        signed-in user) has no token to send, and the switch would be refused."""
        return self.who is not None or SESSION_COOKIE not in self.request.cookies


def page_lang(
    request: Request[Any, Any, Any],
    who: SignedIn | None = None,
    tb: TimeBank | None = None,
    banks: list[TimeBank] | None = None,
) -> str:
    """The page's language (:func:`timebank.console.i18n.choose`): the user's choice, the
    cookie, the default of the bank of the page (or of the user's one bank), the browser's."""
    bank = tb if tb is not None else (banks[0] if banks and len(banks) == 1 else None)
    return choose(
        user=who.user.language if who else None,
        cookie=request.cookies.get(LANG_COOKIE),
        bank=bank.default_language if bank is not None else None,
        accept_language=request.headers.get("accept-language"),
    )


def render(
    ctx: Ctx, template: str, *, status: int = 200, cookies: Iterable[Cookie] = (), **values: Any
) -> Response[str]:
    """A page: the template in the context's language, with the console's headers."""
    html = (
        environment(ctx.lang)
        .get_template(template)
        .render(
            ctx=ctx,
            lang=ctx.lang,
            tb=ctx.tb,
            who=ctx.who,
            version=VERSION,
            d=ctx.duration,
            day=ctx.day,
            moment=ctx.moment,
            **values,
        )
    )
    return Response(
        html,
        status_code=status,
        media_type="text/html; charset=utf-8",
        headers={"Content-Security-Policy": CSP, "Cache-Control": "no-store"},
        cookies=list(cookies),
    )


@lru_cache(maxsize=16)
def environment(lang: str) -> Environment:
    """The templates in one language (each language's compiled templates cached apart)."""
    # an environment of its own (an overlay would share its parent's globals, where the
    # i18n extension installs the translations: every language would get the last one's)
    env = _templates()
    env.install_gettext_translations(translations(lang), newstyle=True)  # type: ignore[attr-defined]
    return env


def redirect(path: str, cookies: Iterable[Cookie] = ()) -> Redirect:
    """After a POST: 303, so a reload does not send the form again."""
    return Redirect(path, status_code=303, cookies=list(cookies))


def _quote(text: str) -> str:
    """Percent-encoding for a query value (the console imports nothing from ``urllib``:
    the service makes no outbound requests, tests/test_abuse.py)."""
    safe = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~/")
    return "".join(chr(b) if chr(b) in safe else f"%{b:02X}" for b in text.encode())


def sign_in_redirect(request: Request[Any, Any, Any]) -> Redirect:
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    return Redirect(f"/console/sign-in?next={_quote(target)}", status_code=303)


async def signed_in(request: Request[Any, Any, Any], db_session: AsyncSession) -> SignedIn:
    idle, absolute = timeouts(request)
    who = await users.resolve(
        db_session,
        request.cookies.get(SESSION_COOKIE),
        now=now(request),
        idle=idle,
        absolute=absolute,
    )
    if who is None:
        raise NotSignedIn()
    if who.user.must_change_password and request.url.path not in ONE_TIME_ALLOWED:
        raise MustChoosePassword()
    return who


async def user_page(request: Request[Any, Any, Any], db_session: AsyncSession) -> Ctx:
    """Any signed-in user's page (not about one bank)."""
    who = await signed_in(request, db_session)
    banks = await users.bank_names(db_session, who.timebank_ids)
    return Ctx(
        request,
        page_lang(request, who, None, banks if len(who.timebank_ids) == 1 else None),
        who,
        None,
        banks,
    )


async def bank_page(
    request: Request[Any, Any, Any], db_session: AsyncSession, slug: str, *roles: Role
) -> Ctx:
    """A page of the bank ``slug``: 404 if the user cannot see the bank (exactly as an
    unknown one, SPEC §7.1), 403 if their role may not use this page."""
    who = await signed_in(request, db_session)
    tb = (
        await db_session.execute(select(TimeBank).where(TimeBank.slug == slug[:63]))
    ).scalar_one_or_none()
    if tb is None or not who.can_see(tb.id):
        raise NotFound("No such time bank")
    if who.user.role not in roles:
        raise Forbidden("Your role cannot use this page")
    # detached: a refused write rolls the session back, and the page is still drawn with it
    db_session.expunge(tb)
    banks = await users.bank_names(db_session, who.timebank_ids)
    return Ctx(request, page_lang(request, who, tb), who, tb, banks)


def detached(session: AsyncSession, obj: T) -> T:
    """``obj`` out of the session: still readable after a refused write's rollback."""
    session.expunge(obj)
    return obj


async def staff(request: Request[Any, Any, Any], db_session: AsyncSession, slug: str) -> Ctx:
    return await bank_page(request, db_session, slug, *STAFF)


async def admin(request: Request[Any, Any, Any], db_session: AsyncSession, slug: str) -> Ctx:
    return await bank_page(request, db_session, slug, Role.admin)


async def form_of(request: Request[Any, Any, Any], ctx: Ctx) -> dict[str, str]:
    """The posted form as plain strings (first value of each field), after the CSRF check:
    the session's token must come back in the ``csrf_token`` field."""
    data = await request.form()
    form = {k: str(v) for k, v in data.items() if isinstance(v, str)}
    sent = form.pop("csrf_token", "")
    if not ctx.who or not hmac.compare_digest(sent.encode(), ctx.csrf.encode()):
        raise CsrfRefused()
    return form


def new_form_key() -> str:
    """A form's Idempotency-Key: a second submission of the same form records nothing."""
    return uuid.uuid4().hex


def sign_in_token() -> str:
    return secrets.token_urlsafe(24)


def status_of(exc: DomainError) -> int:
    from timebank.web.problems import status_of as web_status

    return int(web_status(exc.code))
