"""Impact reports. Figures are computed in SQL over *service exchanges* (recorded, p2p/p2o/
o2p/o2o, not reversed); any figure over fewer people than the suppression threshold is
withheld. This module holds the period rules, the access rules and the ``summary`` report;
the "Funder reports" issue adds the rest."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, distinct, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from timebank.auth.models import Role
from timebank.auth.principal import Principal
from timebank.db import utcnow
from timebank.errors import InvalidInput
from timebank.ledger.models import (
    Account,
    Exchange,
    ExchangeKind,
    ExchangeStatus,
    OwnerType,
    Posting,
)
from timebank.timebanks.models import TimeBank
from timebank.timebanks.service import today

DEFINITIONS_VERSION = "1"
REPORT_ROLES = (Role.admin, Role.broker, Role.funder)
SERVICE_KINDS = (ExchangeKind.p2p, ExchangeKind.p2o, ExchangeKind.o2p, ExchangeKind.o2o)


@dataclass(frozen=True)
class Period:
    start: date  # inclusive
    end: date  # exclusive
    as_of: datetime


def _add_months(d: date, months: int) -> date:
    index = d.year * 12 + d.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def resolve_period(
    principal: Principal,
    banks: list[TimeBank],
    start: date | None,
    end: date | None,
    as_of: datetime | None,
) -> Period:
    """``to`` defaults to the first of next month, ``from`` to ``to`` − 12 months. Funder
    periods must fall on the first of a month, so near-identical periods can't be differenced."""
    first_next = _add_months(today(banks[0]).replace(day=1), 1)
    end = end or first_next
    if start is None:
        back = _add_months(end.replace(day=1), -12)
        start = back.replace(day=min(end.day, 28))
    if start >= end:
        raise InvalidInput("from", "must be before to")
    if principal.role is Role.funder:
        for name, value in (("from", start), ("to", end)):
            if value.day != 1:
                raise InvalidInput(name, "funder reports use whole months: give the 1st")
    now = utcnow()
    if as_of is None:
        as_of = now
    elif as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=UTC)
    return Period(start, end, min(as_of, now))


def service_exchanges(banks: list[uuid.UUID], period: Period) -> ColumnElement[bool]:
    """The §3.7 definition, as of ``period.as_of``: a reversal recorded later does not count."""
    reversal = aliased(Exchange)
    return and_(
        Exchange.timebank_id.in_(banks),
        Exchange.status == ExchangeStatus.recorded,
        Exchange.kind.in_(SERVICE_KINDS),
        Exchange.occurred_on >= period.start,
        Exchange.occurred_on < period.end,
        Exchange.recorded_at <= period.as_of,
        ~exists().where(reversal.reverses == Exchange.id, reversal.recorded_at <= period.as_of),
    )


def hours(minutes: int | None) -> float | None:
    return None if minutes is None else round(minutes / 60, 2)


async def summary(
    session: AsyncSession, banks: list[TimeBank], period: Period, threshold: int
) -> dict[str, Any]:
    ids = [b.id for b in banks]
    svc = service_exchanges(ids, period)
    count, minutes = (
        await session.execute(
            select(func.count(), func.coalesce(func.sum(Exchange.minutes), 0)).where(svc)
        )
    ).one()
    by_owner = dict(
        (
            await session.execute(
                select(Account.owner_type, func.count(distinct(Account.id)))
                .select_from(Posting)
                .join(Exchange, Exchange.id == Posting.exchange_id)
                .join(Account, Account.id == Posting.account_id)
                .where(svc)
                .group_by(Account.owner_type)
            )
        )
        .tuples()
        .all()
    )
    members = int(by_owner.get(OwnerType.member, 0))
    pool: dict[str, dict[str, Any]] = {}
    for kind in (ExchangeKind.pool_grant, ExchangeKind.pool_donation):
        reversal = aliased(Exchange)
        n, m = (
            await session.execute(
                select(func.count(), func.coalesce(func.sum(Exchange.minutes), 0)).where(
                    Exchange.timebank_id.in_(ids),
                    Exchange.status == ExchangeStatus.recorded,
                    Exchange.kind == kind,
                    Exchange.occurred_on >= period.start,
                    Exchange.occurred_on < period.end,
                    Exchange.recorded_at <= period.as_of,
                    ~exists().where(
                        reversal.reverses == Exchange.id, reversal.recorded_at <= period.as_of
                    ),
                )
            )
        ).one()
        pool[f"{kind.value}s"] = {"count": int(n), "minutes": int(m), "hours": hours(int(m))}
    suppressed = members < threshold
    return {
        "exchanges": int(count),
        "minutes": int(minutes),
        "hours": hours(int(minutes)),
        "participating_members": None if suppressed else members,
        "participating_organisations": int(by_owner.get(OwnerType.organisation, 0)),
        **pool,
        "suppressed": ["participating_members"] if suppressed else [],
    }


REPORTS = {"summary": summary}
