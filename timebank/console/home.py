"""A bank's home page: proposals waiting for a decision, the latest exchanges, members near
or past their limits — and the directory the name typeahead asks."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from litestar import Request, Response, get
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.console.base import render, staff
from timebank.ledger import reads
from timebank.ledger.schemas import ExchangeOut
from timebank.members.service import directory as directory_of

NEAR_MARGIN = 120  # minutes: "near" a limit is within two hours of it


@dataclass
class Party:
    type: str
    id: uuid.UUID
    name: str


@dataclass
class Row:
    """An exchange as a line of a table: who gave, who received, how long."""

    exchange: ExchangeOut
    providers: list[Party]
    recipients: list[Party]


async def rows_of(session: AsyncSession, exchanges: list[ExchangeOut]) -> list[Row]:
    accounts: set[uuid.UUID] = set()
    for e in exchanges:
        accounts.update(p.account_id for p in e.postings)
        accounts.update(a for a in (e.provider_account_id, e.recipient_account_id) if a)
    names = await reads.owner_names(session, accounts)

    def party(account_id: uuid.UUID) -> Party:
        t, i, n = names.get(account_id, ("pool", account_id, "?"))
        return Party(t, i, n)

    out = []
    for e in exchanges:
        if e.provider_account_id and e.recipient_account_id:
            providers, recipients = [e.provider_account_id], [e.recipient_account_id]
        else:
            providers = [p.account_id for p in e.postings if p.minutes > 0]
            recipients = [p.account_id for p in e.postings if p.minutes < 0]
        out.append(Row(e, [party(a) for a in providers], [party(a) for a in recipients]))
    return out


@get("/{tb:str}", include_in_schema=False)
async def home(request: Request[Any, Any, Any], db_session: AsyncSession, tb: str) -> Response[str]:
    ctx = await staff(request, db_session, tb)
    assert ctx.tb is not None
    p = ctx.principal
    waiting = await reads.recent(db_session, p, ctx.tb, pending=True, limit=10)
    latest = await reads.recent(db_session, p, ctx.tb, pending=False, limit=10)
    near = await reads.near_limits(db_session, p, ctx.tb, margin=NEAR_MARGIN, limit=10)
    return render(
        ctx,
        "home.html",
        section="home",
        waiting=await rows_of(db_session, waiting),
        latest=await rows_of(db_session, latest),
        near=near,
    )


@get("/{tb:str}/directory", include_in_schema=False)
async def directory(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str, q: str = ""
) -> Response[Any]:
    """Active members and organisations whose name contains ``q`` (the typeahead's JSON)."""
    ctx = await staff(request, db_session, tb)
    assert ctx.tb is not None
    found = await directory_of(db_session, ctx.tb, q.strip()[:100] or None, None, 10)
    return Response(
        [{"type": t, "id": str(i), "name": n} for t, i, n in found[:10]],
        headers={"Cache-Control": "no-store"},
    )
