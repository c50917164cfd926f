"""A demo time bank with a realistic small community, written through the ledger rules."""

from __future__ import annotations

import random
from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.auth.principal import SYSTEM
from timebank.errors import DomainError
from timebank.ledger import service as ledger
from timebank.ledger.schemas import ExchangeCreate, GroupLeg, PartyRef
from timebank.members.models import Disability, Ethnicity, Gender, Member
from timebank.members.schemas import MemberCreate
from timebank.members.service import create_member
from timebank.organisations.models import Organisation, OrganisationKind
from timebank.organisations.schemas import OrganisationCreate
from timebank.organisations.service import create_organisation
from timebank.timebanks.models import Category, TimeBank
from timebank.timebanks.service import create_timebank, today

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
]
LOCALITIES = ["Irvine", "Kilwinning", "Saltcoats", "Ardrossan", "Largs", "Dalry"]
ORGS = [
    ("Riverside Food Bank", OrganisationKind.charity),
    ("Harbour Men's Shed", OrganisationKind.community_group),
    ("Greenways Care at Home", OrganisationKind.care_provider),
    ("Ward 7 Patient Support (NHS)", OrganisationKind.health),
    ("Kilwinning Community Garden", OrganisationKind.community_group),
    ("North Coast Council Libraries", OrganisationKind.local_authority),
    ("Bike Recycle CIC", OrganisationKind.social_enterprise),
]
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


async def create_demo(session: AsyncSession, slug: str = "demo", seed: int = 7) -> TimeBank:
    """Create (caller commits) a demo time bank: ~40 members, 7 organisations, a few hundred
    exchanges over the last year, a group exchange and a reversal."""
    rng = random.Random(seed)
    tb = await create_timebank(
        session, SYSTEM, slug, "Riverside Time Bank (demo)", {"starting_grant_minutes": 120}
    )
    now = today(tb)
    members: list[Member] = []
    for i in range(40):
        name = f"{FIRST[i % len(FIRST)]} {LAST[(i * 7) % len(LAST)]}"
        consent = rng.random() < 0.7
        members.append(
            await create_member(
                session,
                SYSTEM,
                tb,
                MemberCreate(
                    display_name=name,
                    email=f"{name.lower().replace(' ', '.')}@example.org",
                    locality=rng.choice(LOCALITIES),
                    birth_year=rng.randint(1940, 2006),
                    gender=rng.choice(list(Gender)),
                    disability=rng.choice(list(Disability)) if consent else None,
                    ethnicity=rng.choice(list(Ethnicity)) if consent else None,
                    statistics_consent=consent,
                    joined_on=now - timedelta(days=rng.randint(30, 700)),
                ),
            )
        )
    orgs: list[Organisation] = [
        await create_organisation(
            session,
            SYSTEM,
            tb,
            OrganisationCreate(name=name, kind=kind, locality=rng.choice(LOCALITIES)),
        )
        for name, kind in ORGS
    ]
    categories = list(
        (
            await session.execute(select(Category.slug).where(Category.timebank_id == tb.id))
        ).scalars()
    )
    traders = members[: int(len(members) * 0.75)]  # many members never trade
    weights = [1 / (i + 1) ** 0.8 for i in range(len(traders))]  # heavy-tailed activity
    recorded: list[ledger.Posted] = []
    for _ in range(320):
        occurred = now - timedelta(days=rng.randint(0, 364))
        provider = rng.choices(traders, weights)[0]
        cat = rng.choice(categories)
        roll = rng.random()
        if roll < 0.7:
            recipient = rng.choice([m for m in traders if m.id != provider.id])
            data = ExchangeCreate(
                provider=PartyRef(member_id=provider.id),
                recipient=PartyRef(member_id=recipient.id),
                minutes=rng.choice([30, 60, 60, 90, 120, 120, 180]),
                category=cat,
                occurred_on=occurred,
                description=DESCRIPTIONS[cat],
            )
        elif roll < 0.9:
            org = rng.choice(orgs)
            data = ExchangeCreate(
                provider=PartyRef(member_id=provider.id),
                recipient=PartyRef(organisation_id=org.id),
                minutes=rng.choice([120, 180, 240, 300]),
                category=cat,
                occurred_on=occurred,
                description=f"Volunteering at {org.name}",
            )
        else:
            org = rng.choice(orgs)
            data = ExchangeCreate(
                provider=PartyRef(organisation_id=org.id),
                recipient=PartyRef(member_id=provider.id),
                minutes=rng.choice([60, 90, 120]),
                category=cat,
                occurred_on=occurred,
                description=f"Support from {org.name}",
            )
        try:
            async with session.begin_nested():
                recorded.append(await ledger.record_exchange(session, SYSTEM, tb, data))
        except DomainError:
            continue  # e.g. a member at their limit: a real broker would pick someone else
    # A class: one tutor teaches five members for two hours; each learner pays 24 minutes.
    learners = rng.sample([m for m in traders if m.id != traders[0].id], 5)
    group = ExchangeCreate(
        providers=[GroupLeg(party=PartyRef(member_id=traders[0].id), minutes=120)],
        recipients=[GroupLeg(party=PartyRef(member_id=m.id), minutes=24) for m in learners],
        category="learning-teaching",
        occurred_on=now - timedelta(days=3),
        description="Smartphone basics class",
    )
    async with session.begin_nested():
        await ledger.record_exchange(session, SYSTEM, tb, group)
    if recorded:
        await ledger.reverse_exchange(
            session, SYSTEM, tb, recorded[-1].exchange.id, "Entered twice from the time sheet"
        )
    return tb


def demo_dates(tb: TimeBank) -> tuple[date, date]:
    now = today(tb)
    return now - timedelta(days=365), now
