"""SQL building blocks shared by the reports. Everything is aggregated in the database; Python
only sees a handful of rows per report (one per category, per bucket, …), never one per
member or exchange.

Definitions (``definitions_version`` "1"): a **service exchange** is recorded, of kind
p2p/p2o/o2p/o2o, recorded by ``as_of`` and not reversed by a reversal recorded by
``as_of``. A **leg** is one posting of a service exchange (providers +, recipients −).

Two sources give the same figures. The **legs** (:func:`legs`) are read from the exchanges
and postings for any period. The **rollups** (:func:`activity_rows`, :func:`category_rows`:
per account and month, maintained by the database) serve periods of whole months, which is
what funders must ask for and what the default period is; they hold every service exchange
not reversed *now*, so for an earlier ``as_of`` they are corrected by the few exchanges
recorded, or reversed, after it (:func:`_corrections`).
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
    Account,
    Exchange,
    ExchangeKind,
    ExchangeStatus,
    OwnerType,
    Posting,
)
from timebank.ledger.rules import SERVICE_KINDS
from timebank.members.models import Member, MemberStatus
from timebank.reports.models import ActivityMonth, CategoryMonth


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


def whole_months(start: date | None, end: date) -> bool:
    """Whether [start, end) is made of whole months, so the rollups can serve it."""
    return end.day == 1 and (start is None or start.day == 1)


def _corrections(
    banks: list[uuid.UUID],
    start: date | None,
    end: date,
    as_of: datetime,
    dialect: str,
    by_category: bool,
) -> Any:
    """Legs by which the rollups differ from the ledger as of ``as_of``: exchanges recorded
    after it, which the rollups hold (sign −1), and exchanges recorded by then but reversed
    after it, which the rollups no longer hold (sign +1). Both are found from the recent end
    of the (timebank, status, recorded_at) index, so they cost little for a recent
    ``as_of``; shaped like the rollup rows."""
    reversal = aliased(Exchange)
    in_period = [
        Exchange.timebank_id.in_(banks),
        Exchange.status == ExchangeStatus.recorded,
        Exchange.kind.in_(SERVICE_KINDS),
        Exchange.occurred_on < end,
    ]
    if start is not None:
        in_period.append(Exchange.occurred_on >= start)
    late: Any = select(Exchange.id.label("exchange_id"), literal_column("-1").label("sign")).where(
        *in_period,
        Exchange.recorded_at > as_of,
        ~exists().where(reversal.reverses == Exchange.id),
    )
    undone: Any = (
        select(Exchange.id.label("exchange_id"), literal_column("1").label("sign"))
        .join(reversal, reversal.reverses == Exchange.id)
        .where(
            *in_period,
            Exchange.recorded_at <= as_of,
            reversal.timebank_id.in_(banks),
            reversal.status == ExchangeStatus.recorded,
            reversal.recorded_at > as_of,
        )
    )
    changed = union_all(late, undone).subquery()
    lead = func.min(case((Posting.minutes > 0, Posting.id), else_=None)).over(
        partition_by=Posting.exchange_id
    )
    legs = (
        select(
            Posting.account_id,
            Account.owner_type,
            bucket(dialect, "month", Exchange.occurred_on).label("month"),
            Exchange.category_id,
            Exchange.kind,
            changed.c.sign,
            case((Posting.id == lead, changed.c.sign), else_=0).label("led"),
            (changed.c.sign * case((Posting.minutes > 0, Posting.minutes), else_=0)).label("given"),
            (changed.c.sign * case((Posting.minutes < 0, -Posting.minutes), else_=0)).label(
                "received"
            ),
        )
        .select_from(changed)
        .join(Exchange, Exchange.id == changed.c.exchange_id)
        .join(Posting, Posting.exchange_id == Exchange.id)
        .join(Account, Account.id == Posting.account_id)
    ).subquery()
    keys = [legs.c.account_id, legs.c.owner_type, legs.c.month]
    if by_category:
        keys += [legs.c.category_id, legs.c.kind]
    return select(
        *keys,
        legs.c.sign.label("exchanges"),
        legs.c.led,
        legs.c.given,
        legs.c.received,
    )


def later_writes(banks: list[uuid.UUID], as_of: datetime) -> Any:
    """Whether anything was recorded in these banks after ``as_of`` — if not, the rollups
    need no correction (one probe of the recorded_at index)."""
    return select(
        exists().where(
            Exchange.timebank_id.in_(banks),
            Exchange.status == ExchangeStatus.recorded,
            Exchange.recorded_at > as_of,
        )
    )


def _rollup(rollup: Any, fixes: Any, correct: bool) -> Subquery:
    rows: Any = union_all(rollup, fixes) if correct else rollup
    subquery: Subquery = rows.subquery()
    return subquery


def activity_rows(
    banks: list[uuid.UUID],
    start: date | None,
    end: date,
    as_of: datetime,
    dialect: str,
    correct: bool,
) -> Subquery:
    """Per account and month of [start, end) (whole months), as of ``as_of``: account_id,
    month, owner_type, exchanges, led, given, received. Without ``correct`` (nothing
    recorded after ``as_of``) one row per account and month, each with exchanges > 0; with
    it, correction rows follow, so sum by what you need and keep sums of exchanges > 0."""
    return _month_rows(banks, start, end, as_of, dialect, correct, by_category=False)


def category_rows(
    banks: list[uuid.UUID],
    start: date | None,
    end: date,
    as_of: datetime,
    dialect: str,
    correct: bool,
) -> Subquery:
    """As :func:`activity_rows`, by category_id and kind too."""
    return _month_rows(banks, start, end, as_of, dialect, correct, by_category=True)


def _month_rows(
    banks: list[uuid.UUID],
    start: date | None,
    end: date,
    as_of: datetime,
    dialect: str,
    correct: bool,
    *,
    by_category: bool,
) -> Subquery:
    r: type[ActivityMonth] | type[CategoryMonth] = CategoryMonth if by_category else ActivityMonth
    conditions = [r.timebank_id.in_(banks), r.month < end]
    if start is not None:
        conditions.append(r.month >= start)
    keys = [CategoryMonth.category_id, CategoryMonth.kind] if by_category else []
    rollup = select(
        r.account_id,
        r.owner_type,
        r.month,
        *keys,
        r.exchanges,
        r.led,
        r.given_minutes.label("given"),
        r.received_minutes.label("received"),
    ).where(*conditions)
    fixes = _corrections(banks, start, end, as_of, dialect, by_category=by_category)
    return _rollup(rollup, fixes, correct)


def per_account_rollup(rows: Subquery, owner: OwnerType | None) -> Subquery:
    """Rollup rows to the shape of :func:`per_account`: accounts of ``owner`` type (None:
    members and organisations) with at least one counted exchange."""
    stmt = select(
        rows.c.account_id,
        func.sum(rows.c.given).label("given"),
        func.sum(rows.c.received).label("received"),
        func.sum(rows.c.exchanges).label("exchanges"),
    )
    if owner is not None:
        stmt = stmt.where(rows.c.owner_type == owner)
    return stmt.group_by(rows.c.account_id).having(func.sum(rows.c.exchanges) > 0).subquery()


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
