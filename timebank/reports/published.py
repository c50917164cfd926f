"""Published figures (SPEC §3.7 "Disclosure control", §7.3, §7.4): the reports funders get,
and staff with ``?figures=published``, made by the cell-key method
(:mod:`timebank.reports.cellkey`).

Same reports, same definitions and figure names as :mod:`timebank.reports.service`, but
every count and magnitude is a cell — a measure over a set of records — published as
(true value, Σ record keys) through the fixed table, so a cell asked for twice, in two
reports or two formats publishes the same value. Each cell therefore needs its records'
keys, which the rollups do not hold: these builders read the records of the period (one
row per leg, per member, per organisation) and form the cells in Python; only "active in
the 12 months before" comes from the rollups. That costs more than exact figures (on
SQLite, a quarter of a 100 000-exchange, 10 000-member bank: about 0.3–0.4 s per report
against 0.02–0.1 s); published figures change at most daily, so they can be cached per
bank, period and day (SPEC §7.9).

A row is withheld by its **population** only — who could be in it: the registered members
of a locality, the consenting members with a demographic value, a joining cohort; for
bank-wide rows and totals (categories, kinds, organisations, months) the bank's registered
members — never by who took part; no secondary suppression. Every row that can appear
appears (all categories, organisations, kinds, months, demographic values, the localities
of registered members), active or not. Derived figures come from published parts: shares
clipped to [0, 1], cumulative hours the running sum of published months, inactive 3 ≥ 6 ≥
12 months; a median is rounded to half an hour and shown only over at least twice the
threshold, a Gini coefficient or top-10 % share rounded to 0.01 and shown only over at
least 50 people.
"""

from __future__ import annotations

import bisect
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from sqlalchemy import String, cast, func, select

from timebank.ledger.models import Account, Exchange, ExchangeKind, OwnerType
from timebank.ledger.rules import POOL_KINDS, SERVICE_KINDS
from timebank.members.models import Member
from timebank.organisations.models import Organisation
from timebank.reports import cellkey
from timebank.reports import queries as q
from timebank.reports import service as s
from timebank.reports.disclosure import Cell, Disclosure
from timebank.reports.periods import add_months
from timebank.timebanks.models import Category

MIN_PEOPLE_FOR_INEQUALITY = 50  # Gini and top-10 % share
MEDIAN_STEP_MINUTES = 30


@dataclass(frozen=True, slots=True)
class Leg:
    exchange_id: uuid.UUID
    exchange_key: int
    account_id: uuid.UUID
    owner: OwnerType
    minutes: int  # signed: credited +, debited −
    occurred_on: date
    kind: ExchangeKind
    category: str | None


@dataclass(slots=True)
class Person:
    account_id: uuid.UUID
    key: int
    registered: bool  # at ``to``
    consenting: bool
    joined_on: date
    locality: str | None  # trimmed spelling
    values: dict[str, str]  # demographic dimension → value at ``to``


@dataclass
class Micro:
    """The records of a published report: members, organisations' keys, and the legs of
    service exchanges of the period."""

    people: dict[uuid.UUID, Person]
    org_keys: dict[uuid.UUID, int]
    legs: list[Leg]  # by occurred_on
    population: int  # the banks' registered members at ``to``
    days: list[date] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.legs.sort(key=lambda leg: leg.occurred_on)
        self.days = [leg.occurred_on for leg in self.legs]

    def between(self, start: date, end: date) -> list[Leg]:
        return self.legs[bisect.bisect_left(self.days, start) : bisect.bisect_left(self.days, end)]

    def key(self, account_id: uuid.UUID) -> int:
        person = self.people.get(account_id)
        return person.key if person is not None else self.org_keys.get(account_id, 0)


# --- cells ----------------------------------------------------------------------------------


def cell(d: Disclosure, population: int, **figures: Any) -> Cell:
    """A row's figures over one population (who could be in it): withheld under the
    threshold."""
    return d.cell(population, 0, **figures)


def count_of(keys: dict[Any, int]) -> int:
    """Published count of a set of records (record id → record key)."""
    return cellkey.publish_count(len(keys), cellkey.cell_key(keys.values()))


def exchanges_of(legs: Iterable[Leg]) -> int:
    return count_of({leg.exchange_id: leg.exchange_key for leg in legs})


def parties_of(micro: Micro, legs: Iterable[Leg]) -> int:
    return count_of({leg.account_id: micro.key(leg.account_id) for leg in legs})


def minutes_of(legs: Iterable[Leg]) -> int:
    """Published minutes of a set of legs, the cell key from the exchanges they belong to
    (:func:`cellkey.publish_minutes`: noise over a window with a floor)."""
    total = 0
    exchanges: dict[uuid.UUID, int] = {}
    for leg in legs:
        total += abs(leg.minutes)
        exchanges[leg.exchange_id] = leg.exchange_key
    return cellkey.publish_minutes(total, cellkey.cell_key(exchanges.values()))


def activity(legs: list[Leg]) -> dict[str, Any]:
    """exchanges, minutes, hours of the exchanges whose credited legs are ``legs``."""
    credited = [leg for leg in legs if leg.minutes > 0]
    m = minutes_of(credited)
    return {"exchanges": exchanges_of(credited), "minutes": m, "hours": s.hours(m)}


def flows(legs: list[Leg], members: int) -> dict[str, Any]:
    given = minutes_of(leg for leg in legs if leg.minutes > 0)
    received = minutes_of(leg for leg in legs if leg.minutes < 0)
    return {
        "participating_members": members,
        "minutes_given": given,
        "hours_given": s.hours(given),
        "minutes_received": received,
        "hours_received": s.hours(received),
    }


def monotone(values: list[int], cap: int) -> list[int]:
    """Published counts of nested sets, smallest set first: made non-decreasing, ≤ cap."""
    out, floor = [], 0
    for v in values:
        floor = min(max(floor, v), cap)
        out.append(floor)
    return out


# --- the records ----------------------------------------------------------------------------


def _age_band(birth_year: int | None, to: date) -> str:
    if birth_year is None:
        return s.NOT_STATED
    age = to.year - birth_year
    if age < 18:
        return "under_18"
    for lo, hi in ((18, 24), (25, 34), (35, 44), (45, 54), (55, 64), (65, 74)):
        if lo <= age <= hi:
            return f"{lo}-{hi}"
    return "75+"


async def micro(ctx: s.Ctx) -> Micro:
    if "micro" in ctx.memo:
        found: Micro = ctx.memo["micro"]
        return found
    p, ids = ctx.period, ctx.ids
    rows = await ctx.rows(
        select(
            Member.account_id,
            Member.record_key,
            q.registered(ids, p.end, p.as_of).label("registered"),
            q.consenting().label("consenting"),
            Member.joined_on,
            func.trim(Member.locality),
            Member.birth_year,
            cast(Member.gender, String),
            cast(Member.disability, String),
            cast(Member.ethnicity, String),
        ).where(Member.timebank_id.in_(ids), Member.created_at <= p.as_of)
    )
    people = {}
    for acc, key, registered, consenting, joined, locality, birth, gender, disab, ethn in rows:
        values = {
            "age_band": _age_band(birth, p.end),
            "gender": gender or s.NOT_STATED,
            "disability": disab or s.NOT_STATED,
            "ethnicity": ethn or s.NOT_STATED,
        }
        people[acc] = Person(
            acc, int(key), bool(registered), bool(consenting), joined, locality or None, values
        )
    org_keys = {
        acc: int(key)
        for acc, key in await ctx.rows(
            select(Organisation.account_id, Organisation.record_key).where(
                Organisation.timebank_id.in_(ids)
            )
        )
    }
    leg = ctx.legs(owner=None)
    found = Micro(
        people,
        org_keys,
        await _legs(ctx, leg),
        sum(1 for person in people.values() if person.registered),
    )
    ctx.memo["micro"] = found
    return found


async def _legs(ctx: s.Ctx, leg: Any) -> list[Leg]:
    rows = await ctx.rows(
        select(
            leg.c.exchange_id,
            Exchange.record_key,
            leg.c.account_id,
            Account.owner_type,
            leg.c.minutes,
            leg.c.occurred_on,
            leg.c.kind,
            Category.slug,
        )
        .join(Exchange, Exchange.id == leg.c.exchange_id)
        .join(Account, Account.id == leg.c.account_id)
        .outerjoin(Category, Category.id == leg.c.category_id)
    )
    return [
        Leg(x, int(k), a, OwnerType(o), int(m), q.as_date(d), ExchangeKind(kind), c)
        for x, k, a, o, m, d, kind, c in rows
    ]


async def active_members(ctx: s.Ctx, end: date) -> dict[uuid.UUID, int]:
    """The keys of the members with a service exchange in the 12 months before ``end`` (one
    row per member, from the rollups for whole months)."""
    memo = f"active:{end.isoformat()}"
    if memo not in ctx.memo:
        pa = ctx.per_account(add_months(end, -12), end)
        rows = await ctx.rows(
            select(pa.c.account_id, Member.record_key).join(
                Member, Member.account_id == pa.c.account_id
            )
        )
        ctx.memo[memo] = {acc: int(key) for acc, key in rows}
    found: dict[uuid.UUID, int] = ctx.memo[memo]
    return found


async def member_span(ctx: s.Ctx) -> dict[uuid.UUID, tuple[date, date]]:
    """Per member, the first and last day of a service exchange before ``to`` (ever)."""
    if "span" not in ctx.memo:
        leg = ctx.legs(whole_period=False)
        rows = await ctx.rows(
            select(
                leg.c.account_id, func.min(leg.c.occurred_on), func.max(leg.c.occurred_on)
            ).group_by(leg.c.account_id)
        )
        ctx.memo["span"] = {acc: (q.as_date(a), q.as_date(b)) for acc, a, b in rows}
    found: dict[uuid.UUID, tuple[date, date]] = ctx.memo["span"]
    return found


def in_period(
    ctx: s.Ctx, m: Micro, start: date | None = None, end: date | None = None
) -> list[Leg]:
    start = ctx.period.start if start is None else start
    end = ctx.period.end if end is None else end
    return m.between(start, end)


def member_legs(legs: Iterable[Leg]) -> list[Leg]:
    return [leg for leg in legs if leg.owner is OwnerType.member]


def members_of(m: Micro, legs: Iterable[Leg]) -> dict[uuid.UUID, int]:
    return {leg.account_id: m.key(leg.account_id) for leg in legs if leg.owner is OwnerType.member}


def registered_keys(m: Micro) -> dict[uuid.UUID, int]:
    return {a: p.key for a, p in m.people.items() if p.registered}


def new_member_keys(ctx: s.Ctx, m: Micro, start: date, end: date) -> dict[uuid.UUID, int]:
    return {a: p.key for a, p in m.people.items() if start <= p.joined_on < end}


# --- the reports ----------------------------------------------------------------------------


def _built(ctx: s.Ctx, keys: list[str] | None = None) -> s.Built:
    return ctx.built(keys, by_population=True)


async def summary(ctx: s.Ctx) -> s.Built:
    b = _built(ctx)
    d = b.disclosure
    m = await micro(ctx)
    p, pop, k = ctx.period, m.population, ctx.threshold
    legs = in_period(ctx, m)
    mlegs = member_legs(legs)
    members = count_of(members_of(m, mlegs))
    traded: dict[uuid.UUID, int] = defaultdict(int)
    for leg in mlegs:
        traded[leg.account_id] += abs(leg.minutes)
    mean = None
    if members:
        mean = round(minutes_of(mlegs) / members / 60, 2)
    median = None
    if len(traded) >= 2 * k:
        values = sorted(traded.values())
        n = len(values)
        middle = (values[(n - 1) // 2] + values[n // 2]) / 2
        median = round(middle / MEDIAN_STEP_MINUTES) * MEDIAN_STEP_MINUTES / 60
    orgs = {
        leg.account_id: m.key(leg.account_id) for leg in legs if leg.owner is OwnerType.organisation
    }
    active = await active_members(ctx, p.end)
    b.scalars = [
        cell(d, pop, **activity(legs)),
        cell(d, pop, participating_members=members),
        cell(d, pop, participating_organisations=count_of(orgs)),
        cell(d, pop, active_members=count_of(active)),
        cell(d, pop, registered_members=count_of(registered_keys(m))),
        cell(d, pop, new_members=count_of(new_member_keys(ctx, m, p.start, p.end))),
        cell(d, pop, mean_hours_per_participating_member=mean),
        cell(d, pop if median is not None else 0, median_hours_per_participating_member=median),
    ]
    pool = await _legs(ctx, ctx.legs(kinds=POOL_KINDS))
    for kind, name in (
        (ExchangeKind.pool_grant, "grant"),
        (ExchangeKind.pool_donation, "donation"),
    ):
        mine = [leg for leg in pool if leg.kind is kind]
        minutes = minutes_of(mine)
        b.scalars.append(
            cell(
                d,
                pop,
                **{
                    f"pool_{name}s": exchanges_of(mine),
                    f"pool_{name}_minutes": minutes,
                    f"pool_{name}_hours": s.hours(minutes),
                },
            )
        )
    return b


async def timeseries(ctx: s.Ctx) -> s.Built:
    b = _built(ctx, ["period_start", "period_end"])
    d = b.disclosure
    m = await micro(ctx)
    p, pop = ctx.period, m.population
    total = activity(in_period(ctx, m))
    buckets = [
        (start, end, activity(in_period(ctx, m, start, end)))
        for _, start, end in s.buckets(ctx.options.interval, p.start, p.end)
    ]
    # the running total of the published buckets, scaled to end at the published total of
    # the period (one quantity, one number); the buckets are not otherwise changed
    whole = sum(figures["minutes"] for _, _, figures in buckets)
    running = 0
    for start, end, figures in buckets:
        running += figures["minutes"]
        so_far = round(total["minutes"] * running / whole) if whole else 0
        active = await active_members(ctx, end)
        b.rows.append(
            (
                {"period_start": start.isoformat(), "period_end": end.isoformat()},
                [
                    cell(d, pop, **figures),
                    cell(d, pop, new_members=count_of(new_member_keys(ctx, m, start, end))),
                    cell(d, pop, active_members=count_of(active)),
                    cell(d, pop, cumulative_minutes=so_far, cumulative_hours=s.hours(so_far)),
                ],
            )
        )
    b.params["interval"] = ctx.options.interval
    b.scalars = [
        cell(d, pop, **total),
        cell(d, pop, new_members=count_of(new_member_keys(ctx, m, p.start, p.end))),
    ]
    return b


async def exchange_types(ctx: s.Ctx) -> s.Built:
    b = _built(ctx, ["kind"])
    d = b.disclosure
    m = await micro(ctx)
    legs = in_period(ctx, m)
    for kind in SERVICE_KINDS:
        mine = [leg for leg in legs if leg.kind is kind]
        b.rows.append(({"kind": kind.value}, [cell(d, m.population, **activity(mine))]))
    b.scalars = [cell(d, m.population, **activity(legs))]
    return b


async def categories(ctx: s.Ctx) -> s.Built:
    b = _built(ctx, ["category", "name"])
    d = b.disclosure
    m = await micro(ctx)
    names = await ctx.rows(
        select(Category.slug, func.min(Category.name))
        .where(Category.timebank_id.in_(ctx.ids))
        .group_by(Category.slug)
        .order_by(Category.slug)
    )
    legs = in_period(ctx, m)
    total = activity(legs)
    b.scalars = [cell(d, m.population, **total)]
    by_slug: dict[str | None, list[Leg]] = defaultdict(list)
    for leg in legs:
        by_slug[leg.category].append(leg)
    for slug, name in names:
        mine = by_slug.get(slug, [])
        figures = activity(mine)
        providers = parties_of(m, (leg for leg in mine if leg.minutes > 0))
        figures["providers"] = providers
        figures["share_of_hours"] = cellkey.clip_share(figures["minutes"], total["minutes"])
        b.rows.append(({"category": slug, "name": name}, [cell(d, m.population, **figures)]))
    return b


async def organisations(ctx: s.Ctx) -> s.Built:
    """Every organisation known at ``as_of``, whatever its status or activity."""
    b = _built(ctx, ["timebank", "organisation", "kind"])
    d = b.disclosure
    m = await micro(ctx)
    legs = in_period(ctx, m)
    by_exchange: dict[uuid.UUID, list[Leg]] = defaultdict(list)
    by_org: dict[uuid.UUID, list[Leg]] = defaultdict(list)
    for leg in legs:
        by_exchange[leg.exchange_id].append(leg)
        if leg.owner is OwnerType.organisation:
            by_org[leg.account_id].append(leg)
    slugs = {bank.id: bank.slug for bank in ctx.banks}
    orgs = await ctx.rows(
        select(
            Organisation.account_id, Organisation.timebank_id, Organisation.name, Organisation.kind
        )
        .where(Organisation.timebank_id.in_(ctx.ids), Organisation.created_at <= ctx.period.as_of)
        .order_by(Organisation.name, Organisation.id)
    )
    for account_id, tb_id, name, kind in orgs:
        mine = by_org.get(account_id, [])
        engaged = members_of(m, (x for leg in mine for x in by_exchange[leg.exchange_id]))
        given = minutes_of(leg for leg in mine if leg.minutes > 0)
        received = minutes_of(leg for leg in mine if leg.minutes < 0)
        row = cell(
            d,
            m.population,
            exchanges=exchanges_of(mine),
            members_engaged=count_of(engaged),
            minutes_given=given,
            hours_given=s.hours(given),
            minutes_received=received,
            hours_received=s.hours(received),
        )
        b.rows.append(({"timebank": slugs[tb_id], "organisation": name, "kind": kind.value}, [row]))
    return b


async def localities(ctx: s.Ctx) -> s.Built:
    """A row for each locality of the registered members (grouped ignoring case and
    surrounding spaces, labelled by the first spelling in code-point order) and
    ``not_stated``; participating members counted in their locality's row."""
    b = _built(ctx, ["locality"])
    d = b.disclosure
    m = await micro(ctx)
    population: dict[str | None, int] = defaultdict(int)
    label: dict[str, str] = {}
    for person in m.people.values():
        norm = person.locality.lower() if person.locality else None
        if person.registered:
            population[norm] += 1
            spelling = person.locality
            if norm is not None and spelling and (norm not in label or spelling < label[norm]):
                label[norm] = spelling
    population.setdefault(None, 0)
    mlegs = member_legs(in_period(ctx, m))
    by_norm: dict[str | None, list[Leg]] = defaultdict(list)
    for leg in mlegs:
        someone = m.people.get(leg.account_id)
        locality = someone.locality if someone else None
        by_norm[locality.lower() if locality else None].append(leg)
    order = sorted((n for n in population if n is not None), key=lambda n: (n, label[n]))
    for norm in [*order, None]:
        mine = by_norm.get(norm, [])
        figures = flows(mine, count_of(members_of(m, mine)))
        row = {"locality": s.NOT_STATED if norm is None else label[norm]}
        b.rows.append((row, [cell(d, population[norm], **figures)]))
    b.scalars = [cell(d, m.population, **flows(mlegs, count_of(members_of(m, mlegs))))]
    return b


async def demographics(ctx: s.Ctx) -> s.Built:
    """Consenting members only; population of a value = consenting registered members with
    it."""
    b = _built(ctx, ["dimension", "group"])
    d = b.disclosure
    m = await micro(ctx)
    p = ctx.period
    dims = [ctx.options.dimension] if ctx.options.dimension else list(s.DIMENSIONS)
    consenting = {a: person for a, person in m.people.items() if person.consenting}
    registered = {a: x.key for a, x in consenting.items() if x.registered}
    mlegs = [leg for leg in member_legs(in_period(ctx, m)) if leg.account_id in consenting]
    total = flows(mlegs, count_of(members_of(m, mlegs)))
    b.scalars = [
        cell(d, len(registered), consenting_registered_members=count_of(registered)),
        cell(d, len(registered), **{f"consenting_{k}": v for k, v in total.items()}),
    ]
    b.params["dimension"] = ctx.options.dimension or "all"
    for dim in dims:
        _, values = s._dimension(dim, p.end)
        # one pass per dimension: registered members and legs grouped by their value
        reg_by: dict[str, dict[uuid.UUID, int]] = defaultdict(dict)
        for a, k in registered.items():
            reg_by[consenting[a].values[dim]][a] = k
        legs_by: dict[str, list[Leg]] = defaultdict(list)
        for leg in mlegs:
            legs_by[consenting[leg.account_id].values[dim]].append(leg)
        for value in values:
            reg = reg_by.get(value, {})
            mine = legs_by.get(value, [])
            cells: list[s.Item] = [
                cell(d, len(reg), registered_members=count_of(reg)),
                cell(d, len(reg), **flows(mine, count_of(members_of(m, mine)))),
            ]
            b.rows.append(({"dimension": dim, "group": value}, cells))
    return b


async def activity_report(ctx: s.Ctx) -> s.Built:
    """Registered members at ``to`` by their last service exchange before it (any time)."""
    b = _built(ctx)
    d = b.disclosure
    m = await micro(ctx)
    p, pop = ctx.period, m.population
    span = await member_span(ctx)
    reg = registered_keys(m)
    n_reg = count_of(reg)

    def traded_since(months: int | None) -> dict[uuid.UUID, int]:
        since = None if months is None else add_months(p.end, -months)
        return {
            a: k for a, k in reg.items() if a in span and (since is None or span[a][1] >= since)
        }

    ever = count_of(traded_since(None))
    inactive = [
        count_of({a: k for a, k in reg.items() if a not in traded_since(n)}) for n in (12, 6, 3)
    ]
    i12, i6, i3 = monotone(inactive, n_reg)
    active = count_of(traded_since(12))
    b.scalars = [
        cell(d, pop, registered_members=n_reg),
        cell(d, pop, ever_traded_members=ever, ever_traded_share=cellkey.clip_share(ever, n_reg)),
        cell(
            d,
            pop,
            active_members=active,
            active_share=cellkey.clip_share(active, n_reg),
            inactive_12_months=i12,
            inactive_12_months_share=cellkey.clip_share(i12, n_reg),
        ),
        cell(d, pop, inactive_6_months=i6, inactive_6_months_share=cellkey.clip_share(i6, n_reg)),
        cell(d, pop, inactive_3_months=i3, inactive_3_months_share=cellkey.clip_share(i3, n_reg)),
    ]
    return b


async def reciprocity(ctx: s.Ctx) -> s.Built:
    b = _built(ctx, ["pattern"])
    d = b.disclosure
    m = await micro(ctx)
    gave: set[uuid.UUID] = set()
    received: set[uuid.UUID] = set()
    mlegs = member_legs(in_period(ctx, m))
    for leg in mlegs:
        (gave if leg.minutes > 0 else received).add(leg.account_id)
    everyone = members_of(m, mlegs)
    total = count_of(everyone)
    patterns = {
        "gave_and_received": gave & received,
        "gave_only": gave - received,
        "received_only": received - gave,
    }
    b.scalars = [cell(d, m.population, participating_members=total)]
    for name, accounts in patterns.items():
        n = count_of({a: everyone[a] for a in accounts})
        b.rows.append(
            (
                {"pattern": name},
                [cell(d, m.population, members=n, share=cellkey.clip_share(n, total))],
            )
        )
    return b


def _inequality(values: list[int]) -> tuple[float | None, float | None]:
    """Gini of hours traded and the top-10 % share, rounded to 0.01; None under 50 people."""
    n, total = len(values), sum(values)
    if n < MIN_PEOPLE_FOR_INEQUALITY or not total:
        return None, None
    ordered = sorted(values)
    weighted = sum(i * v for i, v in enumerate(ordered, start=1))
    gini = 2 * weighted / (n * total) - (n + 1) / n
    top = sum(ordered[-((n + 9) // 10) :])
    return round(gini, 2), round(top / total, 2)


async def distribution(ctx: s.Ctx) -> s.Built:
    b = _built(ctx, ["exchanges_per_member"])
    d = b.disclosure
    m = await micro(ctx)
    exchanges: dict[uuid.UUID, int] = defaultdict(int)
    traded: dict[uuid.UUID, int] = defaultdict(int)
    for leg in member_legs(in_period(ctx, m)):
        exchanges[leg.account_id] += 1
        traded[leg.account_id] += abs(leg.minutes)
    base = {**registered_keys(m), **{a: m.key(a) for a in exchanges}}
    total = count_of(base)
    for name, lo, hi in s.HISTOGRAM:
        mine = {
            a: k
            for a, k in base.items()
            if lo <= exchanges.get(a, 0) and (hi is None or exchanges.get(a, 0) <= hi)
        }
        n = count_of(mine)
        b.rows.append(
            (
                {"exchanges_per_member": name},
                [cell(d, m.population, members=n, share=cellkey.clip_share(n, total))],
            )
        )
    gini, top = _inequality(list(traded.values()))
    b.scalars = [
        cell(d, m.population, members=total),
        cell(d, m.population if gini is not None else 0, gini_hours=gini),
        cell(d, m.population if top is not None else 0, top_10_percent_share=top),
    ]
    return b


async def retention(ctx: s.Ctx) -> s.Built:
    """Every month of the period is a cohort (row), whoever joined in it; its population
    is its members."""
    b = _built(ctx, ["cohort"])
    d = b.disclosure
    m = await micro(ctx)
    p = ctx.period
    span = await member_span(ctx)
    start = p.start
    while start < p.end:
        nxt = add_months(start, 1)
        cohort = {a: x for a, x in m.people.items() if start <= x.joined_on < min(nxt, p.end)}
        size = count_of({a: x.key for a, x in cohort.items()})
        within = []
        for months in (3, 6, 12):
            hit = {
                a: x.key
                for a, x in cohort.items()
                if a in span and span[a][0] < add_months(x.joined_on, months)
            }
            within.append(count_of(hit))
        within = monotone(within, size)
        last_day = min(nxt, p.end) - timedelta(days=1)
        cells: list[s.Item] = [cell(d, len(cohort), members=size)]
        for months, n in zip((3, 6, 12), within, strict=True):
            window = cell(
                d,
                len(cohort),
                **{
                    f"first_exchange_within_{months}_months": n,
                    f"first_exchange_within_{months}_months_share": cellkey.clip_share(n, size),
                },
            )
            window.available = add_months(last_day, months) <= p.end
            cells.append(window)
        b.rows.append(({"cohort": f"{start:%Y-%m}"}, cells))
        start = nxt
    return b


async def social_value(ctx: s.Ctx) -> s.Built:
    b = _built(ctx)
    d = b.disclosure
    rate = s.valuation_rate(b, ctx.options)
    m = await micro(ctx)
    figures = activity(in_period(ctx, m))
    pence = (figures["minutes"] * rate + 30) // 60
    b.scalars = [
        cell(d, m.population, **figures, value_pence=pence, value_pounds=round(pence / 100, 2))
    ]
    return b


PUBLISHED: dict[str, s.Builder] = {
    "summary": summary,
    "timeseries": timeseries,
    "exchange-types": exchange_types,
    "categories": categories,
    "organisations": organisations,
    "localities": localities,
    "demographics": demographics,
    "activity": activity_report,
    "reciprocity": reciprocity,
    "distribution": distribution,
    "retention": retention,
    "social-value": social_value,
}
assert set(PUBLISHED) == set(s.REPORTS)
