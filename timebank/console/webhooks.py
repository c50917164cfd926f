"""Admin pages for webhooks: the bank's endpoints (add one, its secret shown once; remove
one) and each endpoint's delivery log, with a button to send a delivery again. The same
services as the API (``timebank.events.webhooks``)."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Request, Response, get, post
from sqlalchemy.ext.asyncio import AsyncSession

from timebank import db
from timebank.console.base import Ctx, admin, form_of, redirect, render, settings_of
from timebank.console.messages import Problems
from timebank.errors import DomainError
from timebank.events import webhooks
from timebank.events.models import EventType


async def _write(request: Request[Any, Any, Any], session: AsyncSession, fn: Any) -> Any:
    return await db.write(session, fn, retries=settings_of(request).write_retries)


def _url_problem(ctx: Ctx, detail: str) -> str:
    """The service's refusal of an address, in the page's language."""
    _ = ctx.gettext
    if "private" in detail or "loopback" in detail:
        return _("This address leads into a private network. Webhooks go to public addresses only.")
    if "cannot be resolved" in detail:
        return _("We could not find this address. Check it and try again.")
    if "at most" in detail:
        return _("This time bank has as many webhooks as it may have. Remove one first.")
    return _("Enter an address that starts with https:// or http://")


async def _page(
    ctx: Ctx,
    session: AsyncSession,
    *,
    form: dict[str, Any] | None = None,
    problems: Problems | None = None,
    done: str | None = None,
    status: int = 200,
) -> Response[str]:
    assert ctx.tb is not None
    _ = ctx.gettext
    found = await webhooks.list_endpoints(session, ctx.principal, ctx.tb.id)
    flash = {"removed": _("The webhook is removed. Nothing more is sent to it.")}.get(done or "")
    return render(
        ctx,
        "webhooks.html",
        section="admin",
        endpoints=found,
        types=[t.value for t in EventType],
        form=form or {"url": "", "events": []},
        problems=problems,
        flash=flash,
        status=status,
    )


@get("/{tb:str}/admin/webhooks", include_in_schema=False)
async def webhooks_page(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str, done: str | None = None
) -> Response[str]:
    ctx = await admin(request, db_session, tb)
    return await _page(ctx, db_session, done=done)


@post("/{tb:str}/admin/webhooks", include_in_schema=False, status_code=200)
async def webhook_create(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str
) -> Response[Any]:
    ctx = await admin(request, db_session, tb)
    assert ctx.tb is not None
    bank = ctx.tb
    _ = ctx.gettext
    await form_of(request, ctx)  # checks the CSRF token
    raw = await request.form()
    url = str(raw.get("url", "")).strip()
    chosen = [str(v) for v in raw.getall("events")] if "events" in raw else []
    problems = Problems()
    if not url:
        problems.add("url", _("Enter the address to send events to"))
    if not problems:
        try:
            made = await _write(
                request,
                db_session,
                lambda: webhooks.create_endpoint(
                    db_session,
                    ctx.principal,
                    bank.id,
                    url,
                    chosen or None,
                    allow_private=settings_of(request).webhooks_allow_private,
                ),
            )
            return render(ctx, "webhook_created.html", section="admin", endpoint=made)
        except DomainError as exc:
            if exc.code != "validation_error":
                raise
            problems.add("url", _url_problem(ctx, exc.detail))
    form = {"url": url, "events": chosen}
    return await _page(ctx, db_session, form=form, problems=problems, status=422)


@post("/{tb:str}/admin/webhooks/{webhook_id:uuid}/remove", include_in_schema=False, status_code=200)
async def webhook_remove(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str, webhook_id: uuid.UUID
) -> Response[Any]:
    ctx = await admin(request, db_session, tb)
    assert ctx.tb is not None
    bank = ctx.tb
    await form_of(request, ctx)
    await _write(
        request,
        db_session,
        lambda: webhooks.delete_endpoint(db_session, ctx.principal, bank.id, webhook_id),
    )
    return redirect(ctx.url("/admin/webhooks?done=removed"))


@get("/{tb:str}/admin/webhooks/{webhook_id:uuid}", include_in_schema=False)
async def webhook_log(
    request: Request[Any, Any, Any],
    db_session: AsyncSession,
    tb: str,
    webhook_id: uuid.UUID,
    done: str | None = None,
) -> Response[str]:
    ctx = await admin(request, db_session, tb)
    assert ctx.tb is not None
    endpoint = await webhooks.get_endpoint(db_session, ctx.principal, ctx.tb.id, webhook_id)
    rows = await webhooks.list_deliveries(
        db_session, ctx.principal, ctx.tb.id, webhook_id, None, 50
    )
    flash = ctx.gettext("It will be sent again in a moment.") if done == "again" else None
    return render(
        ctx, "webhook.html", section="admin", endpoint=endpoint, rows=rows[:50], flash=flash
    )


@post(
    "/{tb:str}/admin/webhooks/{webhook_id:uuid}/deliveries/{delivery_id:uuid}/redeliver",
    include_in_schema=False,
    status_code=200,
)
async def webhook_redeliver(
    request: Request[Any, Any, Any],
    db_session: AsyncSession,
    tb: str,
    webhook_id: uuid.UUID,
    delivery_id: uuid.UUID,
) -> Response[Any]:
    ctx = await admin(request, db_session, tb)
    assert ctx.tb is not None
    bank = ctx.tb
    await form_of(request, ctx)
    await _write(
        request,
        db_session,
        lambda: webhooks.redeliver(db_session, ctx.principal, bank.id, webhook_id, delivery_id),
    )
    return redirect(ctx.url(f"/admin/webhooks/{webhook_id}?done=again"))


ROUTES = [webhooks_page, webhook_create, webhook_remove, webhook_log, webhook_redeliver]
