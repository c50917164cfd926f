"""A bank's home page: proposals waiting for a decision, the latest exchanges, members near
or past their limits — and the directory the name typeahead asks."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from litestar import Request, Response, get
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.console.base import Ctx, render, staff
from timebank.ledger import reads
from timebank.ledger.schemas import ExchangeOut
from timebank.members import search
from timebank.members.search import Person

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


def tells_apart(ctx: Ctx, person: Person) -> str:
    """What tells two people of one name apart on a list of choices: membership number,
    locality, year joined, a masked email ("M-0042 · Irvine · joined 2019 · s•••@example.org")."""
    _ = ctx.gettext
    parts = [
        person.external_ref,
        person.locality,
        _("joined %(year)s") % {"year": person.since} if person.since else None,
        person.email,
    ]
    return " · ".join(p for p in parts if p)


def choice(ctx: Ctx, person: Person) -> dict[str, str]:
    """A person as a choice on a form or in the typeahead."""
    return {
        "type": person.type,
        "id": str(person.id),
        "name": person.name,
        "hint": tells_apart(ctx, person),
    }


@get("/{tb:str}/directory", include_in_schema=False)
async def directory(
    request: Request[Any, Any, Any], db_session: AsyncSession, tb: str, q: str = ""
) -> Response[Any]:
    """Active members and organisations with a word of their name starting with each word of
    ``q``, folded ("sian llyr" finds Siân Llŷr), or whose membership number ``q`` is — the
    typeahead's JSON, with what tells two of one name apart."""
    ctx = await staff(request, db_session, tb)
    assert ctx.tb is not None
    text = q.strip()[:100]
    found = await search.starting(db_session, ctx.tb, text, 10) if text else []
    return Response([choice(ctx, p) for p in found], headers={"Cache-Control": "no-store"})
