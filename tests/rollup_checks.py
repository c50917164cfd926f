"""The report rollups must equal a recomputation from the postings (the ledger's own
invariants: ``tests.test_concurrency._assert_ledger_consistent``)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import date

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from timebank.ledger.models import Exchange, ExchangeStatus, Posting
from timebank.ledger.rules import SERVICE_KINDS
from timebank.reports.models import ActivityMonth
from timebank.reports.rollups import rollup_mismatches


async def assert_rollups_ok(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        found = await rollup_mismatches(conn)
    assert not any(found.values()), {k: v for k, v in found.items() if v}


async def assert_activity_rollup_matches_a_recount(session: AsyncSession, tb_id: uuid.UUID) -> None:
    """The bank's ``activity_months`` against a naive Python recount of its postings —
    independent of the SQL recomputation (which a bulk load also uses to build them)."""
    exchanges = (
        await session.execute(
            select(
                Exchange.id, Exchange.status, Exchange.kind, Exchange.occurred_on, Exchange.reverses
            ).where(Exchange.timebank_id == tb_id)
        )
    ).all()
    reversed_ = {e.reverses for e in exchanges if e.reverses is not None}
    counted = {
        e.id: e.occurred_on.replace(day=1)
        for e in exchanges
        if e.status is ExchangeStatus.recorded and e.kind in SERVICE_KINDS and e.id not in reversed_
    }
    want: dict[tuple[date, uuid.UUID], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    postings = (await session.execute(select(Posting).order_by(Posting.id))).scalars().all()
    by_exchange: dict[uuid.UUID, list[Posting]] = defaultdict(list)
    for p in postings:
        if p.exchange_id in counted:
            by_exchange[p.exchange_id].append(p)
    for ex_id, legs in by_exchange.items():
        month = counted[ex_id]
        leader = next(p.account_id for p in legs if p.minutes > 0)
        for account in {p.account_id for p in legs}:
            row = want[(month, account)]
            row[0] += 1
            row[1] += account == leader
            row[2] += sum(p.minutes for p in legs if p.account_id == account and p.minutes > 0)
            row[3] -= sum(p.minutes for p in legs if p.account_id == account and p.minutes < 0)
    stored = {
        (r.month, r.account_id): [r.exchanges, r.led, r.given_minutes, r.received_minutes]
        for r in (
            await session.execute(select(ActivityMonth).where(ActivityMonth.timebank_id == tb_id))
        ).scalars()
    }
    assert want, "no service exchanges to count"
    assert stored == dict(want)
