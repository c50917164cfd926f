"""Impact reports (SPEC §3.7), computed in SQL over *service exchanges* (recorded,
p2p/p2o/o2p/o2o, not reversed), with disclosure control on every figure.

Each report builds cells (figures over one population of people) and the linear relations
between them; :mod:`timebank.reports.disclosure` then suppresses what would identify fewer
than ``suppression_threshold`` people, and :mod:`timebank.reports.render` turns the result
into JSON, CSV or XLSX. Definitions are in ``docs/reports.md``; figures carry
``definitions_version`` so a change of definition is visible.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    String,
    and_,
    case,
    cast,
    distinct,
    extract,
    func,
    literal,
    select,
    union,
)
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.access import Role
from timebank.errors import InvalidInput
from timebank.ledger.models import Exchange, ExchangeKind, OwnerType
from timebank.ledger.rules import POOL_KINDS, SERVICE_KINDS
from timebank.members.models import Disability, Ethnicity, Gender, Member
from timebank.organisations.models import Organisation, OrganisationStatus
from timebank.reports import queries as q
from timebank.reports.disclosure import Cell, Chain, Disclosure
from timebank.reports.periods import Period, add_months, first_of_month
from timebank.reports.periods import month_index as month_number
from timebank.timebanks.models import Category, TimeBank

DEFINITIONS_VERSION = "1"
REPORT_ROLES = (Role.admin, Role.broker, Role.funder)
INTERVALS = ("week", "month", "quarter")
DIMENSIONS = ("age_band", "gender", "disability", "ethnicity")
MAX_BUCKETS = 600
NOT_STATED = "not_stated"

# The default valuation rate: the UK National Living Wage for workers aged 21 and over,
# £12.71 an hour from 1 April 2026 (GOV.UK, "National Minimum Wage and National Living Wage
# rates"; Low Pay Commission recommendation accepted November 2025).
DEFAULT_RATE_PENCE = 1271
DEFAULT_RATE_SOURCE = (
    "UK National Living Wage (workers aged 21 and over), £12.71 per hour from 1 April 2026 "
    "— GOV.UK, 'National Minimum Wage and National Living Wage rates'"
)
DEFAULT_RATE_DATE = "2026-04-01"
VALUATION = (
    "Replacement-cost valuation: service hours × an hourly wage rate, i.e. what the same "
    "hours would have cost at that rate. It is not a social return on investment (SROI) and "
    "does not measure outcomes."
)


@dataclass(frozen=True)
class Options:
    interval: str = "month"
    dimension: str | None = None
    rate_pence_per_hour: int | None = None


@dataclass
class Share:
    """A share derived from two cells' figures; withheld if either cell is."""

    name: str
    num: Cell
    num_figure: str
    den: Cell
    den_figure: str


Item = Cell | Share


@dataclass
class Built:
    """A report before rendering: parameters, top-level figures and rows."""

    disclosure: Disclosure
    params: dict[str, Any] = field(default_factory=dict)
    scalars: list[Item] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    rows: list[tuple[dict[str, Any], list[Item]]] = field(default_factory=list)


@dataclass
class Ctx:
    session: AsyncSession
    banks: list[TimeBank]
    period: Period
    threshold: int
    dialect: str
    options: Options
    correct: bool = True  # rollups need correcting: something was recorded after as_of
    memo: dict[str, Any] = field(default_factory=dict)

    @property
    def ids(self) -> list[uuid.UUID]:
        return [b.id for b in self.banks]

    def built(self, keys: list[str] | None = None, *, by_population: bool = False) -> Built:
        return Built(Disclosure(self.threshold, by_population), keys=keys or [])

    def legs(
        self,
        start: date | None = None,
        end: date | None = None,
        owner: OwnerType | None = OwnerType.member,
        kinds: tuple[ExchangeKind, ...] = SERVICE_KINDS,
        *,
        whole_period: bool = True,
    ) -> Any:
        p = self.period
        return q.legs(
            self.ids,
            (p.start if whole_period else None) if start is None else start,
            end or p.end,
            p.as_of,
            owner,
            kinds,
            self.dialect,
        )

    def counted(self, kinds: tuple[ExchangeKind, ...] = SERVICE_KINDS) -> Any:
        p = self.period
        return q.counted(self.ids, p.start, p.end, p.as_of, kinds, self.dialect)

    @property
    def whole_months(self) -> bool:
        return q.whole_months(self.period.start, self.period.end)

    def activity_rows(self, start: date | None, end: date) -> Any:
        """Rollup rows per account and month of [start, end) (whole months; start None:
        since ever)."""
        p = self.period
        return q.activity_rows(self.ids, start, end, p.as_of, self.dialect, self.correct)

    def category_rows(self) -> Any:
        p = self.period
        return q.category_rows(self.ids, p.start, p.end, p.as_of, self.dialect, self.correct)

    def per_account(
        self,
        start: date | None = None,
        end: date | None = None,
        owner: OwnerType | None = OwnerType.member,
    ) -> Any:
        """Per account with a counted exchange in [start, end) (default: the period):
        account_id, given, received, exchanges — from the rollups for whole months."""
        start = self.period.start if start is None else start
        end = end or self.period.end
        if q.whole_months(start, end):
            return q.per_account_rollup(self.activity_rows(start, end), owner)
        return q.per_account(self.legs(start, end, owner))

    def member_days(self, start: date | None, end: date, *, months: bool) -> Any:
        """Distinct (account_id, d) of members' service exchanges in [start, end) (start
        None: since ever): d is the day, or with ``months`` the first of its month (from
        the rollups when the range is whole months)."""
        if months and q.whole_months(start, end):
            rows = self.activity_rows(start, end)
            stmt = select(rows.c.account_id, rows.c.month.label("d")).where(
                rows.c.owner_type == OwnerType.member
            )
            if self.correct:  # corrections follow: net them out per account and month
                stmt = stmt.group_by(rows.c.account_id, rows.c.month).having(
                    func.sum(rows.c.exchanges) > 0
                )
            return stmt.subquery()
        leg = self.legs(start, end, whole_period=start is not None)
        day = q.bucket(self.dialect, "month", leg.c.occurred_on) if months else leg.c.occurred_on
        return select(leg.c.account_id, day.label("d")).distinct().subquery()

    async def rows(self, stmt: Any) -> list[Any]:
        return list((await self.session.execute(stmt)).all())

    async def one(self, stmt: Any) -> Any:
        return (await self.session.execute(stmt)).one()


def hours(minutes: int) -> float:
    return round(minutes / 60, 2)


def share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def activity_figures(exchanges: int, minutes: int) -> dict[str, Any]:
    return {"exchanges": exchanges, "minutes": minutes, "hours": hours(minutes)}


# --- shared figures -------------------------------------------------------------------------


async def service_totals(ctx: Ctx) -> tuple[int, int]:
    if "totals" not in ctx.memo:
        if ctx.whole_months:
            rows = ctx.activity_rows(ctx.period.start, ctx.period.end)
            stmt = select(
                func.coalesce(func.sum(rows.c.led), 0), func.coalesce(func.sum(rows.c.given), 0)
            )
        else:
            stmt = select(func.count(), func.coalesce(func.sum(Exchange.minutes), 0)).where(
                ctx.counted()
            )
        n, m = await ctx.one(stmt)
        ctx.memo["totals"] = (int(n), int(m))
    totals: tuple[int, int] = ctx.memo["totals"]
    return totals


async def participants(ctx: Ctx) -> int:
    """Participating members: with a leg in a service exchange of the period."""
    if "member_hours" in ctx.memo:
        return (await member_hours(ctx)).members
    if "participants" not in ctx.memo:
        pa = ctx.per_account()
        ctx.memo["participants"] = int(
            await ctx.session.scalar(select(func.count()).select_from(pa)) or 0
        )
    n: int = ctx.memo["participants"]
    return n


async def active_members(ctx: Ctx, end: date) -> int:
    """Members with a service exchange in the 12 months before ``end``."""
    start = add_months(end, -12)
    if (start, end) == (ctx.period.start, ctx.period.end):
        return await participants(ctx)
    pa = ctx.per_account(start, end)
    return int(await ctx.session.scalar(select(func.count()).select_from(pa)) or 0)


@dataclass
class MemberHours:
    """Per participating member, hours traded = minutes given + received in the period."""

    members: int
    minutes: int
    median_minutes: float | None
    gini: float | None
    top_decile_minutes: int
    top_decile_members: int


async def member_hours(ctx: Ctx) -> MemberHours:
    if "member_hours" not in ctx.memo:
        ctx.memo["member_hours"] = await _member_hours(ctx)
    mh: MemberHours = ctx.memo["member_hours"]
    return mh


async def _member_hours(ctx: Ctx) -> MemberHours:
    pa = ctx.per_account()
    v = (pa.c.given + pa.c.received).label("v")
    ranked = select(
        v,
        func.row_number().over(order_by=v).label("rn"),
        func.row_number().over(order_by=v.desc()).label("rd"),
        func.count().over().label("n"),
    ).subquery()
    r = ranked.c
    middle = case(
        (r.rn.in_([(r.n + 1) // 2, (r.n + 2) // 2]), r.v),
        else_=None,
    )
    top = case((r.rd <= (r.n + 9) // 10, r.v), else_=0)
    n, total, median, weighted, top_sum = await ctx.one(
        select(
            func.count(),
            func.coalesce(func.sum(r.v), 0),
            func.avg(middle),
            func.coalesce(func.sum(r.rn * r.v), 0),
            func.coalesce(func.sum(top), 0),
        )
    )
    n, total = int(n), int(total)
    gini = None
    if n and total:
        gini = round(2 * int(weighted) / (n * total) - (n + 1) / n, 4)
    return MemberHours(
        n,
        total,
        None if median is None else float(median),
        gini,
        int(top_sum),
        (n + 9) // 10,
    )


async def count_members(ctx: Ctx, *where: Any) -> int:
    return int(
        await ctx.session.scalar(select(func.count()).select_from(Member).where(*where)) or 0
    )


def joined_in_period(ctx: Ctx) -> Any:
    p = ctx.period
    return and_(
        Member.timebank_id.in_(ctx.ids),
        Member.joined_on >= p.start,
        Member.joined_on < p.end,
        Member.created_at <= p.as_of,
    )


# --- summary --------------------------------------------------------------------------------


async def summary(ctx: Ctx) -> Built:
    b = ctx.built()
    d = b.disclosure
    p = ctx.period
    exchanges, minutes = await service_totals(ctx)
    mh = await member_hours(ctx)
    org_pa = ctx.per_account(owner=OwnerType.organisation)
    orgs = int(await ctx.session.scalar(select(func.count()).select_from(org_pa)) or 0)
    active = await active_members(ctx, p.end)
    registered = await count_members(ctx, q.registered(ctx.ids, p.end, p.as_of))
    new = await count_members(ctx, joined_in_period(ctx))
    mean = round(mh.minutes / mh.members / 60, 2) if mh.members else None
    b.scalars = [
        d.cell(mh.members, minutes, **activity_figures(exchanges, minutes)),
        d.cell(mh.members, mh.members, participating_members=mh.members),
        d.cell(0, orgs, participating_organisations=orgs),
        d.cell(active, active, active_members=active),
        d.cell(registered, registered, registered_members=registered),
        d.cell(new, new, new_members=new),
        d.cell(
            mh.members,
            mh.minutes,
            mean_hours_per_participating_member=mean,
            median_hours_per_participating_member=(
                None if mh.median_minutes is None else round(mh.median_minutes / 60, 2)
            ),
        ),
    ]
    pool = {
        kind: (int(n), int(m))
        for kind, n, m in await ctx.rows(
            select(Exchange.kind, func.count(), func.sum(Exchange.minutes))
            .where(ctx.counted(POOL_KINDS))
            .group_by(Exchange.kind)
        )
    }
    leg = ctx.legs(kinds=POOL_KINDS)
    helped = dict(
        await ctx.rows(
            select(leg.c.kind, func.count(distinct(leg.c.account_id))).group_by(leg.c.kind)
        )
    )
    for kind, name in (
        (ExchangeKind.pool_grant, "grant"),
        (ExchangeKind.pool_donation, "donation"),
    ):
        n, m = pool.get(kind, (0, 0))
        b.scalars.append(
            d.cell(
                int(helped.get(kind, 0)),
                m,
                **{f"pool_{name}s": n, f"pool_{name}_minutes": m, f"pool_{name}_hours": hours(m)},
            )
        )
    return b


# --- timeseries -----------------------------------------------------------------------------


def _truncate(interval: str, d: date) -> date:
    if interval == "week":
        return d - timedelta(days=d.weekday())
    if interval == "month":
        return first_of_month(d)
    return date(d.year, 3 * ((d.month - 1) // 3) + 1, 1)


def _step(interval: str, d: date) -> date:
    if interval == "week":
        return d + timedelta(days=7)
    return add_months(d, 1 if interval == "month" else 3)


def buckets(interval: str, start: date, end: date) -> list[tuple[date, date, date]]:
    """(key, first day, end) of each week/month/quarter of [start, end), clipped to it."""
    out = []
    key = _truncate(interval, start)
    while key < end:
        nxt = _step(interval, key)
        out.append((key, max(key, start), min(nxt, end)))
        if len(out) > MAX_BUCKETS:
            raise InvalidInput("interval", f"more than {MAX_BUCKETS} periods: use a longer one")
        key = nxt
    return out


async def _by_bucket(ctx: Ctx, stmt: Any) -> dict[date, tuple[Any, ...]]:
    return {q.as_date(row[0]): tuple(row[1:]) for row in await ctx.rows(stmt) if row[0] is not None}


def _index(keys: list[date], key: date) -> int:
    """1-based bucket of ``key``; 0 before the first."""
    if key < keys[0]:
        return 0
    return keys.index(key) + 1


async def _active_by_bucket(ctx: Ctx, keys: list[date], ends: list[date]) -> list[int]:
    """Members with a service exchange in the 12 months before each bucket's end.

    A service exchange on day d keeps a member active for ends in (d, d + 12 months]. Cut
    short at the member's next day of exchange, these spans never overlap, so the active
    count at each end is spans started before it minus spans over before it: one window
    pass over each member's days. When every end is the 1st of a month, months are as
    precise as days and far fewer.
    """
    interval, dialect = ctx.options.interval, ctx.dialect
    by_month = all(e.day == 1 for e in ends)
    days = ctx.member_days(add_months(ends[0], -12), ends[-1], months=by_month)
    later = func.lead(days.c.d).over(partition_by=days.c.account_id, order_by=days.c.d)
    year = q.year_after(dialect, days.c.d)
    spans = select(
        days.c.d.label("first"), case((later < year, later), else_=year).label("over")
    ).subquery()
    started = q.bucket(dialect, interval, spans.c.first).label("started")
    over = case((spans.c.over < ends[-1], q.bucket(dialect, interval, spans.c.over)), else_=None)
    delta = [0] * (len(keys) + 1)
    for start_key, over_key, n in await ctx.rows(
        select(started, over.label("over"), func.count()).group_by("started", "over")
    ):
        delta[_index(keys, q.as_date(start_key))] += int(n)
        if over_key is not None:
            delta[_index(keys, q.as_date(over_key))] -= int(n)
    out, running = [], delta[0]
    for i in range(1, len(keys) + 1):
        running += delta[i]
        out.append(running)
    return out


MASK_MONTHS = 62  # months of a member's activity that fit a 64-bit mask


async def _members_by_mask(
    ctx: Ctx, grid: list[tuple[date, date, date]]
) -> tuple[dict[date, tuple[int, int]], list[int]] | None:
    """For whole-month buckets: per bucket, participating members and those seen for the
    first time in the period, and members active at the bucket's end — in one pass. Each
    member's months of activity (from 12 months before the first end) become the bits of
    one integer; every figure is then a count of masks that meet a range of bits. None when
    the months do not fit a 64-bit mask."""
    p, dialect = ctx.period, ctx.dialect
    first = add_months(grid[0][2], -12)
    base = month_number(first)
    if month_number(grid[-1][2]) - base > MASK_MONTHS:
        return None
    days = ctx.member_days(first, p.end, months=True)  # one row per member and month
    bit = literal(1, BigInteger).op("<<")(q.month_index(days.c.d) - base)
    union_of_bits = func.bit_or(bit) if dialect == "postgresql" else func.sum(bit)
    masks = select(union_of_bits.label("m")).group_by(days.c.account_id).subquery()

    def meets(a: date, b: date) -> Any:
        lo, hi = month_number(a) - base, month_number(b) - base
        return masks.c.m.op("&")(literal(((1 << hi) - 1) ^ ((1 << lo) - 1), BigInteger)) != 0

    def count(condition: Any) -> Any:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    columns = []
    for _, start, end in grid:
        columns += [
            count(meets(start, end)),
            count(
                and_(meets(start, end), ~meets(p.start, start))
                if start > p.start
                else meets(start, end)
            ),
            count(meets(add_months(end, -12), end)),
        ]
    row = await ctx.one(select(*columns).select_from(masks))
    values = [int(v) for v in row]
    reach = {key: (values[3 * i], values[3 * i + 1]) for i, (key, _, _) in enumerate(grid)}
    return reach, [values[3 * i + 2] for i in range(len(grid))]


async def timeseries(ctx: Ctx) -> Built:
    b = ctx.built(["period_start", "period_end"])
    d = b.disclosure
    p, interval, dialect = ctx.period, ctx.options.interval, ctx.dialect
    grid = buckets(interval, p.start, p.end)
    keys = [k for k, _, _ in grid]
    monthly = interval != "week"
    if monthly and ctx.whole_months:
        rows = ctx.activity_rows(ctx.period.start, ctx.period.end)
        stmt = select(
            q.bucket(dialect, interval, rows.c.month).label("k"),
            func.sum(rows.c.led),
            func.sum(rows.c.given),
        ).group_by("k")
    else:
        stmt = (
            select(
                q.bucket(dialect, interval, Exchange.occurred_on).label("k"),
                func.count(),
                func.sum(Exchange.minutes),
            )
            .where(ctx.counted())
            .group_by("k")
        )
    activity = await _by_bucket(ctx, stmt)
    by_mask = await _members_by_mask(ctx, grid) if monthly and ctx.whole_months else None
    reach: dict[date, tuple[Any, ...]]
    if by_mask is not None:
        reach, active = by_mask
    else:
        days = ctx.member_days(p.start, p.end, months=monthly)
        pairs = (
            select(days.c.account_id, q.bucket(dialect, interval, days.c.d).label("k"))
            .distinct()
            .subquery()
        )
        first_seen = case(
            (pairs.c.k == func.min(pairs.c.k).over(partition_by=pairs.c.account_id), 1), else_=0
        ).label("first")
        seen = select(pairs.c.k, first_seen).subquery()
        reach = await _by_bucket(
            ctx, select(seen.c.k, func.count(), func.sum(seen.c.first)).group_by(seen.c.k)
        )
        active = await _active_by_bucket(ctx, keys, [e for _, _, e in grid])
    joined = await _by_bucket(
        ctx,
        select(q.bucket(dialect, interval, Member.joined_on).label("k"), func.count())
        .where(joined_in_period(ctx))
        .group_by("k"),
    )

    atoms, cumulative, new_cells = [], [], []
    total_ex = total_min = total_new = reached = 0
    for (key, start, end), n_active in zip(grid, active, strict=True):
        n_ex, n_min = (int(x or 0) for x in activity.get(key, (0, 0)))
        n_people, n_first = (int(x) for x in reach.get(key, (0, 0)))
        n_new = int(joined.get(key, (0,))[0])
        total_ex, total_min, total_new = total_ex + n_ex, total_min + n_min, total_new + n_new
        reached += n_first
        cells = [
            d.cell(n_people, n_min, **activity_figures(n_ex, n_min)),
            d.cell(n_new, n_new, new_members=n_new),
            d.cell(n_active, n_active, active_members=n_active),
            d.cell(
                reached, total_min, cumulative_minutes=total_min, cumulative_hours=hours(total_min)
            ),
        ]
        atoms.append(cells[0])
        new_cells.append(cells[1])
        cumulative.append(cells[3])
        b.rows.append(
            ({"period_start": start.isoformat(), "period_end": end.isoformat()}, list(cells))
        )
    total = d.cell(reached, total_min, **activity_figures(total_ex, total_min))
    new_total = d.cell(total_new, total_new, new_members=total_new)
    b.params["interval"] = interval
    b.scalars = [total, new_total]
    d.relate(Chain(atoms, list(cumulative), disjoint=False))
    d.relate(Chain.total(atoms, total, disjoint=False))
    d.relate(Chain.equal(cumulative[-1], total))
    d.relate(Chain.total(new_cells, new_total, disjoint=True))
    return b


# --- exchange types, categories, organisations ----------------------------------------------


async def _by_category_rollup(ctx: Ctx, dimension: str) -> dict[Any, tuple[int, int, int, int]]:
    """From the rollups, per category slug or per kind: exchanges, minutes, providers
    (accounts credited) and participating members."""
    rows = ctx.category_rows()
    column = rows.c.kind if dimension == "kind" else rows.c.category_id
    per = (
        select(
            column.label("dim"),
            rows.c.account_id,
            func.max(rows.c.owner_type).label("owner_type"),  # an account has one
            func.sum(rows.c.exchanges).label("n"),
            func.sum(rows.c.led).label("led"),
            func.sum(rows.c.given).label("given"),
        )
        .group_by(column, rows.c.account_id)
        .subquery()
    )
    key: Any = per.c.dim
    stmt = select(
        key,
        func.sum(per.c.led),
        func.sum(per.c.given),
        func.count().filter(per.c.given > 0),
        func.count().filter(and_(per.c.owner_type == OwnerType.member, per.c.n > 0)),
    )
    if dimension != "kind":
        key = Category.slug
        stmt = stmt.with_only_columns(key, *stmt.selected_columns[1:]).join(
            Category, Category.id == per.c.dim
        )
    return {
        k: (int(n), int(m), int(pr), int(pe))
        for k, n, m, pr, pe in await ctx.rows(stmt.group_by(key))
    }


async def exchange_types(ctx: Ctx) -> Built:
    b = ctx.built(["kind"])
    d = b.disclosure
    if ctx.whole_months:
        found = await _by_category_rollup(ctx, "kind")
        activity = {k: (n, m) for k, (n, m, _, _) in found.items()}
        people = {k: pe for k, (_, _, _, pe) in found.items()}
    else:
        activity = {
            k: (int(n), int(m))
            for k, n, m in await ctx.rows(
                select(Exchange.kind, func.count(), func.sum(Exchange.minutes))
                .where(ctx.counted())
                .group_by(Exchange.kind)
            )
        }
        leg = ctx.legs()
        people = dict(
            await ctx.rows(
                select(leg.c.kind, func.count(distinct(leg.c.account_id))).group_by(leg.c.kind)
            )
        )
    cells = []
    for kind in SERVICE_KINDS:
        n, m = activity.get(kind, (0, 0))
        cells.append(d.cell(int(people.get(kind, 0)), m, **activity_figures(n, m)))
        b.rows.append(({"kind": kind.value}, [cells[-1]]))
    exchanges, minutes = await service_totals(ctx)
    total = d.cell(await participants(ctx), minutes, **activity_figures(exchanges, minutes))
    b.scalars = [total]
    d.relate(Chain.total(cells, total, disjoint=False))
    return b


async def categories(ctx: Ctx) -> Built:
    b = ctx.built(["category", "name"])
    d = b.disclosure
    names = await ctx.rows(
        select(Category.slug, func.min(Category.name))
        .where(Category.timebank_id.in_(ctx.ids))
        .group_by(Category.slug)
        .order_by(Category.slug)
    )
    if ctx.whole_months:
        found = await _by_category_rollup(ctx, "category")
        activity = {k: (n, m) for k, (n, m, _, _) in found.items()}
        providers = {k: pr for k, (_, _, pr, _) in found.items()}
        people = {k: pe for k, (_, _, _, pe) in found.items()}
    else:
        activity = {
            slug: (int(n), int(m))
            for slug, n, m in await ctx.rows(
                select(Category.slug, func.count(), func.sum(Exchange.minutes))
                .join(Category, Category.id == Exchange.category_id)
                .where(ctx.counted())
                .group_by(Category.slug)
            )
        }
        anyone = ctx.legs(owner=None)
        providers = dict(
            await ctx.rows(
                select(Category.slug, func.count(distinct(anyone.c.account_id)))
                .join(Category, Category.id == anyone.c.category_id)
                .where(anyone.c.minutes > 0)
                .group_by(Category.slug)
            )
        )
        leg = ctx.legs()
        people = dict(
            await ctx.rows(
                select(Category.slug, func.count(distinct(leg.c.account_id)))
                .join(Category, Category.id == leg.c.category_id)
                .group_by(Category.slug)
            )
        )
    exchanges, minutes = await service_totals(ctx)
    total = d.cell(await participants(ctx), minutes, **activity_figures(exchanges, minutes))
    cells = []
    for slug, name in names:
        n, m = activity.get(slug, (0, 0))
        cell = d.cell(
            int(people.get(slug, 0)),
            m,
            **activity_figures(n, m),
            providers=int(providers.get(slug, 0)),
        )
        cells.append(cell)
        b.rows.append(
            (
                {"category": slug, "name": name},
                [cell, Share("share_of_hours", cell, "minutes", total, "minutes")],
            )
        )
    b.scalars = [total]
    if cells:
        d.relate(Chain.total(cells, total, disjoint=False))
    return b


async def organisations(ctx: Ctx) -> Built:
    """Per organisation (not people, so named): hours given and received, members engaged
    (the members on the other side of its service exchanges), exchanges."""
    b = ctx.built(["timebank", "organisation", "kind"])
    d = b.disclosure
    org_leg = ctx.legs(owner=OwnerType.organisation)
    flows = {
        row[0]: row[1:]
        for row in await ctx.rows(
            select(
                org_leg.c.account_id,
                func.sum(case((org_leg.c.minutes > 0, org_leg.c.minutes), else_=0)),
                func.sum(case((org_leg.c.minutes < 0, -org_leg.c.minutes), else_=0)),
                func.count(),
            ).group_by(org_leg.c.account_id)
        )
    }
    member_leg = ctx.legs()
    engaged = dict(
        await ctx.rows(
            select(org_leg.c.account_id, func.count(distinct(member_leg.c.account_id)))
            .join(member_leg, member_leg.c.exchange_id == org_leg.c.exchange_id)
            .group_by(org_leg.c.account_id)
        )
    )
    slugs = {bank.id: bank.slug for bank in ctx.banks}
    orgs = await ctx.rows(
        select(
            Organisation.account_id,
            Organisation.timebank_id,
            Organisation.name,
            Organisation.kind,
            Organisation.status,
        )
        .where(Organisation.timebank_id.in_(ctx.ids), Organisation.created_at <= ctx.period.as_of)
        .order_by(Organisation.name, Organisation.id)
    )
    for account_id, tb_id, name, kind, status in orgs:
        if account_id not in flows and status is not OrganisationStatus.active:
            continue
        given, received, n = (int(x) for x in flows.get(account_id, (0, 0, 0)))
        people = int(engaged.get(account_id, 0))
        cell = d.cell(
            people,
            given + received,
            exchanges=n,
            members_engaged=people,
            minutes_given=given,
            hours_given=hours(given),
            minutes_received=received,
            hours_received=hours(received),
        )
        key = {"timebank": slugs[tb_id], "organisation": name, "kind": kind.value}
        b.rows.append((key, [cell]))
    return b


# --- member breakdowns: localities, demographics --------------------------------------------


def _member_flow_figures(members: int, given: int, received: int) -> dict[str, Any]:
    return {
        "participating_members": members,
        "minutes_given": given,
        "hours_given": hours(given),
        "minutes_received": received,
        "hours_received": hours(received),
    }


async def localities(ctx: Ctx) -> Built:
    b = ctx.built(["locality"])
    d = b.disclosure
    pa = ctx.per_account()
    trimmed = func.trim(Member.locality)
    norm = func.nullif(func.lower(trimmed), "")
    # the label is the first spelling in byte order, the same on both engines
    label = func.min(trimmed.collate("C") if ctx.dialect == "postgresql" else trimmed)
    found = await ctx.rows(
        select(
            norm.label("norm"),
            label,
            func.count(),
            func.sum(pa.c.given),
            func.sum(pa.c.received),
        )
        .select_from(pa)
        .join(Member, Member.account_id == pa.c.account_id)
        .group_by("norm")
    )
    named = sorted((r for r in found if r[0] is not None), key=lambda r: (str(r[0]), str(r[1])))
    stated = [r for r in found if r[0] is None]
    cells = []
    totals = [0, 0, 0]
    for norm_key, label, n, given, received in [*named, *stated]:
        n, given, received = int(n), int(given), int(received)
        totals = [totals[0] + n, totals[1] + given, totals[2] + received]
        cells.append(d.cell(n, given + received, **_member_flow_figures(n, given, received)))
        b.rows.append(({"locality": NOT_STATED if norm_key is None else label}, [cells[-1]]))
    total = d.cell(totals[0], totals[1] + totals[2], **_member_flow_figures(*totals))
    b.scalars = [total]
    if cells:
        d.relate(Chain.total(cells, total, disjoint=True))
    return b


def _age_band(to: date) -> tuple[Any, list[str]]:
    """Age at ``to`` = its year − birth year (only the year of birth is held)."""
    y = to.year
    bands = [
        ("under_18", y - 17, None),
        ("18-24", y - 24, y - 18),
        ("25-34", y - 34, y - 25),
        ("35-44", y - 44, y - 35),
        ("45-54", y - 54, y - 45),
        ("55-64", y - 64, y - 55),
        ("65-74", y - 74, y - 65),
    ]
    whens: list[Any] = [(Member.birth_year.is_(None), NOT_STATED)]
    for name, lo, hi in bands:
        cond = Member.birth_year >= lo if hi is None else Member.birth_year.between(lo, hi)
        whens.append((cond, name))
    expr = case(*whens, else_="75+")
    return expr, [name for name, _, _ in bands] + ["75+", NOT_STATED]


def _dimension(name: str, to: date) -> tuple[Any, list[str]]:
    if name == "age_band":
        return _age_band(to)
    column, enum = {
        "gender": (Member.gender, Gender),
        "disability": (Member.disability, Disability),
        "ethnicity": (Member.ethnicity, Ethnicity),
    }[name]
    return func.coalesce(cast(column, String), literal(NOT_STATED)), [
        *(e.value for e in enum),
        NOT_STATED,
    ]


async def demographics(ctx: Ctx) -> Built:
    """Consenting members only (``statistics_consent`` and not erased); a blank field is
    ``not_stated``. Registered at ``to`` and participating in the period, per value."""
    b = ctx.built(["dimension", "group"])
    d = b.disclosure
    p = ctx.period
    dims = [ctx.options.dimension] if ctx.options.dimension else list(DIMENSIONS)
    pa = ctx.per_account()
    per_dim = []
    for dim in dims:
        expr, values = _dimension(dim, p.end)
        registered = dict(
            await ctx.rows(
                select(expr.label("v"), func.count())
                .where(q.registered(ctx.ids, p.end, p.as_of), q.consenting())
                .group_by("v")
            )
        )
        taking_part = {
            row[0]: row[1:]
            for row in await ctx.rows(
                select(expr.label("v"), func.count(), func.sum(pa.c.given), func.sum(pa.c.received))
                .select_from(pa)
                .join(Member, Member.account_id == pa.c.account_id)
                .where(q.consenting())
                .group_by("v")
            )
        }
        per_dim.append((dim, values, registered, taking_part))
    first = per_dim[0]
    n_reg = sum(int(x) for x in first[2].values())
    flows = [sum(int(r[i]) for r in first[3].values()) for i in range(3)]
    reg_total = d.cell(n_reg, n_reg, consenting_registered_members=n_reg)
    act_total = d.cell(
        flows[0],
        flows[1] + flows[2],
        **{f"consenting_{k}": v for k, v in _member_flow_figures(*flows).items()},
    )
    b.scalars = [reg_total, act_total]
    b.params["dimension"] = ctx.options.dimension or "all"
    for dim, values, registered, taking_part in per_dim:
        reg_cells, act_cells = [], []
        for value in values:
            n = int(registered.get(value, 0))
            m, given, received = (int(x) for x in taking_part.get(value, (0, 0, 0)))
            reg = d.cell(n, n, registered_members=n)
            act = d.cell(m, given + received, **_member_flow_figures(m, given, received))
            reg_cells.append(reg)
            act_cells.append(act)
            b.rows.append(({"dimension": dim, "group": value}, [reg, act]))
        d.relate(Chain.total(reg_cells, reg_total, disjoint=True))
        d.relate(Chain.total(act_cells, act_total, disjoint=True))
    return b


# --- activity, reciprocity, distribution, retention -----------------------------------------


async def activity(ctx: Ctx) -> Built:
    """Registered members at ``to`` by their last service exchange before ``to`` (any time):
    within 3 months, 3–6, 6–12, over 12 months ago, never. The published figures are
    cumulative (ever traded, active = within 12 months, inactive for 3/6/12 months, i.e.
    no service exchange in those months, never-traded included)."""
    b = ctx.built()
    d = b.disclosure
    p = ctx.period
    # bands start on the 1st when ``to`` does: then the month of the last exchange will do
    days = ctx.member_days(None, p.end, months=p.end.day == 1)
    last = (
        select(days.c.account_id, func.max(days.c.d).label("last"))
        .group_by(days.c.account_id)
        .subquery()
    )
    band = case(
        (last.c.last.is_(None), "never"),
        (last.c.last >= add_months(p.end, -3), "m3"),
        (last.c.last >= add_months(p.end, -6), "m6"),
        (last.c.last >= add_months(p.end, -12), "m12"),
        else_="older",
    ).label("band")
    counts = dict(
        await ctx.rows(
            select(band, func.count())
            .select_from(Member)
            .outerjoin(last, last.c.account_id == Member.account_id)
            .where(q.registered(ctx.ids, p.end, p.as_of))
            .group_by("band")
        )
    )
    order = ["never", "older", "m12", "m6", "m3"]
    atoms = [int(counts.get(name, 0)) for name in order]
    r = sum(atoms)
    c1, c2, c3, c4 = (sum(atoms[:i]) for i in range(1, 5))
    prefixes = [
        d.cell(r, r - c1, ever_traded_members=r - c1, ever_traded_share=share(r - c1, r)),
        d.cell(
            r,
            c2,
            active_members=r - c2,
            active_share=share(r - c2, r),
            inactive_12_months=c2,
            inactive_12_months_share=share(c2, r),
        ),
        d.cell(r, c3, inactive_6_months=c3, inactive_6_months_share=share(c3, r)),
        d.cell(r, c4, inactive_3_months=c4, inactive_3_months_share=share(c4, r)),
        d.cell(r, r, registered_members=r),
    ]
    b.scalars = [prefixes[-1], *prefixes[:-1]]
    d.relate(Chain([d.hidden(n) for n in atoms], list(prefixes), disjoint=True))
    return b


async def reciprocity(ctx: Ctx) -> Built:
    b = ctx.built(["pattern"])
    d = b.disclosure
    pa = ctx.per_account()
    pattern = case(
        (and_(pa.c.given > 0, pa.c.received > 0), "gave_and_received"),
        (pa.c.given > 0, "gave_only"),
        else_="received_only",
    ).label("pattern")
    counts = dict(await ctx.rows(select(pattern, func.count()).group_by("pattern")))
    names = ["gave_and_received", "gave_only", "received_only"]
    n_total = sum(int(counts.get(n, 0)) for n in names)
    total = d.cell(n_total, n_total, participating_members=n_total)
    cells = []
    for name in names:
        n = int(counts.get(name, 0))
        cells.append(d.cell(n, n, members=n))
        b.rows.append(
            (
                {"pattern": name},
                [cells[-1], Share("share", cells[-1], "members", total, "participating_members")],
            )
        )
    b.scalars = [total]
    d.relate(Chain.total(cells, total, disjoint=True))
    return b


HISTOGRAM = [
    ("0", 0, 0),
    ("1", 1, 1),
    ("2-5", 2, 5),
    ("6-10", 6, 10),
    ("11-25", 11, 25),
    ("26+", 26, None),
]


async def distribution(ctx: Ctx) -> Built:
    """Exchanges per member over the members registered at ``to`` plus anyone who took part;
    Gini coefficient and top-10 % share of hours traded over participating members."""
    b = ctx.built(["exchanges_per_member"])
    d = b.disclosure
    p = ctx.period
    pa = ctx.per_account()
    base = union(
        select(Member.account_id.label("account_id")).where(q.registered(ctx.ids, p.end, p.as_of)),
        select(pa.c.account_id.label("account_id")),
    ).subquery()
    n_ex = func.coalesce(pa.c.exchanges, 0)
    whens = [(n_ex <= hi, label) for label, _, hi in HISTOGRAM if hi is not None]
    label = case(*whens, else_=HISTOGRAM[-1][0]).label("bucket")
    counts = dict(
        await ctx.rows(
            select(label, func.count())
            .select_from(base)
            .outerjoin(pa, pa.c.account_id == base.c.account_id)
            .group_by("bucket")
        )
    )
    n_total = sum(int(v) for v in counts.values())
    total = d.cell(n_total, n_total, members=n_total)
    cells = []
    for name, _, _ in HISTOGRAM:
        n = int(counts.get(name, 0))
        cells.append(d.cell(n, n, members=n))
        b.rows.append(
            (
                {"exchanges_per_member": name},
                [cells[-1], Share("share", cells[-1], "members", total, "members")],
            )
        )
    mh = await member_hours(ctx)
    b.scalars = [
        total,
        d.cell(mh.members, mh.minutes, gini_hours=mh.gini),
        d.cell(
            mh.top_decile_members,
            mh.top_decile_minutes,
            top_10_percent_share=share(mh.top_decile_minutes, mh.minutes),
        ),
    ]
    d.relate(Chain.total(cells, total, disjoint=True))
    return b


async def retention(ctx: Ctx) -> Built:
    """Per cohort (month of joining within the period): members, and how many had a first
    service exchange within 3, 6 and 12 months of joining. A window that runs past ``to`` is
    not yet observable: null, not suppressed."""
    b = ctx.built(["cohort"])
    d = b.disclosure
    p = ctx.period
    leg = ctx.legs(whole_period=False)
    first = (
        select(leg.c.account_id, func.min(leg.c.occurred_on).label("first"))
        .group_by(leg.c.account_id)
        .subquery()
    )
    year = cast(extract("year", Member.joined_on), Integer).label("y")
    month = cast(extract("month", Member.joined_on), Integer).label("m")

    def within(months: int) -> Any:
        hit = and_(
            first.c.first.is_not(None),
            q.before_months_after(first.c.first, Member.joined_on, months),
        )
        return func.sum(case((hit, 1), else_=0))

    cohorts = await ctx.rows(
        select(year, month, func.count(), within(3), within(6), within(12))
        .select_from(Member)
        .outerjoin(first, first.c.account_id == Member.account_id)
        .where(joined_in_period(ctx))
        .group_by("y", "m")
        .order_by("y", "m")
    )
    for y, m, n, r3, r6, r12 in cohorts:
        n, counts = int(n), [int(r3), int(r6), int(r12)]
        start = date(int(y), int(m), 1)
        last_day = min(add_months(start, 1), p.end) - timedelta(days=1)
        prefixes = []
        for months, r in zip((3, 6, 12), counts, strict=True):
            cell = d.cell(
                n,
                r,
                **{
                    f"first_exchange_within_{months}_months": r,
                    f"first_exchange_within_{months}_months_share": share(r, n),
                },
            )
            cell.available = add_months(last_day, months) <= p.end
            prefixes.append(cell)
        size = d.cell(n, n, members=n)
        atoms = [counts[0], counts[1] - counts[0], counts[2] - counts[1], n - counts[2]]
        d.relate(Chain([d.hidden(a) for a in atoms], [*prefixes, size], disjoint=True))
        b.rows.append(({"cohort": f"{start:%Y-%m}"}, [size, *prefixes]))
    return b


# --- social value ---------------------------------------------------------------------------


def valuation_rate(b: Built, options: Options) -> int:
    """The rate in pence per hour (given, or the named default), stated in the params."""
    rate = options.rate_pence_per_hour
    if rate is None:
        b.params.update(
            rate_pence_per_hour=DEFAULT_RATE_PENCE,
            rate_source=DEFAULT_RATE_SOURCE,
            rate_date=DEFAULT_RATE_DATE,
        )
        rate = DEFAULT_RATE_PENCE
    else:
        b.params.update(rate_pence_per_hour=rate, rate_source="given by the caller", rate_date=None)
    b.params["valuation"] = VALUATION
    return rate


async def social_value(ctx: Ctx) -> Built:
    b = ctx.built()
    d = b.disclosure
    rate = valuation_rate(b, ctx.options)
    exchanges, minutes = await service_totals(ctx)
    pence = (minutes * rate + 30) // 60
    b.scalars = [
        d.cell(
            await participants(ctx),
            minutes,
            **activity_figures(exchanges, minutes),
            value_pence=pence,
            value_pounds=round(pence / 100, 2),
        )
    ]
    return b


Builder = Callable[[Ctx], Awaitable[Built]]
REPORTS: dict[str, Builder] = {
    "summary": summary,
    "timeseries": timeseries,
    "exchange-types": exchange_types,
    "categories": categories,
    "organisations": organisations,
    "localities": localities,
    "demographics": demographics,
    "activity": activity,
    "reciprocity": reciprocity,
    "distribution": distribution,
    "retention": retention,
    "social-value": social_value,
}
