"""Report periods: ``from`` (inclusive) and ``to`` (exclusive) on ``occurred_on``, and
``as_of``, the instant after which nothing recorded counts.

Month arithmetic has one rule everywhere (periods, "the 12 months before ``to``",
"within 3 months of joining"): moving a date by N months keeps its day of the month, and
when that day does not exist in the target month the first day of the following month is
used (30 November + 3 months = 1 March; 29 February − 12 months = 1 March). The same rule is applied in SQL by comparing
(month index, day) pairs, so no database date arithmetic can disagree with it.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from timebank.access import Principal, Role
from timebank.db import utcnow
from timebank.errors import InvalidInput
from timebank.timebanks.models import TimeBank
from timebank.timebanks.service import EARLIEST_DATE, today

LATEST = date(2200, 1, 1)


@dataclass(frozen=True)
class Period:
    start: date  # inclusive
    end: date  # exclusive
    as_of: datetime


def add_months(d: date, months: int) -> date:
    """``d`` moved by ``months``; a day missing in the target month rolls to the next 1st."""
    index = d.year * 12 + d.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    last = calendar.monthrange(year, month)[1]
    if d.day <= last:
        return date(year, month, d.day)
    return date(year, month, last) + timedelta(days=1)


def month_index(d: date) -> int:
    return d.year * 12 + d.month - 1


def first_of_month(d: date) -> date:
    return d.replace(day=1)


def resolve_period(
    principal: Principal,
    banks: list[TimeBank],
    start: date | None,
    end: date | None,
    as_of: datetime | None,
) -> Period:
    """``to`` defaults to the first of next month (in the first bank's time zone), ``from``
    to ``to`` − 12 months. Funder periods must start and end on the 1st of a month, so
    near-identical periods can't be differenced; for the same reason a funder's ``as_of``
    is taken to the start of its UTC day (and defaults to the start of today)."""
    end = end or add_months(first_of_month(today(banks[0])), 1)
    start = start or add_months(end, -12)
    for name, value in (("from", start), ("to", end)):
        if not EARLIEST_DATE <= value <= LATEST:
            raise InvalidInput(name, f"must be between {EARLIEST_DATE} and {LATEST}")
    if start >= end:
        raise InvalidInput("from", "must be before to")
    funder = principal.role is Role.funder
    if funder:
        for name, value in (("from", start), ("to", end)):
            if value.day != 1:
                raise InvalidInput(name, "funder reports use whole months: give the 1st")
    now = utcnow()
    if as_of is None:
        as_of = now
    elif as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=UTC)
    as_of = min(as_of.astimezone(UTC), now)
    if funder:
        as_of = datetime.combine(as_of.date(), time(0), tzinfo=UTC)
    return Period(start, end, as_of)
