from __future__ import annotations

from datetime import date

from litestar import get
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.access import Principal, Role
from timebank.audit import service
from timebank.audit.schemas import AuditEventOut
from timebank.timebanks.service import get_by_slug
from timebank.web.pagination import LimitParam, Page, check_limit, page, seq_cursor
from timebank.web.problems import problems


@get(
    "/v1/timebanks/{tb:str}/audit-events",
    tags=["audit"],
    responses=problems(403, 404, 422),
    summary="Audit events of a time bank (admin)",
    description="One event per write: who (key id and role), what (action), target, when, "
    "request id, and the reason for overrides and reversals. Ids and field names only.",
    operation_id="listAuditEvents",
)
async def audit_events(
    db_session: AsyncSession,
    principal: Principal,
    tb: str,
    action: str | None = Parameter(default=None, max_length=64),
    target: str | None = Parameter(default=None, max_length=64),
    date_from: date | None = Parameter(query="from", default=None),
    date_to: date | None = Parameter(query="to", default=None),
    limit: int | None = LimitParam,
    cursor: str | None = None,
) -> Page[AuditEventOut]:
    bank = await get_by_slug(db_session, principal, tb)
    principal.require(bank.id, Role.admin)
    n = check_limit(limit)
    rows = await service.list_events(
        db_session,
        principal,
        bank.id,
        action=action,
        target=target,
        date_from=date_from,
        date_to=date_to,
        after=seq_cursor(cursor),
        limit=n,
    )
    items, nxt = page(rows, n, lambda e: e.id)
    return Page(items=[AuditEventOut.model_validate(e) for e in items], next_cursor=nxt)
