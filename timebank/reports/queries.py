"""SQL building blocks shared by the reports. Everything is aggregated in the database; Python
only sees a handful of rows per report (one per category, per bucket, …), never one per
member or exchange.

Definitions (``definitions_version`` "1"): a **service exchange** is recorded, of kind
p2p/p2o/o2p/o2o, recorded by ``as_of`` and not reversed by a reversal recorded by
``as_of``. A **leg** is one posting of a service exchange (providers +, recipients −).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Date,
    Integer,
    Subquery,
    and_,
    case,
    cast,
    exists,
    extract,
    func,
    literal_column,
    not_,
    or_,
    select,
    union_all,
)
from sqlalchemy.orm import aliased

from timebank.ledger.models import (
    Exchange,
    ExchangeKind,
    ExchangeStatus,
    OwnerType,
    Posting,
)
from timebank.members.models import Member, MemberStatus

SERVICE_KINDS = (ExchangeKind.p2p, ExchangeKind.p2o, ExchangeKind.o2p, ExchangeKind.o2o)
POOL_KINDS = (ExchangeKind.pool_grant, ExchangeKind.pool_donation)


def counted(
    banks: list[uuid.UUID],
    start: date | None,
    end: date,
    as_of: datetime,
    kinds: tuple[ExchangeKind, ...] = SERVICE_KINDS,
    dialect: str = "postgresql",
) -> ColumnElement[bool]:
    """Exchanges of ``kinds`` that count: recorded by ``as_of``, occurred in [start, end),
    and not reversed by then (a reversal recorded later does not count yet). PostgreSQL
    hashes the few reversed ids once; SQLite probes the unique index on ``reverses``."""
    reversal = aliased(Exchange)
    not_reversed: ColumnElement[bool]
    if dialect == "postgresql":
        reversed_ids = select(reversal.reverses).where(
            reversal.reverses.is_not(None), reversal.recorded_at <= as_of
        )
        not_reversed = Exchange.id.not_in(reversed_ids)
    else:
        not_reversed = ~exists().where(
            reversal.reverses == Exchange.id, reversal.recorded_at <= as_of
        )
    conditions = [
        Exchange.timebank_id.in_(banks),
        Exchange.occurred_on < end,
        Exchange.status == ExchangeStatus.recorded,
        Exchange.kind.in_(kinds),
        Exchange.recorded_at <= as_of,
        not_reversed,
    ]
    if start is not None:
        conditions.append(Exchange.occurred_on >= start)
    return and_(*conditions)


# The kind of an exchange says whose accounts its sides are (a group's sides are each of one
# type, and the pool takes part only in simple exchanges), so a member's or an organisation's
# legs are found without reading accounts.
CREDITED = {
    OwnerType.member: (ExchangeKind.p2p, ExchangeKind.p2o, ExchangeKind.pool_grant),
    OwnerType.organisation: (ExchangeKind.o2p, ExchangeKind.o2o),
    None: SERVICE_KINDS,
}
DEBITED = {
    OwnerType.member: (ExchangeKind.p2p, ExchangeKind.o2p, ExchangeKind.pool_donation),
    OwnerType.organisation: (ExchangeKind.p2o, ExchangeKind.o2o),
    None: SERVICE_KINDS,
}


def legs(
    banks: list[uuid.UUID],
    start: date | None,
    end: date,
    as_of: datetime,
    owner: OwnerType | None = OwnerType.member,
    kinds: tuple[ExchangeKind, ...] = SERVICE_KINDS,
    dialect: str = "postgresql",
) -> Subquery:
    """The legs of counted exchanges on accounts of ``owner`` type (None: members and
    organisations, for service exchanges): exchange_id,
    account_id, minutes (signed: credited +, debited −), occurred_on, kind, category_id.

    A simple exchange names its two accounts on the exchange row; only group exchanges
    (``provider_account_id`` null) are read from their postings.
    """
    ok = counted(banks, start, end, as_of, kinds, dialect)
    credited = [k for k in kinds if k in CREDITED[owner]]
    debited = [k for k in kinds if k in DEBITED[owner]]
    common = (Exchange.occurred_on, Exchange.kind, Exchange.category_id)
    provider = select(
        Exchange.id.label("exchange_id"),
        Exchange.provider_account_id.label("account_id"),
        Exchange.minutes.label("minutes"),
        *common,
    ).where(ok, Exchange.provider_account_id.is_not(None), Exchange.kind.in_(credited))
    recipient = select(
        Exchange.id,
        Exchange.recipient_account_id,
        -Exchange.minutes,
        *common,
    ).where(ok, Exchange.recipient_account_id.is_not(None), Exchange.kind.in_(debited))
    group = (
        select(Posting.exchange_id, Posting.account_id, Posting.minutes, *common)
        .join(Posting, Posting.exchange_id == Exchange.id)
        .where(
            ok,
            Exchange.provider_account_id.is_(None),
            or_(
                and_(Posting.minutes > 0, Exchange.kind.in_(credited)),
                and_(Posting.minutes < 0, Exchange.kind.in_(debited)),
            ),
        )
    )
    return union_all(provider, recipient, group).subquery()


def per_account(leg: Subquery) -> Subquery:
    """One row per account: minutes given (credited), received (debited), exchanges."""
    return (
        select(
            leg.c.account_id,
            func.sum(case((leg.c.minutes > 0, leg.c.minutes), else_=0)).label("given"),
            func.sum(case((leg.c.minutes < 0, -leg.c.minutes), else_=0)).label("received"),
            func.count().label("exchanges"),
        )
        .group_by(leg.c.account_id)
        .subquery()
    )


def registered(banks: list[uuid.UUID], end: date, as_of: datetime) -> ColumnElement[bool]:
    """Registered member at ``end``: joined before it, not left or erased before it (an
    erasure sets ``left_on``), and known by ``as_of``."""
    return and_(
        Member.timebank_id.in_(banks),
        Member.joined_on < end,
        Member.created_at <= as_of,
        or_(Member.left_on.is_(None), Member.left_on >= end),
        not_(and_(Member.status == MemberStatus.erased, Member.left_on.is_(None))),
    )


def consenting() -> ColumnElement[bool]:
    """Members whose data may feed demographic figures: consent given, never erased."""
    return and_(Member.statistics_consent.is_(True), Member.status != MemberStatus.erased)


def month_index(column: Any) -> ColumnElement[int]:
    return cast(extract("year", column), Integer) * 12 + cast(extract("month", column), Integer) - 1


def day_of(column: Any) -> ColumnElement[int]:
    return cast(extract("day", column), Integer)


def before_months_after(later: Any, earlier: Any, months: int) -> ColumnElement[bool]:
    """``later`` < ``earlier`` + ``months`` months, by the rule of :mod:`periods` (a missing
    day rolls to the next 1st): compare (month index, day) pairs, no date arithmetic."""
    gap = month_index(later) - month_index(earlier)
    return or_(gap < months, and_(gap == months, day_of(later) < day_of(earlier)))


def bucket(dialect: str, interval: str, column: Any) -> ColumnElement[Any]:
    """The first day of the week (Monday), month or quarter holding ``column``."""
    if dialect == "postgresql":
        return cast(func.date_trunc(interval, column), Date)
    if interval == "month":
        return func.date(column, "start of month")
    if interval == "week":
        return func.date(column, "-6 days", "weekday 1")
    back = (cast(func.strftime("%m", column), Integer) - 1) % 3
    return func.date(column, "start of month", func.printf("-%d months", back))


def year_after(dialect: str, column: Any) -> ColumnElement[Any]:
    """The last day a service exchange on ``column`` keeps a member active: the same day
    twelve months later (28 February for 29 February)."""
    if dialect == "postgresql":
        return cast(column + literal_column("INTERVAL '12 months'"), Date)
    leap = case((func.strftime("%m-%d", column) == "02-29", "-1 day"), else_="+0 days")
    return func.date(column, leap, "+12 months")


def as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])
