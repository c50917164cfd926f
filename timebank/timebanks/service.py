"""Time banks: creation (with pool account and default categories), settings, lookups."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.access import STAFF, Principal, Role
from timebank.audit import service as audit
from timebank.db import utcnow, uuid7
from timebank.errors import Duplicate, InvalidInput, NotFound
from timebank.idempotency import Claim
from timebank.timebanks.models import Category, TimeBank

DEFAULT_CATEGORIES = [
    ("companionship", "Companionship"),
    ("transport", "Transport"),
    ("shopping-errands", "Shopping and errands"),
    ("home-garden", "Home and garden"),
    ("diy-repairs", "DIY and repairs"),
    ("cooking-meals", "Cooking and meals"),
    ("admin-it", "Admin and IT"),
    ("learning-teaching", "Learning and teaching"),
    ("arts-crafts", "Arts and crafts"),
    ("health-wellbeing", "Health and wellbeing"),
    ("childcare-family", "Childcare and family"),
    ("care-support", "Care and support"),
    ("community-events", "Community events"),
    ("other", "Other"),
]


EARLIEST_DATE = date(1980, 1, 1)  # time banking began in the 1980s; older dates are typos


def today(tb: TimeBank) -> date:
    """Today in the time bank's time zone: the latest day anything may have happened on."""
    return datetime.now(ZoneInfo(tb.time_zone)).date()


def check_date(field: str, value: date, tb: TimeBank) -> None:
    """A day something happened on: not after today in the bank, not before 1980."""
    if value > today(tb):
        raise InvalidInput(field, "is after today in this time bank's time zone")
    if value < EARLIEST_DATE:
        raise InvalidInput(field, f"is before {EARLIEST_DATE.isoformat()}")


async def get_by_slug(session: AsyncSession, principal: Principal, slug: str) -> TimeBank:
    """The time bank named in the path: 404 if unknown, and the same 404 if the key is scoped
    elsewhere (SPEC §7.1: a key cannot tell the two apart, so it cannot list bank slugs)."""
    tb = (await session.execute(select(TimeBank).where(TimeBank.slug == slug))).scalar_one_or_none()
    return visible(tb, principal, slug)


def visible(tb: TimeBank | None, principal: Principal, slug: str) -> TimeBank:
    """``tb`` (found by ``slug``) if ``principal`` may see it; else 404 as if unknown."""
    if tb is None or not principal.can_access(tb.id):
        raise NotFound(f"No time bank '{slug}'")
    return tb


def check_settings(settings: dict[str, Any], principal: Principal) -> None:
    threshold = settings.get("suppression_threshold")
    if threshold is not None and threshold < 10 and not principal.is_global_admin:
        raise InvalidInput(
            "settings.suppression_threshold", "only a global admin may set it below 10"
        )
    tz = settings.get("time_zone")
    if tz is not None:
        try:
            ZoneInfo(tz)
        except (KeyError, ValueError) as exc:
            raise InvalidInput("settings.time_zone", "unknown IANA time zone") from exc
    for side in ("member", "organisation"):
        lo = settings.get(f"{side}_min_balance_minutes")
        hi = settings.get(f"{side}_max_balance_minutes")
        if lo is not None and hi is not None and lo > hi:
            raise InvalidInput(f"settings.{side}_min_balance_minutes", "greater than the max")


async def update_timebank(
    session: AsyncSession, principal: Principal, tb: TimeBank, changes: dict[str, Any]
) -> TimeBank:
    principal.require(tb.id, Role.admin)
    settings = dict(changes.get("settings") or {})
    check_settings(settings, principal)
    if "name" in changes and changes["name"] is not None:
        tb.name = changes["name"]
    for field, value in settings.items():
        setattr(tb, field, value)
    tb.updated_at = utcnow()
    await session.flush()
    await audit.record(
        session,
        audit.event(
            principal,
            "timebank.update",
            timebank_id=tb.id,
            target_type="timebank",
            target_id=tb.id,
            details={"fields": sorted(settings) + (["name"] if "name" in changes else [])},
        ),
    )
    await session.commit()
    return tb


async def list_timebanks(
    session: AsyncSession, principal: Principal, after: uuid.UUID | None, limit: int
) -> list[TimeBank]:
    stmt = select(TimeBank).order_by(TimeBank.id).limit(limit + 1)
    if not principal.is_global_admin:
        scope = {principal.timebank_id, *principal.report_timebanks} - {None}
        stmt = stmt.where(TimeBank.id.in_(scope))
    if after:
        stmt = stmt.where(TimeBank.id > after)
    return list((await session.execute(stmt)).scalars())


async def list_categories(
    session: AsyncSession, tb: TimeBank, after: uuid.UUID | None, limit: int
) -> list[Category]:
    stmt = (
        select(Category).where(Category.timebank_id == tb.id).order_by(Category.id).limit(limit + 1)
    )
    if after:
        stmt = stmt.where(Category.id > after)
    return list((await session.execute(stmt)).scalars())


async def get_category(session: AsyncSession, tb: TimeBank, slug: str) -> Category:
    found = await session.scalar(
        select(Category).where(Category.timebank_id == tb.id, Category.slug == slug)
    )
    if found is None:
        raise NotFound(f"No category '{slug}' in time bank '{tb.slug}'")
    return found


async def create_category(
    session: AsyncSession,
    principal: Principal,
    tb: TimeBank,
    slug: str,
    name: str,
    claim: Claim | None = None,
    name_cy: str | None = None,
) -> Category:
    principal.require(tb.id, *STAFF)
    exists = await session.execute(
        select(Category.id).where(Category.timebank_id == tb.id, Category.slug == slug)
    )
    if exists.first():
        raise Duplicate(f"Category '{slug}' exists")
    cat = Category(
        id=uuid7(),
        timebank_id=tb.id,
        slug=slug,
        name=name,
        name_cy=name_cy,
        created_at=utcnow(),
    )
    session.add(cat)
    await session.flush()
    await audit.record(
        session,
        audit.event(
            principal,
            "category.create",
            timebank_id=tb.id,
            target_type="category",
            target_id=cat.id,
        ),
    )
    if claim is not None:
        await claim.settle(session, cat)
    await session.commit()
    return cat


async def update_category(
    session: AsyncSession,
    principal: Principal,
    tb: TimeBank,
    slug: str,
    changes: dict[str, Any],
) -> Category:
    """Rename a category (English, Welsh) or retire it / bring it back; audited with what
    changed. A retired category stays on the exchanges that used it and in reports; it is
    refused for new exchanges (``validate``)."""
    principal.require(tb.id, *STAFF)
    cat = await get_category(session, tb, slug)
    details: dict[str, Any] = {}
    for name in ("name", "name_cy"):
        if name in changes and changes[name] != getattr(cat, name):
            details[name] = {"from": getattr(cat, name), "to": changes[name]}
            setattr(cat, name, changes[name])
    if "retired" in changes and changes["retired"] != (cat.retired_at is not None):
        cat.retired_at = utcnow() if changes["retired"] else None
        details["retired"] = bool(changes["retired"])
    if details:
        await audit.record(
            session,
            audit.event(
                principal,
                "category.update",
                timebank_id=tb.id,
                target_type="category",
                target_id=cat.id,
                details=details,
            ),
        )
    await session.commit()
    return cat
