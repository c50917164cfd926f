"""Categories in the console: add one (with its Welsh name), rename it, retire it (it stays
on the exchanges that used it, and is no longer offered) or bring it back. Brokers and
admins, as in the API; every change audited by the service."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from litestar import Request, Response, get, post
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from timebank import db
from timebank.console.base import Ctx, form_of, redirect, render, settings_of, staff
from timebank.console.messages import Problems, from_validation
from timebank.errors import DomainError
from timebank.timebanks.models import TimeBank
from timebank.timebanks.schemas import CategoryCreate, CategoryPatch
from timebank.timebanks.service import create_category, list_categories, update_category


def slug_of(name: str) -> str:
    """A category's address from its English name: "Home & garden" → "home-garden"."""
    plain = unicodedata.normalize("NFKD", name)
    plain = "".join(c for c in plain if not unicodedata.combining(c)).lower()
    slug = re.sub(r"[^a-z0-9]+", "-", plain).strip("-")[:60]
    return slug if len(slug) >= 2 else f"category-{slug}".strip("-")


def _labels(ctx: Ctx) -> dict[str, str]:
    _ = ctx.gettext
    return {"name": _("Name in English"), "name_cy": _("Name in Welsh (optional)")}


async def _page(
    ctx: Ctx,
    session: AsyncSession,
    *,
    form: dict[str, str] | None = None,
    problems: Problems | None = None,
    flash: str | None = None,
    status: int = 200,
) -> Response[str]:
    assert ctx.tb is not None
    found = await list_categories(session, ctx.tb, None, 500)
    return render(
        ctx,
        "categories.html",
        section="admin" if ctx.role and ctx.role.value == "admin" else "record",
        active=[c for c in found if c.retired_at is None],
        retired=[c for c in found if c.retired_at is not None],
        form=form or {},
        problems=problems,
        flash=flash,
        status=status,
    )


@get("/{tb:str}/categories", include_in_schema=False)
async def categories_page(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str, done: str | None = None
) -> Response[str]:
    ctx = await staff(request, db_session, tb)
    _ = ctx.gettext
    flashes = {
        "added": _("The category is added."),
        "renamed": _("The category is renamed. Past exchanges show the new name."),
        "retired": _("The category is retired. Past exchanges keep it; it is no longer offered."),
        "restored": _("The category is offered again."),
    }
    return await _page(ctx, db_session, flash=flashes.get(done or ""))


async def _bank(session: AsyncSession, ctx: Ctx) -> TimeBank:
    assert ctx.tb is not None
    attached = await session.get(TimeBank, ctx.tb.id)  # ctx.tb is detached
    assert attached is not None
    return attached


@post("/{tb:str}/categories", include_in_schema=False, status_code=200)
async def category_add(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str
) -> Response[Any]:
    ctx = await staff(request, db_session, tb)
    _ = ctx.gettext
    form = await form_of(request, ctx)
    problems = Problems()
    name, name_cy = form.get("name", "").strip(), form.get("name_cy", "").strip()
    if not name:
        problems.add("name", _("Enter the category's name in English"))
    if not problems:
        try:
            data = CategoryCreate(slug=slug_of(name), name=name, name_cy=name_cy or None)

            async def add() -> Any:
                bank = await _bank(db_session, ctx)
                return await create_category(
                    db_session, ctx.principal, bank, data.slug, data.name, name_cy=data.name_cy
                )

            await db.write(db_session, add, retries=settings_of(request).write_retries)
            return redirect(ctx.url("/categories?done=added"))
        except DomainError as exc:
            if exc.code == "duplicate":
                problems.add("name", _("There is a category with this name already"))
            else:
                from_validation(ctx, problems, exc, _labels(ctx))
        except ValidationError as exc:
            from_validation(ctx, problems, exc, _labels(ctx))
    return await _page(ctx, db_session, form=form, problems=problems, status=422)


@post("/{tb:str}/categories/{slug:str}", include_in_schema=False, status_code=200)
async def category_change(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str, slug: str
) -> Response[Any]:
    """One category's form: ``action`` is rename (with ``name``, ``name_cy``), retire or
    restore."""
    ctx = await staff(request, db_session, tb)
    _ = ctx.gettext
    form = await form_of(request, ctx)
    action = form.get("action", "")
    problems = Problems()
    changes: dict[str, Any]
    if action == "retire":
        changes, done = {"retired": True}, "retired"
    elif action == "restore":
        changes, done = {"retired": False}, "restored"
    else:
        name, name_cy = form.get("name", "").strip(), form.get("name_cy", "").strip()
        if not name:
            problems.add("name", _("Enter the category's name in English"))
            return await _page(ctx, db_session, problems=problems, status=422)
        changes, done = {"name": name, "name_cy": name_cy or None}, "renamed"
    try:
        CategoryPatch.model_validate(changes)

        async def change() -> Any:
            bank = await _bank(db_session, ctx)
            return await update_category(db_session, ctx.principal, bank, slug, changes)

        await db.write(db_session, change, retries=settings_of(request).write_retries)
    except ValidationError as exc:
        from_validation(ctx, problems, exc, _labels(ctx))
        return await _page(ctx, db_session, problems=problems, status=422)
    return redirect(ctx.url(f"/categories?done={done}"))
