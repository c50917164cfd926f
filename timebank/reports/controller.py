from __future__ import annotations

from datetime import date, datetime
from typing import Any

from litestar import get
from litestar.params import Parameter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.auth.principal import Principal
from timebank.db import utcnow
from timebank.errors import InvalidInput, NotFound, problems
from timebank.reports import service
from timebank.timebanks.models import TimeBank
from timebank.timebanks.service import get_by_slug

REPORT_DOC = (
    "Impact statistics over service exchanges (recorded, not reversed). `from` inclusive, "
    "`to` exclusive, on occurred_on; funder keys must use the first of a month. `as_of` counts "
    "only what was recorded by then. Figures over fewer people than the suppression threshold "
    "are null and named in `suppressed`."
)


async def _report(
    session: AsyncSession,
    principal: Principal,
    banks: list[TimeBank],
    name: str,
    date_from: date | None,
    date_to: date | None,
    as_of: datetime | None,
) -> dict[str, Any]:
    build = service.REPORTS.get(name)
    if build is None:
        raise NotFound(f"No report '{name}'")
    for bank in banks:
        principal.require(bank.id, *service.REPORT_ROLES)
    period = service.resolve_period(principal, banks, date_from, date_to, as_of)
    threshold = max(b.suppression_threshold for b in banks)
    figures = await build(session, banks, period, threshold)
    return {
        "report": name,
        "timebanks": [b.slug for b in banks],
        "period": {"from": period.start.isoformat(), "to": period.end.isoformat()},
        "as_of": period.as_of.isoformat(),
        "generated_at": utcnow().isoformat(),
        "definitions_version": service.DEFINITIONS_VERSION,
        "suppression_threshold": threshold,
        **figures,
    }


@get(
    "/v1/timebanks/{tb:str}/reports/{name:str}",
    tags=["reports"],
    responses=problems(403, 404, 422),
    summary="A report for one time bank (funder, broker, admin)",
    description=REPORT_DOC,
)
async def timebank_report(
    db_session: AsyncSession,
    principal: Principal,
    tb: str,
    name: str,
    date_from: date | None = Parameter(query="from", default=None),
    date_to: date | None = Parameter(query="to", default=None),
    as_of: datetime | None = None,
) -> dict[str, Any]:
    bank = await get_by_slug(db_session, principal, tb)
    return await _report(db_session, principal, [bank], name, date_from, date_to, as_of)


@get(
    "/v1/reports/{name:str}",
    tags=["reports"],
    responses=problems(403, 404, 422),
    summary="A report across time banks (`?timebank=a&timebank=b`)",
    description=REPORT_DOC + " Cross-bank reports use the highest threshold involved.",
)
async def cross_bank_report(
    db_session: AsyncSession,
    principal: Principal,
    name: str,
    timebank: list[str] = Parameter(query="timebank"),
    date_from: date | None = Parameter(query="from", default=None),
    date_to: date | None = Parameter(query="to", default=None),
    as_of: datetime | None = None,
) -> dict[str, Any]:
    slugs = list(dict.fromkeys(timebank))
    if not slugs or len(slugs) > 50:
        raise InvalidInput("timebank", "give 1 to 50 time banks")
    found = {
        b.slug: b
        for b in (
            await db_session.execute(select(TimeBank).where(TimeBank.slug.in_(slugs)))
        ).scalars()
    }
    missing = [s for s in slugs if s not in found]
    if missing:
        raise NotFound(f"No time bank '{missing[0]}'")
    return await _report(
        db_session, principal, [found[s] for s in slugs], name, date_from, date_to, as_of
    )
