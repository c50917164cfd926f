"""The console's routes, its static files, and how a refused page is shown (an HTML page
in plain English, never problem JSON; not signed in: to the sign-in page)."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response, Router, get
from litestar.exceptions import HTTPException, ValidationException
from litestar.response import Redirect

from timebank.console import (
    account,
    admin,
    categories,
    dashboard,
    exchanges,
    home,
    parties,
    sheets,
    webhooks,
)
from timebank.console.base import (
    CSP,
    STATIC,
    CsrfRefused,
    Ctx,
    MustChoosePassword,
    NotSignedIn,
    page_lang,
    render,
    sign_in_redirect,
    status_of,
)
from timebank.errors import DomainError
from timebank.web.problems import UPLOAD_LIMIT

log = logging.getLogger("timebank.console")
TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
}


@get("/static/{version:str}/{name:str}", include_in_schema=False)
async def static(version: str, name: str) -> Response[bytes]:
    """The console's own files (no CDN), cached for a year: the URL changes with them."""
    path = STATIC / name
    if "/" in name or name.startswith(".") or not path.is_file() or path.suffix not in TYPES:
        return Response(b"", status_code=404)
    return Response(
        path.read_bytes(),
        media_type=TYPES[path.suffix],
        headers={"Cache-Control": "public, max-age=31536000, immutable"},
    )


def _ctx(request: Request[Any, Any, Any]) -> Ctx:
    return Ctx(request, page_lang(request))


def _page(ctx: Ctx, status: int, heading: str, message: str) -> Response[str]:
    """An error page: ``heading`` and ``message`` already in the page's language."""
    return render(ctx, "error.html", status=status, heading=heading, message=message)


def _not_found(ctx: Ctx, status: int = 404) -> Response[str]:
    _ = ctx.gettext
    return _page(
        ctx, status, _("Page not found"), _("If you typed the web address, check it is correct.")
    )


def _broken(ctx: Ctx, status: int = 500) -> Response[str]:
    _ = ctx.gettext
    return _page(
        ctx, status, _("Sorry, there is a problem with the service"), _("Try again later.")
    )


def _not_signed_in(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    return sign_in_redirect(request)


def _choose_password(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    return Redirect("/console/password", status_code=303)


def _csrf(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    ctx = _ctx(request)
    _ = ctx.gettext
    return _page(
        ctx,
        403,
        _("This form has expired"),
        _(
            "The page was open too long, or the form came from elsewhere. Go back, reload the page and try again."
        ),
    )


def _domain(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    assert isinstance(exc, DomainError)
    ctx = _ctx(request)
    _ = ctx.gettext
    status = status_of(exc)
    if status == 404:
        return _not_found(ctx)
    if status == 403:
        return _page(
            ctx,
            403,
            _("You cannot use this page"),
            _("Your role in this time bank does not allow it. Ask an admin if you need it."),
        )
    if status == 401:
        return sign_in_redirect(request)
    return _page(
        ctx, status, _("There is a problem"), _("We could not do this. Go back and try again.")
    )


def _http(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    ctx = _ctx(request)
    _ = ctx.gettext
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if isinstance(exc, ValidationException) or status == 400:
        return _page(
            ctx,
            400,
            _("There is a problem"),
            _("Something in the web address or form was not right. Go back and try again."),
        )
    if status in (404, 405):
        return _not_found(ctx, status)
    if status == 413:
        handler = request.scope.get("route_handler")
        upload = handler.opt.get(UPLOAD_LIMIT) if handler is not None else None
        if upload is not None:
            return _page(
                ctx,
                413,
                _("There is a problem"),
                _(
                    "The file is over the limit of %(limit)s MiB for a sheet. Split it into "
                    "several sheets and upload each."
                )
                % {"limit": upload // 2**20},
            )
        return _page(ctx, 413, _("There is a problem"), _("What you sent is too large."))
    if status >= 500:
        log.exception("console page failed", exc_info=exc)
    return _broken(ctx, status)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("console page failed", exc_info=exc)
    return _broken(_ctx(request))


console_router = Router(
    path="/console",
    include_in_schema=False,
    route_handlers=[
        static,
        account.sign_in_form,
        account.sign_in,
        account.sign_out,
        account.choose_language,
        account.front,
        account.password_form,
        account.change_password,
        *dashboard.ROUTES,
        home.home,
        home.directory,
        *sheets.ROUTES,
        parties.members,
        parties.member_new,
        parties.member_create,
        parties.member_page,
        parties.member_csv,
        parties.member_xlsx,
        parties.member_edit,
        parties.member_save,
        parties.member_status,
        parties.member_erase_confirm,
        parties.member_erase,
        parties.member_key_create,
        parties.member_key_revoke,
        parties.organisations,
        parties.organisation_new,
        parties.organisation_create,
        parties.organisation_page,
        parties.organisation_csv,
        parties.organisation_xlsx,
        parties.organisation_edit,
        parties.organisation_save,
        parties.organisation_status,
        exchanges.record_form,
        exchanges.record,
        exchanges.group_form,
        exchanges.record_group,
        exchanges.exchange_page,
        exchanges.reverse_form,
        exchanges.reverse,
        exchanges.proposals,
        exchanges.confirm,
        exchanges.reject_form,
        exchanges.reject,
        admin.admin_home,
        admin.settings_form,
        admin.settings_save,
        categories.categories_page,
        categories.category_add,
        categories.category_change,
        admin.users_page,
        admin.user_create,
        admin.user_disable,
        admin.user_enable,
        admin.user_reset_password,
        admin.user_role,
        admin.session_revoke,
        admin.keys_page,
        admin.key_create,
        admin.key_revoke,
        admin.audit_page,
        *webhooks.ROUTES,
    ],
    exception_handlers={
        NotSignedIn: _not_signed_in,
        MustChoosePassword: _choose_password,
        CsrfRefused: _csrf,
        DomainError: _domain,
        HTTPException: _http,
        Exception: _unexpected,
    },
)

__all__ = ["CSP", "console_router"]
