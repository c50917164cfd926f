"""A hostile funder, differencing reports to find people out (SPEC §3.7 "Disclosure control",
§7.3: the promise holds over every set of responses; aim: exact recovery ≤ 20 %).

For generated communities (fixed seeds), an attacker asks many questions and combines the
answers in every way the issue's reproductions did, against several targets each:

* **org** — an organisation whose one volunteer is a single member: `exchange-types` p2o +
  o2o minus the other organisations' rows; and its own row read directly;
* **non-consent** — the one member who refused statistics consent: `localities` totals
  (all members) minus `demographics` totals (consenting members): hours given, received,
  and whether he took part;
* **bank-b** — tiny bank B: the cross-bank summary of A and B minus A's summary; and B's
  own summary read directly;
* **month** — September, a quiet month: July–September minus July–August (published: the
  off-lattice period is refused, so the quarter minus its two other months);
* **as-of** — one late time sheet: the summary as of two days, a day apart;
* **summary-vs** — `summary` (registered, active, participating) against what `activity`
  and `distribution` hide: members inactive for 12 months, members with no exchange;
* **presence** — a locality with one member: does its row say in which months she traded?

Each attempt gives the attacker an estimate; it is a **recovery** when the estimate is the
person's exact figure (participation: the exact 0 or 1; presence: when the responses of
months she traded can be told from those she did not). The same attacker runs against
the exact figures staff get by default — today's algorithm, which funders got before
published figures — and against the published figures funders get now; both rates are
printed (``pytest -s``). The published rate must stay at or under 20 % (counts that
differ by one record are off by the difference of two draws of the table, equal about
one time in seven; minutes almost never), the exact rate shows the old promise failing,
and no published small cell may ever show its true value.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from sqlalchemy import bindparam, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import Api, simple
from timebank.ledger import posting
from timebank.ledger.models import Exchange, ExchangeKind, OwnerType
from timebank.members.models import Member
from timebank.organisations.models import Organisation
from timebank.reports import cellkey, periods, published

SEEDS = (11, 12, 13)
K = 10  # both banks keep the default threshold
LOCALITIES = ("Irvine", "Kilwinning", "Dreghorn")
BIG_ORGS = ("Food Bank", "Care Home", "Repair Cafe")
LONE_ORG = "Lone Org"
GENDERS = ("female", "male", "non_binary", "prefer_not_to_say")
MONTHS = [(date(2026, m, 1), date(2026, m + 1, 1)) for m in range(1, 10)]
QUARTERS = [(date(2026, m, 1), date(2026, m + 3, 1)) for m in (1, 4, 7)]
PERIODS = MONTHS + QUARTERS
JUL, AUG, SEP = MONTHS[6], MONTHS[7], MONTHS[8]
Q3 = QUARTERS[2]
Period = tuple[date, date]


@dataclass
class Ex:
    bank: str  # "a" or "b"
    provider: str
    recipient: str
    minutes: int
    day: date
    late: bool = False


@dataclass
class Community:
    seed: int
    a: str
    b: str
    people: dict[str, dict[str, Any]]  # name → member or organisation (as returned)
    exchanges: list[Ex]
    volunteer: str  # the lone organisation's one volunteer
    tess_months: list[int]  # months (0-based) in which the lone Tiny Glen member traded
    day_before: datetime = field(default_factory=lambda: datetime.now(UTC))
    day_after: datetime = field(default_factory=lambda: datetime.now(UTC))

    def within(self, p: Period, bank: str = "a", *, late: bool = True) -> list[Ex]:
        return [
            x
            for x in self.exchanges
            if x.bank == bank and p[0] <= x.day < p[1] and (late or not x.late)
        ]


def key_of(seed: int, name: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}/{name}".encode(), digest_size=4).digest(), "big")


async def build(
    api: Api, maker: async_sessionmaker[AsyncSession], seed: int, monkeypatch: pytest.MonkeyPatch
) -> Community:
    rng = random.Random(seed)
    a = (await api.timebank(f"attack-a-{seed}", member_min_balance_minutes=None))["slug"]
    b = (await api.timebank(f"attack-b-{seed}", member_min_balance_minutes=None))["slug"]
    people: dict[str, dict[str, Any]] = {}

    async def member(bank: str, name: str, **fields: Any) -> None:
        fields.setdefault("statistics_consent", True)
        fields.setdefault("gender", rng.choice(GENDERS))
        fields.setdefault("birth_year", rng.randint(1940, 2004))
        people[name] = await api.member(bank, name, joined_on="2025-12-01", **fields)

    regulars = [f"R{i}" for i in range(36)]
    for i, name in enumerate(regulars):
        await member(a, name, locality=LOCALITIES[i % 3])
    await member(a, "Nico", locality="Irvine", statistics_consent=False)
    await member(a, "Tess", locality="Tiny Glen")
    for name in ("Z0", "Z1"):  # registered, never trade
        await member(a, name, locality="Dreghorn")
    for name in ("B0", "B1", "B2"):
        await member(b, name, locality="Largs")
    for name in (*BIG_ORGS, LONE_ORG):
        people[name] = await api.organisation(a, name)

    xs: list[Ex] = []
    volunteer = regulars[seed % len(regulars)]
    tess_months = sorted(rng.sample(range(8), 3))
    lone_months = sorted(rng.sample(range(8), 4))
    minutes = (30, 45, 60, 90, 120, 150, 180)
    for m, (start, _) in enumerate(MONTHS[:8]):

        def day() -> date:
            return start.replace(day=rng.randint(1, 28))  # noqa: B023

        for _ in range(22):
            p, q = rng.sample(regulars, 2)
            xs.append(Ex("a", p, q, rng.choice(minutes), day()))
        for i, volunteer_of_big in enumerate(regulars):  # each volunteers monthly for one
            org = BIG_ORGS[i // 12]
            xs.append(Ex("a", volunteer_of_big, org, rng.randint(60, 240), day()))
        xs.append(Ex("a", "Nico", rng.choice(regulars), rng.choice(minutes), day()))
        xs.append(Ex("a", rng.choice(regulars), "Nico", rng.choice(minutes), day()))
        if m in tess_months:
            xs.append(Ex("a", "Tess", rng.choice(regulars), rng.choice(minutes), day()))
        if m in lone_months:
            for _ in range(rng.randint(1, 2)):
                xs.append(Ex("a", volunteer, LONE_ORG, rng.randint(60, 240), day()))
    xs.append(Ex("a", "R1", "R2", 75, date(2026, 9, 4)))  # a quiet September
    xs.append(Ex("a", "R2", "R3", 50, date(2026, 9, 18)))
    for start, _ in MONTHS:
        p, q = rng.sample(["B0", "B1", "B2"], 2)
        xs.append(Ex("b", p, q, rng.randint(60, 120), start.replace(day=rng.randint(1, 28))))
    late = Ex(
        "a", rng.choice(regulars), rng.choice(regulars), rng.randint(40, 200), date(2026, 8, 20)
    )
    late.late = True

    def body(i: int, x: Ex) -> dict[str, Any]:
        return simple(
            people[x.provider],
            people[x.recipient],
            x.minutes,
            occurred_on=x.day.isoformat(),
            description=f"s{seed}-e{i}",
        )

    for bank in ("a", "b"):
        items = [body(i, x) for i, x in enumerate(xs) if x.bank == bank]
        slug = a if bank == "a" else b
        r = await api.post(
            f"/v1/timebanks/{slug}/exchanges/batch", json={"exchanges": items, "atomic": True}
        )
        assert r.status_code == 200, r.text
        assert all(x["status"] == 201 for x in r.json()["results"]), r.text
    # the late time sheet is recorded "tomorrow"
    now = datetime.now(UTC)
    tomorrow = datetime.combine(now.date() + timedelta(days=1), time(0), tzinfo=UTC)
    with monkeypatch.context() as patch:
        patch.setattr(posting, "utcnow", lambda: now + timedelta(days=1))
        r = await api.post(
            f"/v1/timebanks/{a}/exchanges/batch",
            json={"exchanges": [body(len(xs), late)], "atomic": True},
        )
        assert r.status_code == 200 and r.json()["results"][0]["status"] == 201, r.text
    xs.append(late)
    await rekey(maker, seed, people, len(xs))
    return Community(
        seed,
        a,
        b,
        people,
        xs,
        volunteer,
        tess_months,
        day_before=tomorrow,
        day_after=tomorrow + timedelta(days=1),
    )


async def rekey(
    maker: async_sessionmaker[AsyncSession], seed: int, people: dict[str, dict[str, Any]], n: int
) -> None:
    """Record keys from the seed, so the suite's rates are the same on every run."""
    async with maker() as s:
        for name, entity in people.items():
            model: Any = Organisation if "kind" in entity else Member
            await s.execute(
                update(model)
                .where(model.id == uuid.UUID(entity["id"]))
                .values(record_key=key_of(seed, name))
            )
        table = Exchange.__table__
        stmt = (
            update(table)
            .where(table.c.description == bindparam("d"))
            .values(record_key=bindparam("k"))
        )
        rows = [{"d": f"s{seed}-e{i}", "k": key_of(seed, f"e{i}")} for i in range(n)]
        await s.execute(stmt, rows)
        await s.commit()


# --- the attacker -------------------------------------------------------------------------


class Asker:
    """Asks for reports as one kind of key (``exact``: staff default, today's algorithm;
    ``published``: a funder key over A and B), remembering the answers."""

    def __init__(self, key: Api, mode: str) -> None:
        self.key, self.mode = key, mode
        self.seen: dict[tuple[Any, ...], dict[str, Any] | None] = {}

    async def get(
        self, name: str, banks: list[str], p: Period, as_of: datetime | None = None, **extra: Any
    ) -> dict[str, Any] | None:
        """The report, or None when it was refused (e.g. an off-lattice period)."""
        memo = (name, tuple(banks), p, as_of, tuple(sorted(extra.items())))
        if memo not in self.seen:
            params: dict[str, Any] = {"from": p[0].isoformat(), "to": p[1].isoformat(), **extra}
            if as_of is not None:
                params["as_of"] = as_of.isoformat()
            if len(banks) == 1:
                path = f"/v1/timebanks/{banks[0]}/reports/{name}"
            else:
                path, params["timebank"] = f"/v1/reports/{name}", banks
            r = await self.key.get(path, params=params)
            assert r.status_code in (200, 422), r.text
            self.seen[memo] = r.json() if r.status_code == 200 else None
        return self.seen[memo]


def minus(x: Any, *ys: Any) -> Any:
    if x is None or any(y is None for y in ys):
        return None
    return x - sum(ys)


def row(body: dict[str, Any], key: str, value: str) -> dict[str, Any] | None:
    return next((r for r in body["rows"] if r[key] == value), None)


@dataclass
class Tally:
    attempts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    hits: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    direct_reads: int = 0  # a small cell's own figure read as published (not differencing)
    direct_small_hits: int = 0

    def add(self, kind: str, estimate: Any, truth: Any) -> None:
        self.attempts[kind] += 1
        if estimate is not None and estimate == truth:
            self.hits[kind] += 1

    def read(self, shown: Any, truth: Any) -> None:
        """A small cell read directly: exact figures withhold it (None); published figures
        show it, but never its true value."""
        self.direct_reads += 1
        if shown is not None and shown == truth:
            self.direct_small_hits += 1

    @property
    def rate(self) -> float:
        return sum(self.hits.values()) / max(1, sum(self.attempts.values()))


Attack = Callable[[Asker, Community, Tally], Any]


async def org_attack(ask: Asker, c: Community, t: Tally) -> None:
    for p in PERIODS:
        mine = [x for x in c.within(p) if x.recipient == LONE_ORG]
        if not mine:
            continue
        truth = {"minutes_received": sum(x.minutes for x in mine), "exchanges": len(mine)}
        kinds = await ask.get("exchange-types", [c.a], p)
        orgs = await ask.get("organisations", [c.a], p)
        assert kinds is not None and orgs is not None
        others = [r for r in orgs["rows"] if r["organisation"] != LONE_ORG]
        target = row(orgs, "organisation", LONE_ORG)
        assert target is not None, "every organisation has a row"
        flows = {"minutes_received": "minutes", "exchanges": "exchanges"}
        for figure, kind_figure in flows.items():
            into_orgs = [row(kinds, "kind", k)[kind_figure] for k in ("p2o", "o2o")]  # type: ignore[index]
            estimate = minus(sum(v or 0 for v in into_orgs), *(r[figure] for r in others))
            t.add("org", estimate, truth[figure])
            t.read(target[figure], truth[figure])  # the row read directly


async def non_consent_attack(ask: Asker, c: Community, t: Tally) -> None:
    for p in PERIODS:
        mine = c.within(p)
        given = sum(x.minutes for x in mine if x.provider == "Nico")
        received = sum(x.minutes for x in mine if x.recipient == "Nico")
        everyone = await ask.get("localities", [c.a], p)
        consenting = await ask.get("demographics", [c.a], p, dimension="gender")
        assert everyone is not None and consenting is not None
        for figure, truth in (("minutes_given", given), ("minutes_received", received)):
            if truth:
                t.add(
                    "non-consent",
                    minus(everyone[figure], consenting[f"consenting_{figure}"]),
                    truth,
                )
        took_part = int(bool(given or received))
        estimate = minus(
            everyone["participating_members"], consenting["consenting_participating_members"]
        )
        t.add("non-consent", estimate, took_part)


async def bank_b_attack(ask: Asker, c: Community, t: Tally) -> None:
    for p in PERIODS:
        mine = c.within(p, "b")
        truth = {
            "exchanges": len(mine),
            "minutes": sum(x.minutes for x in mine),
            "participating_members": len({n for x in mine for n in (x.provider, x.recipient)}),
            "registered_members": 3,
        }
        both = await ask.get("summary", [c.a, c.b], p)
        a = await ask.get("summary", [c.a], p)
        own = await ask.get("summary", [c.b], p)
        assert both is not None and a is not None and own is not None
        for figure, value in truth.items():
            if value:
                t.add("bank-b", minus(both[figure], a[figure]), value)
                t.read(own[figure], value)  # B's own report read directly


async def month_attack(ask: Asker, c: Community, t: Tally) -> None:
    sep = c.within(SEP)
    truth = {"exchanges": len(sep), "minutes": sum(x.minutes for x in sep)}
    long = await ask.get("summary", [c.a], (JUL[0], SEP[1]))
    short = await ask.get("summary", [c.a], (JUL[0], SEP[0]))
    for figure, value in truth.items():
        if long is not None and short is not None:
            estimate = minus(long[figure], short[figure])
        else:  # refused off the lattice: the quarter minus its other two months
            quarter, jul, aug = [await ask.get("summary", [c.a], p) for p in (Q3, JUL, AUG)]
            assert quarter is not None and jul is not None and aug is not None
            estimate = minus(quarter[figure], jul[figure], aug[figure])
        t.add("month", estimate, value)


async def as_of_attack(ask: Asker, c: Community, t: Tally) -> None:
    (late,) = [x for x in c.exchanges if x.late]
    for p in (AUG, Q3, (date(2026, 1, 1), date(2027, 1, 1))):
        before = await ask.get("summary", [c.a], p, as_of=c.day_before)
        after = await ask.get("summary", [c.a], p, as_of=c.day_after)
        assert before is not None and after is not None
        t.add("as-of", minus(after["minutes"], before["minutes"]), late.minutes)
        t.add("as-of", minus(after["exchanges"], before["exchanges"]), 1)


async def summary_vs_attack(ask: Asker, c: Community, t: Tally) -> None:
    members = [n for n, e in c.people.items() if "display_name" in e and not n.startswith("B")]
    for p in PERIODS:
        window = [x for x in c.exchanges if x.bank == "a" and x.day < p[1]]
        active = {n for x in window for n in (x.provider, x.recipient)}
        period = {n for x in c.within(p) for n in (x.provider, x.recipient)}
        inactive = len([n for n in members if n not in active])
        idle = len([n for n in members if n not in period])
        s = await ask.get("summary", [c.a], p)
        assert s is not None
        if 0 < inactive < K:
            t.add("summary-vs", minus(s["registered_members"], s["active_members"]), inactive)
        if 0 < idle < K:
            t.add("summary-vs", minus(s["registered_members"], s["participating_members"]), idle)


async def presence_attack(ask: Asker, c: Community, t: Tally) -> None:
    seen: dict[int, tuple[Any, ...]] = {}
    for m, p in enumerate(MONTHS):
        body = await ask.get("localities", [c.a], p)
        assert body is not None
        r = row(body, "locality", "Tiny Glen")
        seen[m] = (r is not None, r and r["suppressed"], r and r["participating_members"])
    traded = {m: m in c.tess_months for m in seen}
    for m, view in seen.items():
        opposite = {seen[o] for o in seen if traded[o] != traded[m]}
        t.add("presence", view not in opposite, True)


ATTACKS: list[Attack] = [
    org_attack,
    non_consent_attack,
    bank_b_attack,
    month_attack,
    as_of_attack,
    summary_vs_attack,
    presence_attack,
]


def report(name: str, t: Tally) -> str:
    parts = [f"{kind} {t.hits[kind]}/{t.attempts[kind]}" for kind in sorted(t.attempts)]
    total = sum(t.attempts.values())
    return (
        f"{name}: {sum(t.hits.values())}/{total} = {t.rate:.1%} ({', '.join(parts)}); "
        f"small cells read directly: {t.direct_small_hits}/{t.direct_reads} exact"
    )


async def test_a_differencing_funder_rarely_recovers_anyones_exact_figures(
    api: Api,
    session_maker: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
    engine_name: str,
) -> None:
    communities = [await build(api, session_maker, seed, monkeypatch) for seed in SEEDS]
    # the reports' clock: three days on, so the day-rounded as_of of published figures sees
    # today's and tomorrow's records
    later = datetime.now(UTC) + timedelta(days=3)
    monkeypatch.setattr(periods, "utcnow", lambda: later)
    slugs = [s for c in communities for s in (c.a, c.b)]
    funder = await api.ok("post", "/v1/api-keys", {"role": "funder", "timebanks": slugs})
    tallies = {"exact": Tally(), "published": Tally()}
    for mode, key in (("exact", api), ("published", api.as_key(funder["secret"]))):
        for c in communities:
            ask = Asker(key, mode)
            for attack in ATTACKS:
                await attack(ask, c, tallies[mode])
            if mode == "published":
                assert all(b is None or b["perturbed"] for b in ask.seen.values())
    before, after = tallies["exact"], tallies["published"]
    print(f"\nprivacy attacks [{engine_name}], seeds {SEEDS}:")
    print("  " + report("before (exact figures, today's algorithm)", before))
    print("  " + report("after (published figures, cell key)", after))
    assert sum(after.attempts.values()) >= 150, "many targets"
    assert before.rate >= 0.8, "the attacks reproduce the issue against exact figures"
    assert after.rate <= 0.20, report("published", after)
    assert before.direct_small_hits == 0, "exact figures withhold small cells"
    assert after.direct_small_hits == 0, "a published small cell showed its true value"
    assert after.hits["presence"] == 0, "a row's presence or flag told who took part"
    assert after.hits["month"] <= after.attempts["month"] // 2


# --- minutes: rounding and candidate elimination (SPEC §8.5) ---------------------------------
#
# People record whole hours, half hours or quarters, so a cell's true minutes lie on a 60-,
# 30- or 15-minute grid. Two attackers read one published cell of minutes:
#
# * **round** — rounds the published minutes to the grid (60, 30, 15);
# * **elimination** — knows the method, its parameters and the grid (and, for the old method,
#   how much of the cell its two largest parties hold, e.g. a cell known to be one person's):
#   every grid value that could have published what is shown is a candidate, weighed by how
#   likely it was to publish it; the most likely one is the guess (ties shared evenly: a hit
#   counts 1/n when the truth is one of n equally likely guesses).
#
# Cells are simulated (fixed seeds) through the real builder (``published.minutes_of`` over
# legs with random exchange keys) and through the old method, kept here as a reference:
# ``true + f × (c₁ + c₂)``, 5 % ≤ |f| ≤ 15 %.

GRIDS = (60, 30, 15)
CELL_SIZES = (1, 1, 2, 3, 5, 10, 20)  # parties per cell; one person's cells weigh double


def old_publish_minutes(total: int, parts: list[int], key: int) -> int:
    """The withdrawn method (cellkey-1), for the "before" rates only."""
    if total <= 0:
        return 0
    top = sorted((c for c in parts if c > 0), reverse=True)[:2]
    digest = hashlib.blake2b(key.to_bytes(4, "big"), digest_size=8, person=b"cellkey1-minute")
    u = int.from_bytes(digest.digest(), "big") / 2**64
    f = (1.0 if u < 0.5 else -1.0) * (0.05 + 0.10 * ((u * 2) % 1.0))
    value = round(total + f * sum(top))
    if value == total:
        value = total + (1 if f > 0 else -1)
    return max(1, value)


def old_likelihood(shown: int, total: int, share: float) -> float:
    """Density of ``shown`` for a true ``total`` whose two largest parties hold ``share`` of it."""
    spread = share * total
    if spread <= 0:
        return 0.0
    x = abs(shown - total)
    slack = 0.5 + 1  # rounding, and the ±1 of a tiny cell
    if 0.05 * spread - slack <= x <= 0.15 * spread + slack:
        return 1 / (0.2 * spread)
    return 0.0


def new_likelihood(shown: int, total: int, share: float) -> float:
    low, high = cellkey.minutes_window(total)
    return 1 / (high - low) if low <= shown <= high and shown != total else 0.0


@dataclass
class SimCell:
    grid: int
    total: int
    share: float  # of the two largest parties
    parties: int
    old: int
    new: int


def simulated_cells(seed: int = 26) -> list[SimCell]:
    rng = random.Random(seed)
    out = []
    for grid in GRIDS:
        for _ in range(120):
            for size in CELL_SIZES:
                legs, parts = [], []
                for _party in range(size):
                    account = uuid.UUID(int=rng.getrandbits(128))
                    mine = 0
                    for _ in range(1 if size == 1 else rng.randint(1, 3)):
                        minutes = grid * rng.randint(1, 240 // grid)  # up to 4 hours
                        mine += minutes
                        legs.append(
                            published.Leg(
                                uuid.UUID(int=rng.getrandbits(128)),
                                rng.getrandbits(32),
                                account,
                                OwnerType.member,
                                minutes,
                                date(2026, 7, 1),
                                ExchangeKind.p2p,
                                "transport",
                            )
                        )
                    parts.append(mine)
                total = sum(parts)
                key = cellkey.cell_key(leg.exchange_key for leg in legs)
                share = sum(sorted(parts, reverse=True)[:2]) / total
                out.append(
                    SimCell(
                        grid,
                        total,
                        share,
                        size,
                        old_publish_minutes(total, parts, key),
                        published.minutes_of(legs),
                    )
                )
    return out


def eliminate(shown: int, grid: int, share: float, likelihood: Callable[..., float]) -> list[int]:
    """The most likely grid values behind ``shown``."""
    weights = {
        t: likelihood(shown, t, share)
        for t in range(grid, int(shown * 1.3) + 3 * cellkey.MINUTES_FLOOR + grid, grid)
    }
    best = max(weights.values(), default=0.0)
    return [t for t, w in weights.items() if w == best and w > 0]


def minutes_attacks(cells: list[SimCell]) -> dict[str, dict[str, float]]:
    """Recovery rates: method → attack class → rate."""
    rates: dict[str, dict[str, float]] = {}
    for method, likelihood in (("old", old_likelihood), ("new", new_likelihood)):
        hits: dict[str, float] = defaultdict(float)
        tries: dict[str, int] = defaultdict(int)
        for c in cells:
            shown = c.old if method == "old" else c.new
            who = "one person" if c.parties == 1 else "2-20 people"
            name = f"round to {c.grid}, {who}"
            tries[name] += 1
            hits[name] += c.grid * round(shown / c.grid) == c.total
            guesses = eliminate(shown, c.grid, c.share, likelihood)
            name = f"eliminate on {c.grid}, {who}"
            tries[name] += 1
            if c.total in guesses:
                hits[name] += 1 / len(guesses)
        rates[method] = {k: hits[k] / tries[k] for k in sorted(tries)}
    return rates


def test_rounding_or_knowing_the_method_rarely_gives_back_exact_minutes() -> None:
    cells = simulated_cells()
    rates = minutes_attacks(cells)
    print("\nminutes attacks over", len(cells), "simulated cells (recovery rate, old → new):")
    for name in rates["new"]:
        print(f"  {name:32} {rates['old'][name]:6.1%} → {rates['new'][name]:6.1%}")
    assert rates["old"]["round to 60, one person"] >= 0.9, "the issue's reproduction"
    for name, rate in rates["new"].items():
        assert rate <= 0.20, f"{name}: {rate:.1%}"
    large = [c for c in cells if c.total >= cellkey.MINUTES_FLOOR / cellkey.MINUTES_SHARE]
    assert all(abs(c.new - c.total) <= 0.05 * c.total for c in large)
