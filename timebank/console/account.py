"""Signing in and out, the password page, and the console's front door."""

from __future__ import annotations

import hmac
from typing import Any

from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.response import Redirect
from sqlalchemy.ext.asyncio import AsyncSession

from timebank import db
from timebank.access import STAFF, Role
from timebank.auth import users
from timebank.console.base import (
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    CsrfRefused,
    Ctx,
    NotSignedIn,
    client_address,
    form_of,
    now,
    page_lang,
    redirect,
    render,
    secure_cookie,
    settings_of,
    sign_in_token,
    signed_in,
    user_page,
)
from timebank.console.i18n import LANG_COOKIE, known
from timebank.console.messages import Problems, from_validation
from timebank.errors import DomainError, InvalidInput, RateLimited, Unauthorized

DASHBOARD = "/console/dashboard"


def _safe_next(target: str | None) -> str:
    """Only a console path of this site (never another site: an open redirect)."""
    if target and target.startswith("/console") and not target.startswith("//"):
        return target
    return "/console"


def _cookie(request: Request[Any, Any, Any], name: str, value: str, max_age: int | None) -> Cookie:
    return Cookie(
        key=name,
        value=value,
        path="/console",
        httponly=True,
        samesite="lax",
        secure=secure_cookie(request),
        max_age=max_age,
    )


LANG_MAX_AGE = 365 * 24 * 3600


def _lang_cookie(request: Request[Any, Any, Any], lang: str) -> Cookie:
    return _cookie(request, LANG_COOKIE, lang, LANG_MAX_AGE)


def _sign_in_page(
    request: Request[Any, Any, Any],
    *,
    email: str = "",
    next_: str = "/console",
    problems: Problems | None = None,
    status: int = 200,
    flash: str | None = None,
) -> Response[str]:
    token = sign_in_token()
    ctx = Ctx(request, page_lang(request))
    return render(
        ctx,
        "sign_in.html",
        status=status,
        email=email,
        next=next_,
        sign_in_csrf=token,
        problems=problems,
        flash=flash,
        cookies=[_cookie(request, SIGN_IN_COOKIE, token, 3600)],
    )


@get("/sign-in", name="console:sign-in", include_in_schema=False)
async def sign_in_form(request: Request[Any, Any, Any], next: str | None = None) -> Response[str]:
    flash = None
    if request.query_params.get("signed_out"):
        flash = Ctx(request, page_lang(request)).gettext("You have signed out.")
    return _sign_in_page(request, next_=_safe_next(next), flash=flash)


@post("/sign-in", include_in_schema=False, status_code=200)
async def sign_in(request: Request[Any, Any, Any], db_session: AsyncSession) -> Response[Any]:
    """Double-submit CSRF (no session yet): the form's token must equal its cookie's."""
    ctx = Ctx(request, page_lang(request))
    _ = ctx.gettext
    form = {k: str(v) for k, v in (await request.form()).items() if isinstance(v, str)}
    email, password = form.get("email", "").strip(), form.get("password", "")
    next_ = _safe_next(form.get("next"))
    cookie = request.cookies.get(SIGN_IN_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), form.get("csrf_token", "").encode()):
        problems = Problems()
        problems.add("", _("Your sign-in form had expired. Sign in again."))
        return _sign_in_page(request, email=email, next_=next_, problems=problems, status=403)
    problems = Problems()
    if not email:
        problems.add("email", _("Enter your email address"))
    if not password:
        problems.add("password", _("Enter your password"))
    if problems:
        return _sign_in_page(request, email=email, next_=next_, problems=problems, status=422)
    s = settings_of(request)
    from datetime import timedelta

    try:
        who, token = await db.write(
            db_session,
            lambda: users.sign_in(
                db_session,
                email=email,
                password=password,
                address=client_address(request),
                now=now(request),
                window=timedelta(minutes=s.sign_in_window_minutes),
                per_account=s.sign_in_failures_per_account,
                per_address=s.sign_in_failures_per_address,
            ),
            retries=s.write_retries,
        )
    except RateLimited:
        problems.add(
            "",
            _("There have been too many attempts to sign in. Wait %(n)s minutes and try again.")
            % {"n": s.sign_in_window_minutes},
        )
        return _sign_in_page(request, email=email, next_=next_, problems=problems, status=429)
    except Unauthorized:
        problems.add("email", _("The email address or password is not right"))
        return _sign_in_page(request, email=email, next_=next_, problems=problems, status=401)
    if who.user.must_change_password:
        next_ = "/console/password"
    elif next_ == "/console":
        next_ = await _home_of(who, db_session)
    max_age = s.console_absolute_hours * 3600
    cookies = [
        _cookie(request, SESSION_COOKIE, token, max_age),
        Cookie(key=SIGN_IN_COOKIE, value="", path="/console", max_age=0, expires=0),
    ]
    if known(who.user.language):  # their choice follows them to this browser's sign-in page
        cookies.append(_lang_cookie(request, str(who.user.language)))
    return Redirect(next_, status_code=303, cookies=cookies)


async def _home_of(who: users.SignedIn, session: AsyncSession) -> str:
    """Funders land on their dashboard; staff of one bank on its home page."""
    if who.user.role is Role.funder:
        return DASHBOARD
    banks = await users.bank_names(session, who.timebank_ids)
    if len(banks) == 1 and who.user.role in STAFF:
        return f"/console/{banks[0].slug}"
    return "/console"


@post("/sign-out", include_in_schema=False, status_code=200)
async def sign_out(request: Request[Any, Any, Any], db_session: AsyncSession) -> Response[Any]:
    ctx = await user_page(request, db_session)
    await form_of(request, ctx)
    assert ctx.who is not None
    who = ctx.who
    await db.write(
        db_session,
        lambda: users.sign_out(db_session, who, now(request)),
        retries=settings_of(request).write_retries,
    )
    cookies = [Cookie(key=SESSION_COOKIE, value="", path="/console", max_age=0, expires=0)]
    if known(who.user.language):  # the sign-in page goes on in the language they chose
        cookies.append(_lang_cookie(request, str(who.user.language)))
    return redirect("/console/sign-in?signed_out=1", cookies=cookies)


@post("/language", include_in_schema=False, status_code=200)
async def choose_language(
    request: Request[Any, Any, Any], db_session: AsyncSession
) -> Response[Any]:
    """The language switch (a small form on every page, no JavaScript): the choice goes in
    a cookie, and on the signed-in user's row (with the session's CSRF token, as every
    form of a session). Signed out (the sign-in page, an error page) only the cookie is set:
    a display preference, which a forged form could do nothing with."""
    form = {k: str(v) for k, v in (await request.form()).items() if isinstance(v, str)}
    lang = known(form.get("lang"))
    next_ = _safe_next(form.get("next"))
    if lang is None:
        return redirect(next_)
    try:
        who: users.SignedIn | None = await signed_in(request, db_session)
    except NotSignedIn:
        who = None
    if who is not None:
        sent = form.get("csrf_token", "")
        if not hmac.compare_digest(sent.encode(), who.session.csrf_token.encode()):
            raise CsrfRefused()
        signed = who
        await db.write(
            db_session,
            lambda: users.set_language(db_session, signed, lang),
            retries=settings_of(request).write_retries,
        )
    return redirect(next_, cookies=[_lang_cookie(request, lang)])


@get("/", include_in_schema=False)
async def front(request: Request[Any, Any, Any], db_session: AsyncSession) -> Response[Any]:
    """A funder: the dashboard. One bank: its home page. Several (or a global admin): the
    list of banks."""
    ctx = await user_page(request, db_session)
    assert ctx.who is not None
    if ctx.who.user.role is Role.funder:
        return Redirect(DASHBOARD, status_code=303)
    if len(ctx.banks) == 1 and ctx.who.user.role in STAFF:
        return Redirect(f"/console/{ctx.banks[0].slug}", status_code=303)
    return render(ctx, "front.html", banks=ctx.banks)


PASSWORD_LABELS = {
    "current_password": "Your current password",
    "new_password": "New password",
    "password": "New password",
}


@get("/password", include_in_schema=False)
async def password_form(request: Request[Any, Any, Any], db_session: AsyncSession) -> Response[str]:
    ctx = await user_page(request, db_session)
    return render(ctx, "password.html")


@post("/password", include_in_schema=False, status_code=200)
async def change_password(
    request: Request[Any, Any, Any], db_session: AsyncSession
) -> Response[Any]:
    ctx = await user_page(request, db_session)
    _ = ctx.gettext
    form = await form_of(request, ctx)
    assert ctx.who is not None
    who = ctx.who
    problems = Problems()
    current, new, again = (
        form.get("current_password", ""),
        form.get("new_password", ""),
        form.get("confirm_password", ""),
    )
    if not current:
        problems.add("current_password", _("Enter your current password"))
    if not new:
        problems.add("new_password", _("Enter a new password"))
    elif new != again:
        problems.add("confirm_password", _("The two new passwords are not the same"))
    if not problems:
        try:
            await db.write(
                db_session,
                lambda: users.change_password(
                    db_session, who, current=current, new=new, now=now(request)
                ),
                retries=settings_of(request).write_retries,
            )
        except InvalidInput as exc:
            labels = {
                "current_password": _("Your current password"),
                "password": _("The new password"),
            }
            from_validation(ctx, problems, exc, labels)
            if problems.get("password"):
                problems.messages["new_password"] = problems.messages.pop("password")
        except DomainError as exc:
            from_validation(ctx, problems, exc, {})
    if problems:
        return render(ctx, "password.html", problems=problems, status=422)
    return render(
        ctx,
        "password.html",
        flash=_("Your password has been changed. Your other sessions have been signed out."),
        home=await _home_of(who, db_session),
    )


__all__ = [
    "change_password",
    "choose_language",
    "front",
    "password_form",
    "sign_in",
    "sign_in_form",
    "sign_out",
    "signed_in",
]
