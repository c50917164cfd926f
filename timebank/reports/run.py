"""Running a report: which figures (exact or published), in one snapshot of the database,
under the report statement timeout.

*Exact* figures (:mod:`timebank.reports.service`, broker and admin keys by default) carry
small-cell suppression with secondary suppression within the response; *published*
figures (:mod:`timebank.reports.published`, funder keys always, staff with
``?figures=published``) are cell-key perturbed and suppressed by population only.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.access import Principal, Role
from timebank.db import sqlstate, utcnow
from timebank.errors import NotFound, ReportTimeout
from timebank.reports import queries as q
from timebank.reports.cellkey import METHOD
from timebank.reports.periods import Period
from timebank.reports.published import PUBLISHED
from timebank.reports.service import DEFINITIONS_VERSION, REPORTS, Built, Ctx, Options
from timebank.timebanks.models import TimeBank

__all__ = [
    "METHOD",
    "banks_by_slug",
    "build",
    "build_many",
    "filename_of",
    "meta_of",
    "publishes",
    "threshold_of",
]


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
    found, threshold = await build_many(
        session, [(name, options)], banks, period, timeout_ms=timeout_ms, published=published
    )
    return found[0], threshold


def threshold_of(banks: list[TimeBank]) -> int:
    return max(5, *(b.suppression_threshold for b in banks))


async def build_many(
    session: AsyncSession,
    wanted: list[tuple[str, Options]],
    banks: list[TimeBank],
    period: Period,
    *,
    timeout_ms: int,
    published: bool = False,
) -> tuple[list[Built], int]:
    """Several reports over the same banks and period in one snapshot (as :func:`build`,
    in the order asked): the records they all read — a published report's members and
    legs of the period — are read once and shared (the console's dashboard)."""
    threshold = threshold_of(banks)
    dialect = session.get_bind().dialect.name
    out: list[Built] = []
    try:
        await _read_snapshot(session, timeout_ms)
        ids = [b.id for b in banks]
        correct = bool(await session.scalar(q.later_writes(ids, period.as_of)))
        memo: dict[str, Any] = {}
        for name, options in wanted:
            ctx = Ctx(session, banks, period, threshold, dialect, options, correct, memo)
            out.append(await (PUBLISHED if published else REPORTS)[name](ctx))
    except DBAPIError as exc:
        if sqlstate(exc) != QUERY_CANCELED:
            raise
        await session.rollback()
        raise ReportTimeout(
            f"The report took longer than {timeout_ms} ms and was stopped; "
            "try a shorter period, fewer time banks, or later"
        ) from exc
    for built in out:
        built.disclosure.apply()
    return out, threshold


def meta_of(
    name: str, banks: list[TimeBank], period: Period, threshold: int, *, published: bool
) -> dict[str, Any]:
    """What every rendering of a report starts with: what, which banks, when, how."""
    return {
        "report": name,
        "timebanks": [b.slug for b in banks],
        # ``to`` is the day after the period (exclusive) in every format; ``last_day`` its
        # last day (inclusive)
        "period": {
            "from": period.start.isoformat(),
            "to": period.end.isoformat(),
            "last_day": (period.end - timedelta(days=1)).isoformat(),
        },
        "as_of": period.as_of.isoformat(),
        "generated_at": utcnow().isoformat(),
        "definitions_version": DEFINITIONS_VERSION,
        "suppression_threshold": threshold,
        "perturbed": published,
        "method": METHOD if published else None,
    }


def filename_of(meta: dict[str, Any]) -> str:
    """A report file's name (no extension): report, banks and period."""
    return (
        f"{meta['report']}_{'+'.join(meta['timebanks'])}_"
        f"{meta['period']['from']}_{meta['period']['to']}"
    )


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
