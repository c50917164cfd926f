"""Synthetic communities for demos and benchmarks (``timebank demo generate``).

A generated time bank looks like a real one (SPEC §6): members join over the years, more of
them lately, and some leave; about a third never trade; activity among the rest is
heavy-tailed, about 7 exchanges per active member a year; person-to-person exchanges last
about two hours, volunteering sessions for organisations longer; there are classes (group
exchanges), pool grants and donations, proposals still pending or turned down, paper-sheet
references, and about 1 % of exchanges reversed some days later.

The history is simulated in memory, in ledger order (``recorded_at``), under the ledger's
own rules: kinds derived from the parties, limits checked with
:func:`timebank.ledger.rules.effective_limits` and the same "no further outside" rule
(an exchange that would break one is turned round or given to an organisation, as a broker
would), reversals exempt, every exchange's postings summing to zero with their balance
after. It is then written in bulk (COPY on PostgreSQL) in ONE transaction, so a failed run
leaves nothing behind.

A bulk load is the one place where the per-row triggers (the zero-sum and sealed-exchange
checks, the rollup maintenance) are switched off: inside that transaction, on the postings
and exchanges tables only (other writers and readers of those tables wait for the run). Before
the commit the same invariants are checked set-based over the whole ledger
(:func:`timebank.tools.backup.ledger_problems`, as ``timebank db check`` does) and the bank's report
rollups are recomputed from its ledger; any problem rolls the run back. Row by row, the
triggers cost three quarters of a million-exchange run. Where the database role may not
alter the tables, the triggers stay on and check every row.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Table, func, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.access import SYSTEM, Principal, Role
from timebank.audit import service as audit
from timebank.db import begin_write, copy_rows, utcnow, uuid7
from timebank.ledger.models import (
    Account,
    Exchange,
    ExchangeKind,
    ExchangeStatus,
    OwnerType,
    Posting,
)
from timebank.ledger.posting import Draft as LedgerDraft
from timebank.ledger.posting import Leg, exchange_row
from timebank.ledger.posting import posting_rows as ledger_postings
from timebank.ledger.rules import effective_limits, kind_of, refused
from timebank.lifecycle.register import create_timebank
from timebank.members.models import Disability, Ethnicity, Gender, Member, MemberStatus
from timebank.names import FOLDED_LENGTH, fold, skeleton
from timebank.namesearch import NameWord, word_rows
from timebank.organisations.models import Organisation, OrganisationKind
from timebank.reports.rollups import rebuild_rollups
from timebank.timebanks.models import Category, TimeBank
from timebank.timebanks.service import today
from timebank.tools.backup import ledger_problems

FIRST = [
    "Aisha",
    "Ben",
    "Chloe",
    "Dev",
    "Ewan",
    "Fatima",
    "Grace",
    "Hamish",
    "Isla",
    "Jack",
    "Kiran",
    "Lena",
    "Mo",
    "Niamh",
    "Owen",
    "Priya",
    "Rory",
    "Sofia",
    "Tom",
    "Una",
    "Vik",
    "Wendy",
    "Xander",
    "Yusuf",
    "Zoe",
    "Alan",
    "Bea",
    "Callum",
    "Dora",
    "Eilidh",
    "Farah",
    "George",
    "Hana",
    "Ian",
    "Jo",
    "Kofi",
    "Lucy",
    "Marek",
    "Nadia",
    "Olu",
    "Pat",
    "Qasim",
    "Rosa",
    "Sam",
    "Tariq",
    "Uma",
    "Victor",
    "Wei",
    "Yara",
]
LAST = [
    "Campbell",
    "Khan",
    "MacLeod",
    "Okafor",
    "Patel",
    "Reid",
    "Singh",
    "Stewart",
    "Wilson",
    "Nowak",
    "Murray",
    "Fraser",
    "Ahmed",
    "Brown",
    "Clarke",
    "Doyle",
    "Evans",
    "Ferguson",
    "Gill",
    "Hughes",
    "Iqbal",
    "Jones",
    "Kowalski",
    "Lewis",
    "Mensah",
    "Nolan",
    "O'Neill",
    "Quinn",
    "Robertson",
    "Smith",
    "Thomson",
    "Walker",
    "Young",
]
LOCALITIES = (
    "Irvine",
    "Kilwinning",
    "Saltcoats",
    "Ardrossan",
    "Largs",
    "Dalry",
    "Stevenston",
    "Beith",
    "Kilbirnie",
    "West Kilbride",
    "Fairlie",
    "Skelmorlie",
    "Dreghorn",
    "Springside",
    "Millport",
)
ORG_NAMES = (
    "Food Bank",
    "Men's Shed",
    "Care at Home",
    "Ward Patient Support (NHS)",
    "Community Garden",
    "Libraries",
    "Bike Recycle CIC",
    "Carers' Centre",
    "Youth Club",
    "Repair Café",
    "Befriending Service",
    "Foodshare Larder",
)
ORG_KINDS = (
    OrganisationKind.charity,
    OrganisationKind.community_group,
    OrganisationKind.care_provider,
    OrganisationKind.health,
    OrganisationKind.community_group,
    OrganisationKind.local_authority,
    OrganisationKind.social_enterprise,
    OrganisationKind.charity,
    OrganisationKind.community_group,
    OrganisationKind.social_enterprise,
    OrganisationKind.charity,
    OrganisationKind.charity,
)
DESCRIPTIONS = {
    "companionship": "Afternoon visit and a cup of tea",
    "transport": "Lift to the hospital",
    "shopping-errands": "Weekly shop",
    "home-garden": "Weeding and mowing",
    "diy-repairs": "Fixed a dripping tap",
    "cooking-meals": "Batch-cooked meals",
    "admin-it": "Set up a new phone",
    "learning-teaching": "Conversation practice",
    "arts-crafts": "Knitting circle",
    "health-wellbeing": "Walk round the park",
    "childcare-family": "School pick-up",
    "care-support": "Sat with a carer's mum",
    "community-events": "Helped at the gala",
    "other": "Odd jobs",
}
P2P_CATEGORIES = {
    "companionship": 14,
    "transport": 12,
    "shopping-errands": 10,
    "home-garden": 10,
    "diy-repairs": 8,
    "cooking-meals": 7,
    "admin-it": 8,
    "learning-teaching": 6,
    "arts-crafts": 4,
    "health-wellbeing": 5,
    "childcare-family": 4,
    "care-support": 6,
    "other": 6,
}
ORG_CATEGORIES = {
    "community-events": 25,
    "care-support": 15,
    "cooking-meals": 12,
    "home-garden": 12,
    "admin-it": 8,
    "learning-teaching": 8,
    "companionship": 10,
    "diy-repairs": 5,
    "other": 5,
}
P2P_MINUTES = (30, 45, 60, 60, 90, 90, 120, 120, 120, 150, 180, 180, 240, 300)  # mean ≈ 2 h
ORG_MINUTES = (120, 180, 180, 240, 240, 300, 360, 420, 480)  # volunteering sessions
ENTRY_LAG_DAYS = (0, 0, 0, 0, 0, 1, 1, 2, 3, 5, 7, 14, 30)  # paper sheets arrive late

EXCHANGES_PER_ACTIVE_MEMBER_YEAR = 7
NEVER_TRADE = 0.35
MAX_YEARS = 20
MIX = (  # kind of a drafted exchange, and its share
    ("p2p", 0.60),
    ("p2o", 0.22),
    ("o2p", 0.08),
    ("o2o", 0.015),
    ("group", 0.025),
    ("grant", 0.007),
    ("donation", 0.003),
    ("proposal", 0.005),
)
REVERSED_SHARE = 0.01


@dataclass(eq=False)
class Party:
    """A member, organisation or the pool, as the simulation sees it."""

    owner_type: OwnerType
    owner_id: uuid.UUID
    account_id: uuid.UUID
    first_day: date
    last_day: date  # the last day it may take part in an exchange
    weight: float = 0.0
    name: str = ""
    lo: int | None = None
    hi: int | None = None
    balance: int = 0
    earned: int = 0
    spent: int = 0

    def allows(self, delta: int) -> bool:
        return not refused(self.balance, delta, self.lo, self.hi)

    def move(self, delta: int) -> int:
        self.balance += delta
        if delta > 0:
            self.earned += delta
        else:
            self.spent -= delta
        return self.balance


@dataclass(eq=False)
class Draft:
    """An exchange before it is put in ledger order and checked against limits."""

    recorded_at: datetime
    occurred_on: date
    providers: list[tuple[Party, int]]
    recipients: list[tuple[Party, int]]
    category: str | None
    description: str | None
    status: ExchangeStatus = ExchangeStatus.recorded
    external_ref: str | None = None
    proposed_by: uuid.UUID | None = None
    reverses: Draft | None = None
    reverse_at: datetime | None = None  # when a later reversal corrects it
    id: uuid.UUID | None = None  # given in ledger order
    legs: list[tuple[Party, int, int]] = field(default_factory=list)  # account, ±minutes, after


@dataclass
class Generated:
    timebank: TimeBank
    members: int
    organisations: int
    exchanges: int
    postings: int
    reversals: int
    first_day: date
    last_day: date
    by_kind: dict[str, int]


Progress = Callable[[str, int, int], None]


def _no_progress(_phase: str, _done: int, _total: int) -> None:
    return None


class Community:
    """Draws a community and its history; :meth:`settle` applies the ledger rules."""

    def __init__(self, tb: TimeBank, members: int, exchanges: int, seed: int) -> None:
        self.tb = tb
        self.rng = random.Random(seed)
        self.seed = seed
        self.n_members = members
        self.n_exchanges = exchanges
        self.today = today(tb)
        self.now = utcnow()
        traders = max(1, round(members * (1 - NEVER_TRADE)))
        # members join over the span (a growing community: ~0.6 of it on average as members)
        years = exchanges / (EXCHANGES_PER_ACTIVE_MEMBER_YEAR * traders * 0.62)
        self.span_days = max(60, min(int(years * 365), MAX_YEARS * 365))
        self.start = self.today - timedelta(days=self.span_days)
        self.members: list[Party] = []
        self.member_rows: list[dict[str, Any]] = []
        self.orgs: list[Party] = []
        self.org_rows: list[dict[str, Any]] = []
        self.drafts: list[Draft] = []
        self.ref_tag = f"{seed:x}.{os.urandom(3).hex()}"  # unique per run, like ids

    # --- people -------------------------------------------------------------------------

    def _limits(self, owner_type: OwnerType) -> tuple[int | None, int | None]:
        probe = Account(owner_type=owner_type, custom_limits=False)
        lo, hi = effective_limits(probe, self.tb)
        return lo, hi

    def draw_people(self) -> None:
        rng, tb = self.rng, self.tb
        lo, hi = self._limits(OwnerType.member)
        for i in range(self.n_members):
            joined = self.start + timedelta(days=int(self.span_days * rng.random() ** 0.8))
            joined_at = datetime.combine(joined, time(9), tzinfo=UTC) + timedelta(
                seconds=rng.randrange(8 * 3600)
            )
            joined_at = min(joined_at, self.now - timedelta(seconds=1))
            status, left_on, last_day = MemberStatus.active, None, self.today
            roll = rng.random()
            if roll < 0.12:
                leaving = joined + timedelta(days=rng.randint(120, 4 * 365))
                if leaving <= self.today:
                    status, left_on, last_day = MemberStatus.left, leaving, leaving
            elif roll < 0.13:
                since = self.today - timedelta(days=rng.randint(1, 90))
                if since > joined:
                    status, last_day = MemberStatus.suspended, since
            trades = rng.random() >= NEVER_TRADE
            weight = min(rng.paretovariate(1.3), 60.0) if trades else 0.0
            member_id, account_id = uuid7(at=joined_at), uuid7(at=joined_at)
            party = Party(
                OwnerType.member, member_id, account_id, joined, last_day, weight, lo=lo, hi=hi
            )
            self.members.append(party)
            consent = rng.random() < 0.7
            first, last = rng.choice(FIRST), rng.choice(LAST)
            locality = rng.choice(LOCALITIES) if rng.random() < 0.93 else None
            if locality and rng.random() < 0.03:
                locality = f" {locality.lower()} "  # as typed: reports group these together
            self.member_rows.append(
                {
                    "id": member_id,
                    "timebank_id": tb.id,
                    "account_id": account_id,
                    "display_name": f"{first} {last}",
                    **_folded(f"{first} {last}"),
                    "email": f"{first}.{last}.{i}@example.org".lower().replace("'", ""),
                    "phone": None,
                    "locality": locality,
                    "postcode": None,
                    "birth_year": rng.randint(1930, 2009) if rng.random() < 0.85 else None,
                    "gender": rng.choices(list(Gender), (48, 44, 2, 1, 5))[0]
                    if rng.random() < 0.9
                    else None,
                    "disability": rng.choices(list(Disability), (22, 70, 8))[0]
                    if consent and rng.random() < 0.8
                    else None,
                    "ethnicity": rng.choices(list(Ethnicity), (7, 4, 3, 80, 2, 4))[0]
                    if consent and rng.random() < 0.8
                    else None,
                    "statistics_consent": consent,
                    "consent_recorded_at": joined_at if consent else None,
                    "joined_on": joined,
                    "left_on": left_on,
                    "status": status,
                    "external_ref": None,
                    "created_at": joined_at,
                    "updated_at": joined_at,
                }
            )
        lo, hi = self._limits(OwnerType.organisation)
        created = datetime.combine(self.start, time(9), tzinfo=UTC)
        for i in range(max(5, self.n_members // 100)):
            town = LOCALITIES[i % len(LOCALITIES)]
            name = f"{town} {ORG_NAMES[i % len(ORG_NAMES)]}"
            if i >= len(LOCALITIES) * len(ORG_NAMES):
                name = f"{name} {i}"
            org_id, account_id = uuid7(at=created), uuid7(at=created)
            weight = min(rng.paretovariate(1.2), 40.0)
            self.orgs.append(
                Party(
                    OwnerType.organisation,
                    org_id,
                    account_id,
                    self.start,
                    self.today,
                    weight,
                    name,
                    lo,
                    hi,
                )
            )
            self.org_rows.append(
                {
                    "id": org_id,
                    "timebank_id": tb.id,
                    "account_id": account_id,
                    "name": name,
                    **_folded(name),
                    "kind": ORG_KINDS[i % len(ORG_KINDS)],
                    "locality": town,
                    "registration_number": None,
                    "contact_email": None,
                    "status": "active",
                    "created_at": created,
                    "updated_at": created,
                }
            )

    # --- history ------------------------------------------------------------------------

    def _recorded_at(self, occurred: date) -> datetime:
        lag = self.rng.choice(ENTRY_LAG_DAYS)
        moment = datetime.combine(occurred + timedelta(days=lag), time(9), tzinfo=UTC)
        moment += timedelta(seconds=self.rng.randrange(9 * 3600))
        floor = datetime.combine(occurred, time(0), tzinfo=UTC)
        return max(floor, min(moment, self.now - timedelta(seconds=self.rng.randint(1, 3600))))

    def draw_history(self, pool: Party) -> None:
        rng, tb = self.rng, self.tb
        traders = [m for m in self.members if m.weight > 0]
        if not traders:
            traders = self.members[:1]
            traders[0].weight = 1.0
        # a member provides in proportion to activity × time as a member
        cum_active = _cumulative(m.weight * ((m.last_day - m.first_day).days + 1) for m in traders)
        cum_weight = _cumulative(m.weight for m in traders)
        cum_orgs = _cumulative(o.weight for o in self.orgs)
        kinds, shares = zip(*MIX, strict=True)
        cap = tb.max_exchange_minutes
        refs = 0

        def member_on(day: date, not_: Party) -> Party | None:
            for _ in range(8):
                m = rng.choices(traders, cum_weights=cum_weight)[0]
                if m is not not_ and m.first_day <= day <= m.last_day:
                    return m
            return None

        def org() -> Party:
            return rng.choices(self.orgs, cum_weights=cum_orgs)[0]

        grants = self.n_members if tb.starting_grant_minutes > 0 else 0
        grants = min(grants, self.n_exchanges)
        reversals = int((self.n_exchanges - grants) * REVERSED_SHARE)
        for m in self.members[:grants]:
            g = min(tb.starting_grant_minutes, cap)
            self.drafts.append(
                Draft(
                    self._grant_time(m),
                    m.first_day,
                    [(m, g)],
                    [(pool, g)],
                    None,
                    "Starting grant",
                )
            )
        for _ in range(self.n_exchanges - grants - reversals):
            provider = rng.choices(traders, cum_weights=cum_active)[0]
            day = provider.first_day + timedelta(
                days=rng.randrange((provider.last_day - provider.first_day).days + 1)
            )
            kind = rng.choices(kinds, shares)[0]
            minutes = min(rng.choice(P2P_MINUTES), cap)
            picked = _pick(rng, P2P_CATEGORIES)
            category: str | None = picked
            description: str | None = DESCRIPTIONS[picked]
            providers: list[tuple[Party, int]]
            recipients: list[tuple[Party, int]]
            other = member_on(day, provider) if kind in ("p2p", "proposal", "group") else None
            if kind in ("p2p", "proposal") and other is not None:
                providers, recipients = [(provider, minutes)], [(other, minutes)]
            elif kind == "group" and other is not None:
                learners = [other]
                for _ in range(rng.randint(2, 7)):
                    extra = member_on(day, provider)
                    if extra is not None and extra not in learners:
                        learners.append(extra)
                group = learners[: max(1, cap)]
                each = max(1, min(rng.choice((15, 20, 24, 30, 40, 60)), cap // len(group)))
                providers = [(provider, each * len(group))]
                recipients = [(m, each) for m in group]
                category, description = "learning-teaching", "Class for a small group"
            elif kind == "o2p":
                o = org()
                minutes = min(rng.choice(P2P_MINUTES), cap)
                providers, recipients = [(o, minutes)], [(provider, minutes)]
                description = f"Support from {o.name}"
            elif kind == "o2o":
                a, b = org(), org()
                if a is b:
                    a = self.orgs[(self.orgs.index(b) + 1) % len(self.orgs)]
                minutes = min(rng.choice(ORG_MINUTES), cap)
                providers, recipients = [(a, minutes)], [(b, minutes)]
                category, description = _pick(rng, ORG_CATEGORIES), "Shared staff time"
            elif kind == "grant":
                minutes = min(rng.choice((60, 120, 180, 300, 600)), cap)
                providers, recipients = [(provider, minutes)], [(pool, minutes)]
                category, description = None, "Hardship hours"
            elif kind == "donation":
                minutes = min(rng.choice((60, 120, 180)), cap)
                providers, recipients = [(pool, minutes)], [(provider, minutes)]
                category, description = None, "Donated hours to the pool"
            else:  # p2o, or a member with nobody to trade with that day
                o = org()
                minutes = min(rng.choice(ORG_MINUTES), cap)
                category = _pick(rng, ORG_CATEGORIES)
                providers, recipients = [(provider, minutes)], [(o, minutes)]
                description = f"Volunteering at {o.name}"
            draft = Draft(self._recorded_at(day), day, providers, recipients, category, description)
            if kind == "proposal" and len(recipients) == 1 and other is not None:
                self._as_proposal(draft, provider)
            elif category is not None and rng.random() < 0.4:
                refs += 1
                draft.external_ref = f"sheet-{day:%Y-%m}/{self.ref_tag}-{refs}"
            self.drafts.append(draft)
        service = [d for d in self.drafts if d.status is ExchangeStatus.recorded and d.category]
        for d in rng.sample(service, min(reversals, len(service))):
            d.reverse_at = d.recorded_at + timedelta(
                days=rng.randint(1, 30), seconds=rng.randrange(3600)
            )
            if d.reverse_at >= self.now:
                d.reverse_at = d.recorded_at + (self.now - d.recorded_at) / 2

    def _grant_time(self, m: Party) -> datetime:
        row_created = datetime.combine(m.first_day, time(9), tzinfo=UTC)
        return min(row_created + timedelta(hours=8, seconds=1), self.now - timedelta(seconds=1))

    def _as_proposal(self, draft: Draft, proposer: Party) -> None:
        age = self.now - draft.recorded_at
        if age < timedelta(days=self.tb.pending_expiry_days) and self.rng.random() < 0.7:
            draft.status = ExchangeStatus.pending
        else:
            draft.status = self.rng.choice(
                (ExchangeStatus.rejected, ExchangeStatus.cancelled, ExchangeStatus.expired)
            )
        draft.proposed_by = proposer.owner_id

    def settle(self, progress: Progress) -> list[Draft]:
        """Apply the drafts in ledger order under the limit rule, with their reversals.
        Returns the exchanges to write, in ledger order, with ids and balances after."""
        events: list[tuple[datetime, int, bool, Draft]] = []
        for i, d in enumerate(self.drafts):
            events.append((d.recorded_at, i, False, d))
            if d.reverse_at is not None:
                events.append((d.reverse_at, i, True, d))
        events.sort(key=lambda e: (e[0], e[1], e[2]))
        out: list[Draft] = []
        for n, (moment, _i, is_reversal, d) in enumerate(events):
            if n % 20_000 == 0:
                progress("ledger", n, len(events))
            if is_reversal:
                if d.legs:  # the original was recorded
                    out.append(self._reversal(d, moment))
            elif d.status is not ExchangeStatus.recorded or self._fit(d):
                out.append(d)
            else:
                continue
            out[-1].id = uuid7(at=out[-1].recorded_at)
            if out[-1].reverses is not None:
                out[-1].description = f"Reversal of {out[-1].reverses.id}"
        progress("ledger", len(events), len(events))
        return out

    def _fit(self, d: Draft) -> bool:
        """Record ``d`` as drafted, or turned round (the other side gives), or as a
        volunteering session for an organisation — whichever the limits allow, as a broker
        would. False (not recorded) if none fits."""
        options = [(d.providers, d.recipients), (d.recipients, d.providers)]
        member = next(
            (p for p, _ in d.providers + d.recipients if p.owner_type is OwnerType.member), None
        )
        if member is not None and self.orgs:
            o = self.orgs[self.rng.randrange(len(self.orgs))]
            minutes = min(self.rng.choice(ORG_MINUTES), self.tb.max_exchange_minutes)
            options.append(([(member, minutes)], [(o, minutes)]))
        for n, (providers, recipients) in enumerate(options):
            legs = [(p, m) for p, m in providers] + [(p, -m) for p, m in recipients]
            if not all(p.allows(m) for p, m in legs):
                continue
            d.providers, d.recipients = providers, recipients
            pool = any(p.owner_type is OwnerType.pool for p, _ in legs)
            if n == 2:
                d.category = _pick(self.rng, ORG_CATEGORIES)
                d.description = f"Volunteering at {recipients[0][0].name}"
            elif pool:
                d.category = None
            elif d.category is None:
                d.category = "other"
            d.legs = [(p, m, p.move(m)) for p, m in legs]
            return True
        d.reverse_at = None
        return False

    def _reversal(self, original: Draft, moment: datetime) -> Draft:
        r = Draft(moment, moment.date(), [], [], None, None, reverses=original)
        r.legs = [(p, -m, p.move(-m)) for p, m, _ in original.legs]
        return r


def _cumulative(weights: Iterable[float]) -> list[float]:
    out, total = [], 0.0
    for w in weights:
        total += w
        out.append(total)
    return out


def _pick(rng: random.Random, weighted: dict[str, int]) -> str:
    return rng.choices(list(weighted), list(weighted.values()))[0]


def _kind(d: Draft) -> ExchangeKind:
    if d.reverses is not None:
        return ExchangeKind.reversal
    return kind_of(d.providers[0][0].owner_type, d.recipients[0][0].owner_type)


# --- writing -----------------------------------------------------------------------------


async def _bulk(
    session: AsyncSession,
    table: Table,
    rows: Sequence[dict[str, Any]],
    progress: Progress,
    phase: str,
) -> None:
    """Insert ``rows`` in order (COPY on PostgreSQL), reporting progress."""
    await copy_rows(session, table, rows, progress=lambda done: progress(phase, done, len(rows)))


TRIGGERED = ("postings", "exchanges")


@dataclass
class Suspended:
    """Triggers switched off for a bulk load; SQLite's are dropped and their SQL kept."""

    sqlite_triggers: list[tuple[str, str]]


async def _suspend_triggers(session: AsyncSession) -> Suspended | None:
    """Switch off the row triggers of postings and exchanges in this transaction (``None``
    where the role may not, e.g. it does not own the tables: the triggers then stay on)."""
    conn = await session.connection()
    if conn.dialect.name == "postgresql":
        try:
            async with session.begin_nested():  # a refusal rolls back to here only
                for table in TRIGGERED:
                    await session.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        except DBAPIError:
            return None
        return Suspended([])
    rows = await conn.execute(
        text(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
            "AND tbl_name IN ('postings', 'exchanges') ORDER BY name"
        )
    )
    triggers = [(name, sql) for name, sql in rows]
    for name, _ in triggers:
        await conn.execute(text(f'DROP TRIGGER "{name}"'))
    return Suspended(triggers)


async def _resume_triggers(session: AsyncSession, suspended: Suspended) -> None:
    conn = await session.connection()
    if conn.dialect.name == "postgresql":
        # the deferred foreign-key checks of the load run now: ALTER waits for no pending event
        await conn.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))
        for table in TRIGGERED:
            await conn.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))
        return
    for _, sql in suspended.sqlite_triggers:
        await conn.execute(text(sql))


async def generate(
    session: AsyncSession,
    tb: TimeBank,
    *,
    members: int,
    exchanges: int,
    seed: int = 1,
    principal: Principal = SYSTEM,
    progress: Progress = _no_progress,
) -> Generated:
    """Add a generated community of ``members`` members (and one organisation per hundred,
    at least five) with ``exchanges`` exchanges to ``tb``, and commit. Deterministic for a
    seed and a day. Writes to the bank wait while it runs (PostgreSQL: the postings table is
    locked for the run; SQLite: the write lock)."""
    if members < 2 or exchanges < 0:
        raise ValueError("need at least 2 members and a non-negative number of exchanges")
    community = Community(tb, members, exchanges, seed)
    community.draw_people()
    await begin_write(session)
    dialect = (await session.connection()).dialect.name
    if dialect == "postgresql":
        await session.execute(text("LOCK TABLE postings IN EXCLUSIVE MODE"))
        # the checks and the rollups aggregate the whole ledger: let their sorts stay in memory
        await session.execute(text("SET LOCAL work_mem = '256MB'"))
    suspended = await _suspend_triggers(session) if exchanges else None
    pool_acc = (
        await session.execute(
            select(Account)
            .where(Account.id == tb.pool_account_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    lo, hi = effective_limits(pool_acc, tb)
    pool = Party(
        OwnerType.pool,
        tb.id,
        pool_acc.id,
        community.start,
        community.today,
        name="Community pool",
        lo=lo,
        hi=hi,
        balance=pool_acc.balance_minutes,
        earned=pool_acc.earned_minutes,
        spent=pool_acc.spent_minutes,
    )
    community.draw_history(pool)
    ledger = community.settle(progress)

    categories = {
        c.slug: c
        for c in (
            await session.execute(select(Category).where(Category.timebank_id == tb.id))
        ).scalars()
    }
    posting_id = int(
        (await session.execute(select(func.coalesce(func.max(Posting.id), 0)))).scalar_one()
    )
    exchange_rows: list[dict[str, Any]] = []
    posting_rows: list[dict[str, Any]] = []
    by_kind: dict[str, int] = {}
    for d in ledger:
        kind = _kind(d)
        by_kind[kind.value] = by_kind.get(kind.value, 0) + 1
        assert d.id is not None
        legs = [Leg(party.account_id, minutes) for party, minutes, _ in d.legs]
        after = {party.account_id: balance for party, _, balance in d.legs}
        for row in ledger_postings(d.id, legs, after):
            posting_id += 1
            posting_rows.append({"id": posting_id, **row})
        exchange_rows.append(_exchange_row(d, kind, tb, principal, categories))

    people = community.members + community.orgs
    rows = community.member_rows + community.org_rows
    account_rows = [
        {
            "id": p.account_id,
            "timebank_id": tb.id,
            "owner_type": p.owner_type,
            "owner_id": p.owner_id,
            "balance_minutes": p.balance,
            "earned_minutes": p.earned,
            "spent_minutes": p.spent,
            "custom_limits": False,
            "min_balance_minutes": None,
            "max_balance_minutes": None,
            "created_at": row["created_at"],
        }
        for p, row in zip(people, rows, strict=True)
    ]
    name_rows = [
        w
        for owner_type, named, key in (
            ("member", community.member_rows, "display_name"),
            ("organisation", community.org_rows, "name"),
        )
        for row in named
        for w in word_rows(tb.id, owner_type, row["id"], row[key])
    ]
    tables: list[tuple[Any, list[dict[str, Any]], str]] = [
        (Account.__table__, account_rows, "accounts"),
        (Member.__table__, community.member_rows, "members"),
        (Organisation.__table__, community.org_rows, "organisations"),
        (NameWord.__table__, name_rows, "name_words"),
        # postings before their exchanges: a recorded exchange takes no postings afterwards
        (Posting.__table__, posting_rows, "postings"),
        (Exchange.__table__, exchange_rows, "exchanges"),
    ]
    for table, table_rows, phase in tables:
        await _bulk(session, table, table_rows, progress, phase)
    await session.execute(
        update(Account)
        .where(Account.id == pool_acc.id)
        .values(balance_minutes=pool.balance, earned_minutes=pool.earned, spent_minutes=pool.spent)
        .execution_options(synchronize_session=False)
    )
    if dialect == "postgresql" and posting_rows:
        await session.execute(
            text("SELECT setval(pg_get_serial_sequence('postings', 'id'), :n)"),
            {"n": posting_id},
        )
    await audit.record(
        session,
        audit.event(
            principal,
            "timebank.generate",
            timebank_id=tb.id,
            target_type="timebank",
            target_id=tb.id,
            details={
                "seed": seed,
                "members": members,
                "organisations": len(community.orgs),
                "exchanges": len(exchange_rows),
            },
        ),
    )
    if suspended is not None:
        progress("checks", 0, 1)
        await _resume_triggers(session, suspended)
        await rebuild_rollups(await session.connection(), tb.id)
        problems = await ledger_problems(session, rollups=False)
        if problems:  # a bug in the simulation: nothing is written
            raise RuntimeError("generated ledger breaks its invariants: " + "; ".join(problems))
        progress("checks", 1, 1)
    progress("commit", 0, 1)
    await session.commit()  # with the triggers on, their deferred checks run here
    progress("commit", 1, 1)
    return Generated(
        tb,
        members,
        len(community.orgs),
        len(exchange_rows),
        len(posting_rows),
        by_kind.get(ExchangeKind.reversal.value, 0),
        community.start,
        community.today,
        by_kind,
    )


def _exchange_row(
    d: Draft,
    kind: ExchangeKind,
    tb: TimeBank,
    principal: Principal,
    categories: dict[str, Category],
) -> dict[str, Any]:
    """The row the ledger's own builder makes for this draft, at its moment in the past."""
    simple = len(d.providers) == 1 and len(d.recipients) == 1
    if d.legs:  # as settled (a reversal's are the original's, negated)
        legs = [Leg(p.account_id, m) for p, m, _ in d.legs]
    else:  # a proposal never settled
        legs = [Leg(p.account_id, m) for p, m in d.providers]
        legs += [Leg(p.account_id, -m) for p, m in d.recipients]
    ledger_draft = LedgerDraft(
        kind,
        legs,
        d.occurred_on,
        categories[d.category] if d.category else None,
        d.description,
        d.external_ref,
        reverses=d.reverses.id if d.reverses is not None else None,
        reason="Entered twice from the time sheet" if d.reverses is not None else None,
        simple_parties=(d.providers[0][0].account_id, d.recipients[0][0].account_id)
        if simple
        else None,
    )
    proposal = d.proposed_by is not None
    row = exchange_row(
        PROPOSER if proposal else principal,
        tb,
        ledger_draft,
        status=d.status,
        now=d.recorded_at,
        proposed_by=d.proposed_by,
        exchange_id=d.id,
    )
    if d.status not in (ExchangeStatus.pending, ExchangeStatus.recorded):
        row["decided_at"] = d.recorded_at + timedelta(days=2)
    return row


PROPOSER = Principal(key_id=None, role=Role.member)  # a partner app's proposal


async def get_or_create_bank(
    session: AsyncSession,
    slug: str,
    name: str | None = None,
    settings: dict[str, Any] | None = None,
) -> tuple[TimeBank, bool]:
    tb = (await session.execute(select(TimeBank).where(TimeBank.slug == slug))).scalar()
    if tb is not None:
        return tb, False
    tb = await create_timebank(
        session, SYSTEM, slug, name or slug.replace("-", " ").title(), settings or {}
    )
    await session.commit()
    return tb, True


DEMO_SETTINGS = {"starting_grant_minutes": 120}
DEMO_MEMBERS = 400
DEMO_EXCHANGES = 6000


async def create_demo(
    session: AsyncSession,
    slug: str = "demo",
    seed: int = 7,
    members: int = DEMO_MEMBERS,
    exchanges: int = DEMO_EXCHANGES,
) -> TimeBank:
    """The demo time bank of ``serve --demo``: a generated community (committed)."""
    tb, _ = await get_or_create_bank(session, slug, "Riverside Time Bank (demo)", DEMO_SETTINGS)
    await generate(session, tb, members=members, exchanges=exchanges, seed=seed)
    return tb


def _folded(name: str) -> dict[str, str]:
    """The stored comparison forms of a name (as the models' validators set them)."""
    return {
        "name_folded": fold(name)[:FOLDED_LENGTH],
        "name_skeleton": skeleton(name)[:FOLDED_LENGTH],
    }
