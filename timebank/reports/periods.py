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


LATTICE = (
    "published figures cover one calendar month, one calendar quarter, one April–March "
    "financial year or one calendar year: from its first day to the first day after it "
    "(e.g. from=2026-07-01&to=2026-10-01)"
)


def on_lattice(start: date, end: date) -> bool:
    """Whether [start, end) is a calendar month, calendar quarter, April–March year or
    calendar year (SPEC §7.3): overlapping periods cannot then be differenced."""
    if start.day != 1:
        return False
    if end == add_months(start, 1):
        return True
    if end == add_months(start, 3):
        return start.month in (1, 4, 7, 10)
    return end == add_months(start, 12) and start.month in (1, 4)


def last_complete_quarter(today: date) -> tuple[date, date]:
    end = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
    return add_months(end, -3), end


def resolve_period(
    principal: Principal,
    banks: list[TimeBank],
    start: date | None,
    end: date | None,
    as_of: datetime | None,
    *,
    published: bool = False,
    now: datetime | None = None,
) -> Period:
    """``to`` defaults to the first of next month (in the first bank's time zone), ``from``
    to ``to`` − 12 months. Published figures (funder keys always) use lattice periods only,
    by default the last complete quarter, and their ``as_of`` is taken to the start of its
    UTC day (default: the start of today), so near-identical questions cannot be
    differenced and noise cannot be averaged away. ``now``: the caller's clock (the
    console's, which tests set), else the wall clock."""
    published = published or principal.role is Role.funder
    if published and start is None and end is None:
        start, end = last_complete_quarter(today(banks[0]))
    end = end or add_months(first_of_month(today(banks[0])), 1)
    if not EARLIEST_DATE <= end <= LATEST:  # before ``from`` is taken from it (year 0)
        raise InvalidInput("to", f"must be between {EARLIEST_DATE} and {LATEST}")
    start = start or add_months(end, -12)
    for name, value in (("from", start), ("to", end)):
        if not EARLIEST_DATE <= value <= LATEST:
            raise InvalidInput(name, f"must be between {EARLIEST_DATE} and {LATEST}")
    if start >= end:
        raise InvalidInput("from", "must be before to")
    if published and not on_lattice(start, end):
        raise InvalidInput("from", LATTICE, ("to", LATTICE))
    now = now or utcnow()
    if as_of is None:
        as_of = now
    elif as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=UTC)
    as_of = min(as_of.astimezone(UTC), now)
    if published:
        as_of = datetime.combine(as_of.date(), time(0), tzinfo=UTC)
    return Period(start, end, as_of)
