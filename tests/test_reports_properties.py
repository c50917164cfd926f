"""Property-based test of the reports (SPEC §3.7): random small communities and histories —
members joining on different dates, simple and group exchanges, reversals, pool grants and
donations, proposals left pending, rejected or confirmed, members leaving and erased — and
every report checked against a deliberately naive recomputation in Python from the raw
tables, on both engines.

Disclosure control is checked independently of the product's own algorithm: every figure
over 1…k−1 people must be withheld, and a generic linear-algebra check (exact fractions)
proves that no withheld value can be worked out from the other figures of the same response
through the relations the report implies (rows sum to totals, cumulative sums, shares).
"""

from __future__ import annotations

import csv
import io
import math
import os
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import Api
from timebank.ledger.models import Account, Exchange, Posting
from timebank.members.models import Member
from timebank.organisations.models import Organisation
from timebank.timebanks.models import Category, TimeBank

K = 5  # the lowest threshold a bank may have, so small communities show both sides
SERVICE = {"p2p", "p2o", "o2p", "o2o"}
REPORT_NAMES = [
    "summary",
    "timeseries",
    "exchange-types",
    "categories",
    "organisations",
    "localities",
    "demographics",
    "activity",
    "reciprocity",
    "distribution",
    "retention",
    "social-value",
]
KEYS = {
    "timeseries": ["period_start", "period_end"],
    "exchange-types": ["kind"],
    "categories": ["category", "name"],
    "organisations": ["timebank", "organisation", "kind"],
    "localities": ["locality"],
    "demographics": ["dimension", "group"],
    "reciprocity": ["pattern"],
    "distribution": ["exchanges_per_member"],
    "retention": ["cohort"],
}
Key = tuple[str, ...]
Var = tuple[Key, str]


# --- month arithmetic, written out again on purpose -----------------------------------------


def months_from(d: date, n: int) -> date:
    y, m = divmod(d.year * 12 + d.month - 1 + n, 12)
    m += 1
    for day in (d.day, None):
        try:
            return date(y, m, day) if day else date(y, m, 1)
        except ValueError:
            # the day does not exist in that month: the 1st of the next one
            y2, m2 = divmod(y * 12 + m, 12)
            return date(y2, m2 + 1, 1)
    raise AssertionError


def hours(m: int) -> float:
    return round(m / 60, 2)


def ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


# --- raw data --------------------------------------------------------------------------------


@dataclass
class Raw:
    exchanges: dict[Any, Any] = field(default_factory=dict)
    postings: dict[Any, list[tuple[Any, int]]] = field(default_factory=lambda: defaultdict(list))
    owner: dict[Any, str] = field(default_factory=dict)
    members: dict[Any, Member] = field(default_factory=dict)  # by account id
    orgs: dict[Any, Organisation] = field(default_factory=dict)  # by account id
    categories: dict[Any, tuple[str, str]] = field(default_factory=dict)
    slugs: dict[Any, str] = field(default_factory=dict)


async def load(sm: async_sessionmaker[AsyncSession], slugs: list[str]) -> Raw:
    raw = Raw()
    async with sm() as s:
        banks = (await s.execute(select(TimeBank).where(TimeBank.slug.in_(slugs)))).scalars()
        raw.slugs = {b.id: b.slug for b in banks}
        ids = list(raw.slugs)
        for x in (await s.execute(select(Exchange).where(Exchange.timebank_id.in_(ids)))).scalars():
            raw.exchanges[x.id] = x
        for p in (await s.execute(select(Posting))).scalars():
            if p.exchange_id in raw.exchanges:
                raw.postings[p.exchange_id].append((p.account_id, p.minutes))
        for a in (await s.execute(select(Account).where(Account.timebank_id.in_(ids)))).scalars():
            raw.owner[a.id] = a.owner_type.value
        for m in (await s.execute(select(Member).where(Member.timebank_id.in_(ids)))).scalars():
            raw.members[m.account_id] = m
        orgs = select(Organisation).where(Organisation.timebank_id.in_(ids))
        for o in (await s.execute(orgs)).scalars():
            raw.orgs[o.account_id] = o
        for c in (await s.execute(select(Category).where(Category.timebank_id.in_(ids)))).scalars():
            raw.categories[c.id] = (c.slug, c.name)
    return raw


# --- the naive model -------------------------------------------------------------------------


class Naive:
    """Every figure of every report, recomputed with loops over raw rows. Each figure is
    (value, people): the people it is about, for the primary-suppression check."""

    def __init__(self, raw: Raw, start: date, end: date, as_of: datetime) -> None:
        self.raw, self.start, self.end, self.as_of = raw, start, end, as_of
        reversed_at = {
            x.reverses: x.recorded_at
            for x in raw.exchanges.values()
            if x.reverses is not None and x.recorded_at <= as_of
        }
        self.reversed = set(reversed_at)

    def counted(self, x: Any, start: date | None, end: date, kinds: set[str] = SERVICE) -> bool:
        return (
            x.status.value == "recorded"
            and x.kind.value in kinds
            and (start is None or x.occurred_on >= start)
            and x.occurred_on < end
            and x.recorded_at <= self.as_of
            and x.id not in self.reversed
        )

    def service(self, start: date | None = None, end: date | None = None) -> list[Any]:
        s = self.start if start is None else start
        return [x for x in self.raw.exchanges.values() if self.counted(x, s, end or self.end)]

    def member_legs(self, xs: list[Any]) -> list[tuple[Any, Any, int]]:
        return [
            (x, a, m)
            for x in xs
            for a, m in self.raw.postings[x.id]
            if self.raw.owner[a] == "member"
        ]

    def people(self, xs: list[Any]) -> set[Any]:
        return {a for _, a, _ in self.member_legs(xs)}

    def registered(self, m: Member) -> bool:
        return (
            m.joined_on < self.end
            and m.created_at <= self.as_of
            and (m.left_on is None or m.left_on >= self.end)
            and not (m.status.value == "erased" and m.left_on is None)
        )

    def flows(self) -> dict[Any, list[int]]:
        """account → [given, received, exchanges] over the period's service exchanges."""
        out: dict[Any, list[int]] = defaultdict(lambda: [0, 0, 0])
        for _, a, m in self.member_legs(self.service()):
            f = out[a]
            f[0 if m > 0 else 1] += abs(m)
            f[2] += 1
        return out

    def active(self, end: date) -> int:
        return len(self.people(self.service(months_from(end, -12), end)))

    # each returns {"": {figure: (value, people)}, rowkey: {...}}

    def summary(self) -> dict[Key, dict[str, Any]]:
        xs = self.service()
        flows = self.flows()
        p = len(flows)
        minutes = sum(x.minutes for x in xs)
        v = sorted(f[0] + f[1] for f in flows.values())
        reg = sum(self.registered(m) for m in self.raw.members.values())
        new = sum(
            self.start <= m.joined_on < self.end and m.created_at <= self.as_of
            for m in self.raw.members.values()
        )
        orgs = {
            a for x in xs for a, _ in self.raw.postings[x.id] if self.raw.owner[a] == "organisation"
        }
        act = self.active(self.end)
        out = {
            "exchanges": (len(xs), p),
            "minutes": (minutes, p),
            "hours": (hours(minutes), p),
            "participating_members": (p, p),
            "participating_organisations": (len(orgs), 0),
            "active_members": (act, act),
            "registered_members": (reg, reg),
            "new_members": (new, new),
            "mean_hours_per_participating_member": (
                round(sum(v) / p / 60, 2) if p else None,
                p,
            ),
            "median_hours_per_participating_member": (
                round(statistics.median(v) / 60, 2) if p else None,
                p,
            ),
        }
        for kind, name in (("pool_grant", "grant"), ("pool_donation", "donation")):
            pool = [
                x
                for x in self.raw.exchanges.values()
                if self.counted(x, self.start, self.end, {kind})
            ]
            who = len(self.people(pool))
            m = sum(x.minutes for x in pool)
            out[f"pool_{name}s"] = (len(pool), who)
            out[f"pool_{name}_minutes"] = (m, who)
            out[f"pool_{name}_hours"] = (hours(m), who)
        return {(): out}

    def timeseries(self, interval: str) -> dict[Key, dict[str, Any]]:
        def trunc(d: date) -> date:
            if interval == "week":
                return d - timedelta(days=d.weekday())
            if interval == "month":
                return d.replace(day=1)
            return date(d.year, (d.month - 1) // 3 * 3 + 1, 1)

        out: dict[Key, dict[str, Any]] = {}
        key = trunc(self.start)
        seen: set[Any] = set()
        cum = ex_total = new_total = 0
        while key < self.end:
            nxt = (
                key + timedelta(days=7)
                if interval == "week"
                else months_from(key, 1 if interval == "month" else 3)
            )
            s, e = max(key, self.start), min(nxt, self.end)
            xs = self.service(s, e)
            who = self.people(xs)
            seen |= who
            m = sum(x.minutes for x in xs)
            cum += m
            ex_total += len(xs)
            new = sum(
                s <= mm.joined_on < e and mm.created_at <= self.as_of
                for mm in self.raw.members.values()
            )
            new_total += new
            act = self.active(e)
            out[(s.isoformat(), e.isoformat())] = {
                "exchanges": (len(xs), len(who)),
                "minutes": (m, len(who)),
                "hours": (hours(m), len(who)),
                "new_members": (new, new),
                "active_members": (act, act),
                "cumulative_minutes": (cum, len(seen)),
                "cumulative_hours": (hours(cum), len(seen)),
            }
            key = nxt
        p = len(seen)
        out[()] = {
            "exchanges": (ex_total, p),
            "minutes": (cum, p),
            "hours": (hours(cum), p),
            "new_members": (new_total, new_total),
        }
        return out

    def exchange_types(self) -> dict[Key, dict[str, Any]]:
        xs = self.service()
        out: dict[Key, dict[str, Any]] = {}
        for kind in ("p2p", "p2o", "o2p", "o2o"):
            mine = [x for x in xs if x.kind.value == kind]
            who = len(self.people(mine))
            m = sum(x.minutes for x in mine)
            out[(kind,)] = {
                "exchanges": (len(mine), who),
                "minutes": (m, who),
                "hours": (hours(m), who),
            }
        p = len(self.people(xs))
        m = sum(x.minutes for x in xs)
        out[()] = {"exchanges": (len(xs), p), "minutes": (m, p), "hours": (hours(m), p)}
        return out

    def categories(self) -> dict[Key, dict[str, Any]]:
        xs = self.service()
        total = sum(x.minutes for x in xs)
        p = len(self.people(xs))
        names: dict[str, str] = {}
        for slug, name in self.raw.categories.values():
            names[slug] = min(names.get(slug, name), name)
        out: dict[Key, dict[str, Any]] = {}
        for slug, name in names.items():
            mine = [x for x in xs if self.raw.categories[x.category_id][0] == slug]
            who = len(self.people(mine))
            m = sum(x.minutes for x in mine)
            providers = {a for x in mine for a, mm in self.raw.postings[x.id] if mm > 0}
            out[(slug, name)] = {
                "exchanges": (len(mine), who),
                "minutes": (m, who),
                "hours": (hours(m), who),
                "providers": (len(providers), who),
                "share_of_hours": (ratio(m, total), max(who, p if 0 < p < K else 0)),
            }
        out[()] = {"exchanges": (len(xs), p), "minutes": (total, p), "hours": (hours(total), p)}
        return out

    def organisations(self) -> dict[Key, dict[str, Any]]:
        xs = self.service()
        out: dict[Key, dict[str, Any]] = {}
        for account, o in self.raw.orgs.items():
            if o.created_at > self.as_of:
                continue
            mine = [x for x in xs if any(a == account for a, _ in self.raw.postings[x.id])]
            if not mine and o.status.value != "active":
                continue
            given = sum(
                m for x in mine for a, m in self.raw.postings[x.id] if a == account and m > 0
            )
            got = -sum(
                m for x in mine for a, m in self.raw.postings[x.id] if a == account and m < 0
            )
            who = len(self.people(mine))
            out[(self.raw.slugs[o.timebank_id], o.name, o.kind.value)] = {
                "exchanges": (len(mine), who),
                "members_engaged": (who, who),
                "minutes_given": (given, who),
                "hours_given": (hours(given), who),
                "minutes_received": (got, who),
                "hours_received": (hours(got), who),
            }
        return out

    def localities(self) -> dict[Key, dict[str, Any]]:
        flows = self.flows()
        groups: dict[str | None, list[Any]] = defaultdict(list)
        for a, f in flows.items():
            loc = self.raw.members[a].locality
            norm = loc.strip().lower() if loc and loc.strip() else None
            groups[norm].append((loc.strip() if loc else None, f))
        out: dict[Key, dict[str, Any]] = {}
        for norm, items in groups.items():
            label = "not_stated" if norm is None else min(x for x, _ in items)
            out[(label,)] = flow_figures([f for _, f in items])
        out[()] = flow_figures(list(flows.values()))
        return out

    def demographics(self) -> dict[Key, dict[str, Any]]:
        y = self.end.year

        def band(m: Member) -> str:
            if m.birth_year is None:
                return "not_stated"
            age = y - m.birth_year
            for lo, hi, name in (
                (0, 17, "under_18"),
                (18, 24, "18-24"),
                (25, 34, "25-34"),
                (35, 44, "35-44"),
                (45, 54, "45-54"),
                (55, 64, "55-64"),
                (65, 74, "65-74"),
            ):
                if lo <= age <= hi or (name == "under_18" and age < 0):
                    return name
            return "75+"

        values = {
            "age_band": [
                "under_18",
                "18-24",
                "25-34",
                "35-44",
                "45-54",
                "55-64",
                "65-74",
                "75+",
                "not_stated",
            ],
            "gender": ["female", "male", "non_binary", "other", "prefer_not_to_say", "not_stated"],
            "disability": ["yes", "no", "prefer_not_to_say", "not_stated"],
            "ethnicity": [
                "asian",
                "black",
                "mixed",
                "white",
                "other",
                "prefer_not_to_say",
                "not_stated",
            ],
        }

        def value(m: Member, dim: str) -> str:
            if dim == "age_band":
                return band(m)
            v = getattr(m, dim)
            return "not_stated" if v is None else v.value

        def consenting(m: Member) -> bool:
            return m.statistics_consent and m.status.value != "erased"

        flows = self.flows()
        out: dict[Key, dict[str, Any]] = {}
        reg_all = [m for m in self.raw.members.values() if self.registered(m) and consenting(m)]
        part_all = [f for a, f in flows.items() if consenting(self.raw.members[a])]
        for dim, vals in values.items():
            for v in vals:
                reg = sum(value(m, dim) == v for m in reg_all)
                part = [
                    f
                    for a, f in flows.items()
                    if consenting(self.raw.members[a]) and value(self.raw.members[a], dim) == v
                ]
                out[(dim, v)] = {"registered_members": (reg, reg), **flow_figures(part)}
        top = flow_figures(part_all)
        out[()] = {
            "consenting_registered_members": (len(reg_all), len(reg_all)),
            **{f"consenting_{k}": v for k, v in top.items()},
        }
        return out

    def activity_atoms(self) -> list[int]:
        """never, over 12 months, 6–12, 3–6, within 3 months (registered members at to)."""
        last: dict[Any, date] = {}
        for x, a, _ in self.member_legs(self.service(date.min, self.end)):
            last[a] = max(last.get(a, x.occurred_on), x.occurred_on)
        atoms = [0] * 5
        for a, m in self.raw.members.items():
            if not self.registered(m):
                continue
            d = last.get(a)
            if d is None:
                atoms[0] += 1
            elif d >= months_from(self.end, -3):
                atoms[4] += 1
            elif d >= months_from(self.end, -6):
                atoms[3] += 1
            elif d >= months_from(self.end, -12):
                atoms[2] += 1
            else:
                atoms[1] += 1
        return atoms

    def activity(self) -> dict[Key, dict[str, Any]]:
        a = self.activity_atoms()
        r = sum(a)
        c1, c2, c3, c4 = (sum(a[:i]) for i in range(1, 5))
        return {
            (): {
                "registered_members": (r, r),
                "ever_traded_members": (r - c1, r),
                "ever_traded_share": (ratio(r - c1, r), r),
                "active_members": (r - c2, r),
                "active_share": (ratio(r - c2, r), r),
                "inactive_12_months": (c2, r),
                "inactive_12_months_share": (ratio(c2, r), r),
                "inactive_6_months": (c3, r),
                "inactive_6_months_share": (ratio(c3, r), r),
                "inactive_3_months": (c4, r),
                "inactive_3_months_share": (ratio(c4, r), r),
            }
        }

    def reciprocity(self) -> dict[Key, dict[str, Any]]:
        flows = self.flows()
        p = len(flows)
        counts = {"gave_and_received": 0, "gave_only": 0, "received_only": 0}
        for g, r, _ in flows.values():
            counts["gave_and_received" if g and r else "gave_only" if g else "received_only"] += 1
        out: dict[Key, dict[str, Any]] = {
            (k,): {"members": (n, n), "share": (ratio(n, p), n)} for k, n in counts.items()
        }
        out[()] = {"participating_members": (p, p)}
        return out

    def distribution(self) -> dict[Key, dict[str, Any]]:
        flows = self.flows()
        base = {a for a, m in self.raw.members.items() if self.registered(m)} | set(flows)
        hist = {"0": 0, "1": 0, "2-5": 0, "6-10": 0, "11-25": 0, "26+": 0}
        for a in base:
            n = flows[a][2] if a in flows else 0
            label = (
                "0"
                if n == 0
                else "1"
                if n == 1
                else "2-5"
                if n <= 5
                else "6-10"
                if n <= 10
                else "11-25"
                if n <= 25
                else "26+"
            )
            hist[label] += 1
        out: dict[Key, dict[str, Any]] = {
            (k,): {"members": (n, n), "share": (ratio(n, len(base)), n)} for k, n in hist.items()
        }
        v = sorted(f[0] + f[1] for f in flows.values())
        p = len(v)
        gini = None
        if p and sum(v):
            gini = sum(abs(x - y) for x in v for y in v) / (2 * p * p * (sum(v) / p))
        top = math.ceil(p / 10)
        out[()] = {
            "members": (len(base), len(base)),
            "gini_hours": (gini, p),
            "top_10_percent_share": (ratio(sum(sorted(v, reverse=True)[:top]), sum(v)), top),
        }
        return out

    def retention_cohorts(self) -> dict[str, tuple[int, list[int], list[bool]]]:
        first: dict[Any, date] = {}
        for x, a, _ in self.member_legs(self.service(date.min, self.end)):
            first[a] = min(first.get(a, x.occurred_on), x.occurred_on)
        cohorts: dict[str, list[Any]] = defaultdict(list)
        for a, m in self.raw.members.items():
            if self.start <= m.joined_on < self.end and m.created_at <= self.as_of:
                cohorts[f"{m.joined_on:%Y-%m}"].append((m.joined_on, first.get(a)))
        out = {}
        for label, people in cohorts.items():
            y, mo = (int(x) for x in label.split("-"))
            last_day = min(months_from(date(y, mo, 1), 1), self.end) - timedelta(days=1)
            within = [
                sum(f is not None and f < months_from(j, n) for j, f in people) for n in (3, 6, 12)
            ]
            seen = [months_from(last_day, n) <= self.end for n in (3, 6, 12)]
            out[label] = (len(people), within, seen)
        return out

    def retention(self) -> dict[Key, dict[str, Any]]:
        out: dict[Key, dict[str, Any]] = {}
        for label, (n, within, seen) in self.retention_cohorts().items():
            row: dict[str, Any] = {"members": (n, n)}
            for months, r, ok in zip((3, 6, 12), within, seen, strict=True):
                row[f"first_exchange_within_{months}_months"] = (r if ok else None, n)
                row[f"first_exchange_within_{months}_months_share"] = (
                    ratio(r, n) if ok else None,
                    n,
                )
            out[(label,)] = row
        return out

    def social_value(self, rate: int) -> dict[Key, dict[str, Any]]:
        xs = self.service()
        p = len(self.people(xs))
        m = sum(x.minutes for x in xs)
        pence = int(Fraction(m * rate, 60) + Fraction(1, 2))
        return {
            (): {
                "exchanges": (len(xs), p),
                "minutes": (m, p),
                "hours": (hours(m), p),
                "value_pence": (pence, p),
                "value_pounds": (round(pence / 100, 2), p),
                "rate_pence_per_hour": (rate, 0),
            }
        }

    def report(self, name: str, interval: str, rate: int) -> dict[Key, dict[str, Any]]:
        if name == "timeseries":
            return self.timeseries(interval)
        if name == "social-value":
            return self.social_value(rate)
        return getattr(self, name.replace("-", "_"))()  # type: ignore[no-any-return]


def flow_figures(flows: list[Any]) -> dict[str, Any]:
    n = len(flows)
    g = sum(f[0] for f in flows)
    r = sum(f[1] for f in flows)
    return {
        "participating_members": (n, n),
        "minutes_given": (g, n),
        "hours_given": (hours(g), n),
        "minutes_received": (r, n),
        "hours_received": (hours(r), n),
    }


# --- reading a served report -----------------------------------------------------------------


@dataclass
class Served:
    values: dict[Var, Any]
    suppressed: set[Var]
    rows: list[Key]


def parse_csv(name: str, text: str) -> Served:
    """The tidy CSV: one line per figure, with its own ``suppressed`` flag."""
    keys = KEYS.get(name, [])
    lines = list(csv.DictReader(io.StringIO(text)))
    values: dict[Var, Any] = {}
    suppressed: set[Var] = set()
    rows: list[Key] = []
    for line in lines:
        key = tuple(line[k] for k in keys)
        key = () if not any(key) else key
        if key and key not in rows:
            rows.append(key)
        var = (key, line["figure"])
        raw = line["value"]
        values[var] = None if raw == "" else _number(raw)
        if line["suppressed"] == "true":
            suppressed.add(var)
            assert raw == ""
    return Served(values, suppressed, rows)


def _number(raw: str) -> Any:
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


# --- derivability: exact linear algebra ------------------------------------------------------


def relations(name: str, served: Served) -> list[dict[Any, Fraction]]:
    """The linear relations a reader can rely on, from the report's meaning alone."""
    eqs: list[dict[Any, Fraction]] = []
    rows = served.rows
    one = Fraction(1)

    def total(figure: str, total_figure: str | None = None, keys: list[Key] | None = None) -> None:
        eq = {(r, figure): one for r in (rows if keys is None else keys)}
        eq[((), total_figure or figure)] = -one
        eqs.append(eq)

    def share(var: Var, num: Var, den: Var) -> None:
        s = served.values.get(var)
        if s is not None:
            eqs.append({num: one, den: -Fraction(str(s))})

    if name == "timeseries":
        prev: Var | None = None
        for r in rows:
            eq = {(r, "cumulative_minutes"): one, (r, "minutes"): -one}
            if prev:
                eq[prev] = -one
            eqs.append(eq)
            prev = (r, "cumulative_minutes")
        assert prev is not None
        eqs.append({prev: one, ((), "minutes"): -one})
        total("exchanges")
        total("new_members")
    elif name in ("exchange-types", "categories"):
        total("exchanges")
        total("minutes")
        if name == "categories":
            for r in rows:
                share((r, "share_of_hours"), (r, "minutes"), ((), "minutes"))
    elif name == "localities":
        for f in ("participating_members", "minutes_given", "minutes_received"):
            total(f)
    elif name == "demographics":
        for dim in ("age_band", "gender", "disability", "ethnicity"):
            keys = [r for r in rows if r[0] == dim]
            total("registered_members", "consenting_registered_members", keys)
            for f in ("participating_members", "minutes_given", "minutes_received"):
                total(f, f"consenting_{f}", keys)
    elif name in ("reciprocity", "distribution"):
        whole = "participating_members" if name == "reciprocity" else "members"
        total("members", whole)
        for r in rows:
            share((r, "share"), (r, "members"), ((), whole))
    elif name == "activity":
        a = [("atom", i) for i in range(5)]
        g = ((), "")
        v = {
            f: ((), f)
            for f in (
                "registered_members",
                "ever_traded_members",
                "active_members",
                "inactive_12_months",
                "inactive_6_months",
                "inactive_3_months",
            )
        }
        eqs.append({v["registered_members"]: one, **dict.fromkeys(a, -one)})
        eqs.append({v["ever_traded_members"]: one, v["registered_members"]: -one, a[0]: one})
        eqs.append({v["inactive_12_months"]: one, a[0]: -one, a[1]: -one})
        eqs.append(
            {v["active_members"]: one, v["registered_members"]: -one, v["inactive_12_months"]: one}
        )
        eqs.append({v["inactive_6_months"]: one, v["inactive_12_months"]: -one, a[2]: -one})
        eqs.append({v["inactive_3_months"]: one, v["inactive_6_months"]: -one, a[3]: -one})
        for f in ("ever_traded", "active"):
            share(((), f"{f}_share"), v[f"{f}_members"], v["registered_members"])
        for n in (3, 6, 12):
            share(
                ((), f"inactive_{n}_months_share"),
                v[f"inactive_{n}_months"],
                v["registered_members"],
            )
        del g
    elif name == "retention":
        for r in rows:
            b = [("atom", r, i) for i in range(4)]
            w = [(r, f"first_exchange_within_{n}_months") for n in (3, 6, 12)]
            eqs.append({w[0]: one, b[0]: -one})
            eqs.append({w[1]: one, w[0]: -one, b[1]: -one})
            eqs.append({w[2]: one, w[1]: -one, b[2]: -one})
            eqs.append({(r, "members"): one, w[2]: -one, b[3]: -one})
            for n, var in zip((3, 6, 12), w, strict=True):
                share((r, f"first_exchange_within_{n}_months_share"), var, (r, "members"))
    return eqs


def derivable(eqs: list[dict[Any, Fraction]], values: dict[Any, Any]) -> set[Any]:
    """Unknowns (variables without a published value) that the equations pin down."""
    unknown = sorted({v for eq in eqs for v in eq if values.get(v) is None}, key=repr)
    col = {v: i for i, v in enumerate(unknown)}
    matrix = []
    for eq in eqs:
        row = [Fraction(0)] * len(unknown)
        for v, c in eq.items():
            if v in col:
                row[col[v]] += c
        if any(row):
            matrix.append(row)
    pivots: list[int] = []
    r = 0
    for c in range(len(unknown)):
        pivot = next((i for i in range(r, len(matrix)) if matrix[i][c] != 0), None)
        if pivot is None:
            continue
        matrix[r], matrix[pivot] = matrix[pivot], matrix[r]
        lead = matrix[r][c]
        matrix[r] = [x / lead for x in matrix[r]]
        for i in range(len(matrix)):
            if i != r and matrix[i][c] != 0:
                f = matrix[i][c]
                matrix[i] = [a - f * b for a, b in zip(matrix[i], matrix[r], strict=True)]
        pivots.append(c)
        r += 1
    out = set()
    for i, c in enumerate(pivots):
        if all(x == 0 for j, x in enumerate(matrix[i]) if j != c):
            out.add(unknown[c])
    return out


def check_disclosure(
    name: str, served: Served, naive: Naive, expected: dict[Key, dict[str, Any]]
) -> None:
    eqs = relations(name, served)
    pinned = derivable(eqs, served.values)
    leaked = pinned & served.suppressed
    assert not leaked, f"{name}: suppressed values can be worked out: {leaked}"
    # hidden atoms (activity, retention) are counts of people: none of 1…k−1 may be pinned
    if name == "activity":
        atoms = naive.activity_atoms()
        for v in pinned:
            if v[0] == "atom":
                assert not 0 < atoms[v[1]] < K, f"activity atom {v} = {atoms[v[1]]} is derivable"
    if name == "retention":
        cohorts = naive.retention_cohorts()
        for v in pinned:
            if v[0] == "atom":
                n, within, _ = cohorts[v[1][0]]
                sizes = [within[0], within[1] - within[0], within[2] - within[1], n - within[2]]
                assert not 0 < sizes[v[2]] < K, f"retention atom {v} is derivable"
    del expected


def compare(name: str, served: Served, expected: dict[Key, dict[str, Any]]) -> None:
    assert set(served.rows) == {k for k in expected if k}, (name, served.rows, list(expected))
    for key, figs in expected.items():
        for figure, (value, people) in figs.items():
            var = (key, figure)
            assert var in served.values, f"{name}: {var} missing"
            got = served.values[var]
            if 0 < people < K and value is not None:
                assert var in served.suppressed, f"{name}: {var} over {people} people not withheld"
            if var in served.suppressed:
                continue
            if isinstance(value, float) and figure == "gini_hours":
                assert got is not None and abs(got - value) < 1e-3, (name, var, got, value)
            else:
                assert got == value, f"{name}: {var} = {got}, expected {value}"


# --- the generated community -----------------------------------------------------------------

LOCALITIES = [None, "Irvine", " irvine ", "IRVINE", "Largs", "largs ", "", "Kilwinning"]
member_st = st.fixed_dictionaries(
    {
        "joined_days_ago": st.integers(0, 420),
        "locality": st.sampled_from(LOCALITIES),
        "consent": st.booleans(),
        "gender": st.sampled_from([None, "female", "male", "prefer_not_to_say"]),
        "birth_year": st.one_of(st.none(), st.integers(1940, 2012)),
        "fate": st.sampled_from(["stays", "stays", "stays", "left", "erased"]),
    }
)
party = st.integers(0, 30)
days = st.integers(0, 400)
minutes_st = st.integers(1, 300)
op_st = st.one_of(
    st.tuples(
        st.just("simple"),
        party,
        party,
        minutes_st,
        days,
        st.sampled_from(["transport", "other", "companionship"]),
    ),
    st.tuples(st.just("group"), party, st.lists(party, min_size=2, max_size=3), minutes_st, days),
    st.tuples(st.just("grant"), party, minutes_st, days),
    st.tuples(st.just("donation"), party, minutes_st, days),
    st.tuples(st.just("reverse"), st.integers(0, 40)),
    st.tuples(
        st.just("propose"),
        party,
        party,
        minutes_st,
        days,
        st.sampled_from(["confirm", "reject", "cancel", "pending"]),
    ),
    st.tuples(st.just("checkpoint")),
)
community_st = st.fixed_dictionaries(
    {
        "members": st.lists(member_st, min_size=3, max_size=13),
        "orgs": st.integers(0, 2),
        "ops": st.lists(op_st, min_size=1, max_size=28),
        "interval": st.sampled_from(["week", "month", "quarter"]),
        "months": st.integers(1, 15),
        "rate": st.sampled_from([None, 1050]),
        # a second period of odd days: whole months are served from the rollups, others
        # from the ledger's legs, and both must agree with the naive recomputation
        "shift": st.tuples(st.integers(1, 20), st.integers(0, 20)),
    }
)


async def build(api: Api, community: dict[str, Any], today: date) -> tuple[str, list[datetime]]:
    tb = await api.timebank(suppression_threshold=K, member_min_balance_minutes=None)
    slug = tb["slug"]
    members = []
    for i, m in enumerate(community["members"]):
        fields: dict[str, Any] = {
            "statistics_consent": m["consent"],
            "joined_on": (today - timedelta(days=m["joined_days_ago"])).isoformat(),
        }
        for f in ("locality", "gender", "birth_year"):
            if m[f] is not None:
                fields[f] = m[f]
        members.append(await api.member(slug, f"Member {i}", **fields))
    orgs = [await api.organisation(slug, f"Org {i}") for i in range(community["orgs"])]
    parties = [{"member_id": m["id"]} for m in members] + [
        {"organisation_id": o["id"]} for o in orgs
    ]
    pool = {"account_id": tb["pool_account_id"]}
    recorded: list[str] = []
    keys: dict[int, str] = {}
    checkpoints: list[datetime] = []

    def on(days_ago: int) -> str:
        return (today - timedelta(days=days_ago)).isoformat()

    for op in community["ops"]:
        kind = op[0]
        if kind == "checkpoint":
            checkpoints.append(datetime.now(UTC))
            continue
        if kind == "reverse":
            if recorded:
                ex = recorded[op[1] % len(recorded)]
                await api.post(f"/v1/timebanks/{slug}/exchanges/{ex}/reverse", json={"reason": "x"})
            continue
        if kind == "simple":
            _, p, r, minutes, ago, cat = op
            body = {
                "provider": parties[p % len(parties)],
                "recipient": parties[r % len(parties)],
                "minutes": minutes,
                "category": cat,
                "occurred_on": on(ago),
            }
        elif kind == "group":
            _, p, rs, minutes, ago = op
            n = len(members)
            provider = p % n
            learners = sorted({r % n for r in rs} - {provider})
            if not learners:
                continue
            body = {
                "providers": [{"party": parties[provider], "minutes": minutes * len(learners)}],
                "recipients": [{"party": parties[i], "minutes": minutes} for i in learners],
                "category": "learning-teaching",
                "occurred_on": on(ago),
            }
        elif kind in ("grant", "donation"):
            _, p, minutes, ago = op
            m = parties[p % len(members)]
            body = {"provider": m, "recipient": pool, "minutes": minutes, "occurred_on": on(ago)}
            if kind == "donation":
                body["provider"], body["recipient"] = pool, m
        else:
            _, p, r, minutes, ago, decision = op
            n = len(members)
            proposer = p % n
            if proposer not in keys:
                keys[proposer] = await api.key(slug, "member", member_id=members[proposer]["id"])
            as_member = api.as_key(keys[proposer])
            body = {
                "provider": parties[proposer],
                "recipient": parties[r % len(parties)],
                "minutes": minutes,
                "category": "other",
                "occurred_on": on(ago),
            }
            resp = await as_member.exchange(slug, body)
            if resp.status_code != 201:
                continue
            ex = resp.json()["id"]
            if decision == "cancel":
                await as_member.post(f"/v1/timebanks/{slug}/exchanges/{ex}/cancel")
            elif decision != "pending":
                resp = await api.post(f"/v1/timebanks/{slug}/exchanges/{ex}/{decision}", json={})
                if decision == "confirm" and resp.status_code == 200:
                    recorded.append(ex)
            continue
        resp = await api.exchange(slug, body)
        if resp.status_code == 201:
            recorded.append(resp.json()["id"])
    for m, spec in zip(members, community["members"], strict=True):
        if spec["fate"] == "left":
            await api.patch(f"/v1/timebanks/{slug}/members/{m['id']}", json={"status": "left"})
        elif spec["fate"] == "erased":
            await api.post(f"/v1/timebanks/{slug}/members/{m['id']}/erase")
    return slug, checkpoints


async def check_report(
    api: Api, slug: str, name: str, naive: Naive, params: dict[str, Any], interval: str, rate: int
) -> None:
    r = await api.get(f"/v1/timebanks/{slug}/reports/{name}", params={**params, "format": "csv"})
    assert r.status_code == 200, r.text
    served = parse_csv(name, r.text)
    expected = naive.report(name, interval, rate)
    compare(name, served, expected)
    check_disclosure(name, served, naive, expected)


@settings(
    max_examples=int(os.environ.get("TIMEBANK_REPORT_EXAMPLES", "20")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(community=community_st)
async def test_every_report_matches_a_naive_recomputation_and_hides_small_cells(
    api: Api, session_maker: async_sessionmaker[AsyncSession], community: dict[str, Any]
) -> None:
    today = datetime.now(ZoneInfo("Europe/London")).date()
    slug, checkpoints = await build(api, community, today)
    end = months_from(today.replace(day=1), 1)
    start = months_from(end, -community["months"])
    raw = await load(session_maker, [slug])
    params: dict[str, Any] = {"from": start.isoformat(), "to": end.isoformat()}
    rate = community["rate"]
    if rate:
        params["rate_pence_per_hour"] = rate
    params["interval"] = community["interval"]
    naive = Naive(raw, start, end, datetime.now(UTC))
    for name in REPORT_NAMES:
        await check_report(api, slug, name, naive, params, community["interval"], rate or 1271)
    odd_start = start + timedelta(days=community["shift"][0])
    odd_end = end - timedelta(days=community["shift"][1])
    odd = Naive(raw, odd_start, odd_end, datetime.now(UTC))
    odd_params = {**params, "from": odd_start.isoformat(), "to": odd_end.isoformat()}
    for name in REPORT_NAMES if odd_start < odd_end else ():
        await check_report(api, slug, name, odd, odd_params, community["interval"], rate or 1271)
    for as_of in checkpoints[:1]:
        then = Naive(raw, start, end, as_of)
        for name in ("summary", "categories", "timeseries", "retention"):
            await check_report(
                api,
                slug,
                name,
                then,
                {**params, "as_of": as_of.isoformat()},
                community["interval"],
                rate or 1271,
            )
