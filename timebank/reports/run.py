"""Running a report: which figures (exact or published), in one snapshot of the database,
under the report statement timeout.

*Exact* figures (:mod:`timebank.reports.service`, broker and admin keys by default) carry
small-cell suppression with secondary suppression within the response; *published*
figures (:mod:`timebank.reports.published`, funder keys always, staff with
``?figures=published``) are cell-key perturbed and suppressed by population only.
"""

from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.access import Principal, Role
from timebank.db import sqlstate
from timebank.errors import NotFound, ReportTimeout
from timebank.reports import queries as q
from timebank.reports.cellkey import METHOD
from timebank.reports.periods import Period
from timebank.reports.published import PUBLISHED
from timebank.reports.service import REPORTS, Built, Ctx, Options
from timebank.timebanks.models import TimeBank

__all__ = ["METHOD", "banks_by_slug", "build", "publishes"]


def publishes(principal: Principal, figures: str | None) -> bool:
    """Funder keys always get published figures; staff when they ask for them."""
    return principal.role is Role.funder or figures == "published"


async def banks_by_slug(
    session: AsyncSession, principal: Principal, slugs: list[str]
) -> list[TimeBank]:
    """The time banks of a cross-bank report, in the order asked; 404 for an unknown one
    and, alike, for one outside the key's scope (SPEC §7.1)."""
    found = {
        b.slug: b
        for b in (await session.execute(select(TimeBank).where(TimeBank.slug.in_(slugs)))).scalars()
    }
    missing = [s for s in slugs if s not in found or not principal.can_access(found[s].id)]
    if missing:
        raise NotFound(f"No time bank '{missing[0]}'")
    return [found[s] for s in slugs]


async def build(
    session: AsyncSession,
    name: str,
    banks: list[TimeBank],
    period: Period,
    options: Options,
    *,
    timeout_ms: int,
    published: bool = False,
) -> tuple[Built, int]:
    """Run report ``name`` (exact or ``published`` figures) and its disclosure control in
    one snapshot, stopped (503 ``report_timeout``) past ``timeout_ms`` on PostgreSQL; the
    threshold is the highest of the banks' (never below 5)."""
    threshold = max(5, *(b.suppression_threshold for b in banks))
    dialect = session.get_bind().dialect.name
    try:
        await _read_snapshot(session, timeout_ms)
        ctx = Ctx(session, banks, period, threshold, dialect, options)
        ctx.correct = bool(await session.scalar(q.later_writes(ctx.ids, period.as_of)))
        built = await (PUBLISHED if published else REPORTS)[name](ctx)
    except DBAPIError as exc:
        if sqlstate(exc) != QUERY_CANCELED:
            raise
        await session.rollback()
        raise ReportTimeout(
            f"The report took longer than {timeout_ms} ms and was stopped; "
            "try a shorter period, fewer time banks, or later"
        ) from exc
    built.disclosure.apply()
    return built, threshold


QUERY_CANCELED = "57014"  # PostgreSQL SQLSTATE, raised when statement_timeout expires
REPORT_WORK_MEM = "64MB"


async def _read_snapshot(session: AsyncSession, timeout_ms: int) -> None:
    """Every query of a report reads one snapshot, under a statement timeout (PostgreSQL;
    SQLite has none)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    if session.in_transaction():
        await session.commit()
    await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    await session.execute(text(f"SET LOCAL statement_timeout = {int(timeout_ms)}"))
    # report queries sort and hash tens of thousands of rollup rows: keep that in memory
    await session.execute(text(f"SET LOCAL work_mem = '{REPORT_WORK_MEM}'"))
