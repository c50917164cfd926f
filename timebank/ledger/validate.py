"""Validating exchange requests: resolve the parties they name, derive the kind, check
amounts, dates and categories — against one lookup however many requests (a batch of a
thousand costs three queries)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.errors import InvalidInput, PartyInactive
from timebank.ledger.models import Exchange, ExchangeKind, OwnerType
from timebank.ledger.posting import Draft, Leg, duplicate_ref
from timebank.ledger.rules import POOL_KINDS, kind_of
from timebank.ledger.schemas import ExchangeCreate, PartyRef
from timebank.members.models import Member, MemberStatus
from timebank.organisations.models import Organisation, OrganisationStatus
from timebank.timebanks.models import Category, TimeBank
from timebank.timebanks.service import check_date, today


@dataclass(frozen=True)
class Party:
    """A resolved party: whose account, and whether it may take part in new exchanges."""

    owner_type: OwnerType
    owner_id: uuid.UUID
    account_id: uuid.UUID
    active: bool
    name: str = ""  # a member's display name or an organisation's name, for refusals


def party_refs(data: ExchangeCreate) -> list[PartyRef]:
    """The parties a request names, providers first."""
    if data.is_group:
        assert data.providers is not None and data.recipients is not None
        return [leg.party for leg in (*data.providers, *data.recipients)]
    assert data.provider is not None and data.recipient is not None
    return [data.provider, data.recipient]


@dataclass
class Lookup:
    """What validating exchange requests needs from the database — the members and
    organisations they name, their categories, the ``external_ref``s already taken —
    fetched with at most three queries however many requests there are."""

    tb: TimeBank
    parties: dict[uuid.UUID, Party]  # member or organisation id → party, this bank's only
    categories: dict[str, Category]
    taken_refs: set[str]

    @classmethod
    async def load(
        cls, session: AsyncSession, tb: TimeBank, requests: Sequence[ExchangeCreate]
    ) -> Lookup:
        refs = [r for data in requests for r in party_refs(data)]
        member_ids = {r.member_id for r in refs if r.member_id is not None}
        org_ids = {r.organisation_id for r in refs if r.organisation_id is not None}
        queries = [
            select(
                model.id,
                model.timebank_id,
                model.account_id,
                (model.status == active).label("active"),
                literal(owner_type.value).label("owner_type"),
                name.label("name"),
            ).where(model.id.in_(ids))
            for model, ids, active, owner_type, name in (
                (Member, member_ids, MemberStatus.active, OwnerType.member, Member.display_name),
                (
                    Organisation,
                    org_ids,
                    OrganisationStatus.active,
                    OwnerType.organisation,
                    Organisation.name,
                ),
            )
            if ids
        ]
        rows: list[Any] = []
        if queries:
            stmt: Any = queries[0] if len(queries) == 1 else union_all(*queries)
            rows = list((await session.execute(stmt)).all())
        slugs = {d.category for d in requests if d.category is not None}
        categories: dict[str, Category] = {}
        if slugs:
            found = await session.execute(
                select(Category).where(Category.timebank_id == tb.id, Category.slug.in_(slugs))
            )
            categories = {c.slug: c for c in found.scalars()}
        wanted = {d.external_ref for d in requests if d.external_ref is not None}
        taken: set[str] = set()
        if wanted:
            found_refs = await session.execute(
                select(Exchange.external_ref).where(
                    Exchange.timebank_id == tb.id, Exchange.external_ref.in_(wanted)
                )
            )
            taken = {r for r in found_refs.scalars() if r is not None}
        return cls.of(tb, rows, categories, taken)

    @classmethod
    def of(
        cls, tb: TimeBank, rows: Sequence[Any], categories: dict[str, Category], taken: set[str]
    ) -> Lookup:
        """A lookup from rows found (``id, timebank_id, account_id, active, owner_type,
        name``; a party of another bank is as if not found)."""
        parties = {
            row.id: Party(
                OwnerType(row.owner_type), row.id, row.account_id, bool(row.active), row.name
            )
            for row in rows
            if row.timebank_id == tb.id
        }
        return cls(tb, parties, categories, taken)

    def party(self, ref: PartyRef, field_name: str) -> Party:
        """The party ``ref`` names; 422 on ``field_name`` if it is not of this time bank."""
        if ref.member_id is not None:
            party = self.parties.get(ref.member_id)
            if party is None or party.owner_type is not OwnerType.member:
                raise InvalidInput(field_name, "no such member in this time bank")
            return party
        if ref.organisation_id is not None:
            party = self.parties.get(ref.organisation_id)
            if party is None or party.owner_type is not OwnerType.organisation:
                raise InvalidInput(field_name, "no such organisation in this time bank")
            return party
        if ref.account_id is None or ref.account_id != self.tb.pool_account_id:
            raise InvalidInput(field_name, "account_id must be this time bank's pool account")
        return Party(OwnerType.pool, self.tb.id, ref.account_id, True)

    def category(self, slug: str | None, needed: bool) -> Category | None:
        if not needed:
            if slug is not None:
                raise InvalidInput("category", "pool grants and donations have no category")
            return None
        if slug is None:
            raise InvalidInput("category", "required for a service exchange")
        cat = self.categories.get(slug)
        if cat is None:
            raise InvalidInput("category", f"unknown category '{slug}'")
        if cat.retired_at is not None:
            raise InvalidInput("category", f"category '{slug}' is retired: choose another")
        return cat


@dataclass
class Prepared:
    """A validated exchange request: its kind, signed legs and parties."""

    kind: ExchangeKind
    legs: list[Leg]
    parties: list[Party]
    category: Category | None
    occurred_on: date
    inactive: list[str]


async def load_and_validate(session: AsyncSession, tb: TimeBank, data: ExchangeCreate) -> Prepared:
    """Validate one request against the database (see :func:`validate`)."""
    return validate(data, await Lookup.load(session, tb, [data]))


def validate(data: ExchangeCreate, lookup: Lookup) -> Prepared:
    """Validate a request and resolve its parties (422 for anything malformed, 409
    ``duplicate`` for a used ``external_ref``). Party status is reported, not enforced."""
    tb = lookup.tb
    occurred_on = data.occurred_on or today(tb)
    check_date("occurred_on", occurred_on, tb)

    if data.is_group:
        assert data.providers is not None
        assert data.recipients is not None
        sides = [
            ("providers", [(leg.party, leg.minutes) for leg in data.providers], 1),
            ("recipients", [(leg.party, leg.minutes) for leg in data.recipients], -1),
        ]
    else:
        assert data.provider is not None
        assert data.recipient is not None
        assert data.minutes is not None
        sides = [
            ("provider", [(data.provider, data.minutes)], 1),
            ("recipient", [(data.recipient, data.minutes)], -1),
        ]

    legs: list[Leg] = []
    parties: list[Party] = []
    side_types: list[OwnerType] = []
    seen: set[uuid.UUID] = set()
    inactive: list[str] = []
    for name, entries, _ in sides:
        for i, (_ref, minutes) in enumerate(entries):
            if minutes > tb.max_exchange_minutes:
                raise InvalidInput(
                    f"{name}[{i}].minutes" if data.is_group else "minutes",
                    f"over this time bank's max_exchange_minutes ({tb.max_exchange_minutes})",
                )
    resolved = iter(
        [
            lookup.party(ref, f"{name}[{i}]" if data.is_group else name)
            for name, entries, _ in sides
            for i, (ref, _minutes) in enumerate(entries)
        ]
    )
    for name, entries, sign in sides:
        types = set()
        for i, (_ref, minutes) in enumerate(entries):
            label = f"{name}[{i}]" if data.is_group else name
            party = next(resolved)
            if party.account_id in seen:
                raise InvalidInput(label, "a party is given twice")
            seen.add(party.account_id)
            if not party.active:
                inactive.append(f"{label} {party.name} ({party.owner_type.value} {party.owner_id})")
            if data.is_group and party.owner_type is OwnerType.pool:
                raise InvalidInput(label, "the pool cannot take part in a group exchange")
            types.add(party.owner_type)
            parties.append(party)
            legs.append(Leg(party.account_id, sign * minutes))
        if len(types) != 1:
            raise InvalidInput(name, "all parties on one side must be of one type")
        side_types.append(types.pop())

    if data.is_group:
        credited = sum(leg.minutes for leg in legs if leg.minutes > 0)
        debited = -sum(leg.minutes for leg in legs if leg.minutes < 0)
        if credited != debited:
            raise InvalidInput(
                "recipients", f"credited total {credited} != debited total {debited}"
            )

    kind = kind_of(*side_types)
    category = lookup.category(data.category, kind not in POOL_KINDS)
    if data.external_ref is not None and data.external_ref in lookup.taken_refs:
        raise duplicate_ref(data.external_ref)
    return Prepared(kind, legs, parties, category, occurred_on, inactive)


def check_active(prepared: Prepared) -> None:
    if prepared.inactive and prepared.kind not in POOL_KINDS:
        # A pool grant or donation may still settle the balance of a member who has left.
        raise PartyInactive(
            f"{', '.join(prepared.inactive)} is not active (suspended, left or erased)"
        )


def draft(data: ExchangeCreate, prepared: Prepared) -> Draft:
    """What a validated request records."""
    legs = prepared.legs
    return Draft(
        prepared.kind,
        legs,
        prepared.occurred_on,
        prepared.category,
        data.description,
        data.external_ref,
        override_reason=data.override_reason if data.override_limits else None,
        enforce_limits=not data.override_limits,
        simple_parties=None if data.is_group else (legs[0].account_id, legs[1].account_id),
    )
