"""Who a typed name means (see docs/names.md): the active members and organisations whose
folded name starts with, equals or nearly equals what was typed, with what tells two of one
name apart — membership number, locality, year joined, a masked email. Every lookup reads
the stored folded names and their word index, never the bank's names one by one."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select, union
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.members.models import Member, MemberStatus
from timebank.names import fold, mask_email, skeleton, suggest
from timebank.namesearch import NameWord, name_condition, prefix_end
from timebank.organisations.models import Organisation, OrganisationStatus
from timebank.timebanks.models import TimeBank


@dataclass(frozen=True)
class Person:
    """A member or an organisation as offered on a list of choices."""

    type: str  # member or organisation
    id: uuid.UUID
    account_id: uuid.UUID
    name: str
    external_ref: str | None
    locality: str | None
    since: int | None  # the year they joined (an organisation: was registered)
    email: str | None  # masked

    @property
    def ref(self) -> dict[str, str]:
        return {f"{self.type}_id": str(self.id)}


def member_person(m: Member) -> Person:
    return Person(
        "member",
        m.id,
        m.account_id,
        m.display_name,
        m.external_ref,
        m.locality,
        m.joined_on.year,
        mask_email(m.email),
    )


def organisation_person(o: Organisation) -> Person:
    return Person(
        "organisation",
        o.id,
        o.account_id,
        o.name,
        o.external_ref,
        o.locality,
        o.created_at.year if o.created_at else None,
        mask_email(o.contact_email),
    )


async def _people(
    session: AsyncSession,
    tb: TimeBank,
    member_where: Sequence[Any],
    org_where: Sequence[Any],
    limit: int,
    *,
    current: bool = False,
) -> list[Person]:
    """Active members and organisations (``current``: suspended ones too), sorted by name:
    the first ``limit`` of each in id order (the conditions are id lists the database
    drives from; ordering by name there would read the bank's name index whole)."""
    m_status = [MemberStatus.active] + ([MemberStatus.suspended] if current else [])
    o_status = [OrganisationStatus.active] + ([OrganisationStatus.suspended] if current else [])
    members = await session.execute(
        select(Member)
        .where(Member.timebank_id == tb.id, Member.status.in_(m_status), *member_where)
        .order_by(Member.id)
        .limit(limit)
    )
    orgs = await session.execute(
        select(Organisation)
        .where(Organisation.timebank_id == tb.id, Organisation.status.in_(o_status), *org_where)
        .order_by(Organisation.id)
        .limit(limit)
    )
    found = [member_person(m) for m in members.scalars()] + [
        organisation_person(o) for o in orgs.scalars()
    ]
    return sorted(found, key=lambda p: (fold(p.name), p.type, str(p.id)))[:limit]


async def called(session: AsyncSession, tb: TimeBank, text: str, limit: int = 20) -> list[Person]:
    """Everyone active whose name is ``text`` once folded, or whose membership number it is."""
    key, ref = fold(text), text.strip()
    members = union(
        select(Member.id).where(Member.timebank_id == tb.id, Member.name_folded == key),
        select(Member.id).where(Member.timebank_id == tb.id, Member.external_ref == ref),
    )
    orgs = union(
        select(Organisation.id).where(
            Organisation.timebank_id == tb.id, Organisation.name_folded == key
        ),
        select(Organisation.id).where(
            Organisation.timebank_id == tb.id, Organisation.external_ref == ref
        ),
    )
    return await _people(session, tb, [Member.id.in_(members)], [Organisation.id.in_(orgs)], limit)


async def starting(session: AsyncSession, tb: TimeBank, q: str, limit: int = 10) -> list[Person]:
    """Everyone active with a word of their name starting with each word of ``q`` (or whose
    membership number ``q`` is)."""
    ref = q.strip()
    member_ref = select(Member.id).where(Member.timebank_id == tb.id, Member.external_ref == ref)
    org_ref = select(Organisation.id).where(
        Organisation.timebank_id == tb.id, Organisation.external_ref == ref
    )
    return await _people(
        session,
        tb,
        [name_condition(Member.id, tb.id, q, member_ref)],
        [name_condition(Organisation.id, tb.id, q, org_ref)],
        limit,
    )


async def closest(session: AsyncSession, tb: TimeBank, text: str, n: int = 3) -> list[Person]:
    """The active people a misspelt name most likely means ("Bethan Morgn" → Bethan Morgan):
    candidates are the names with a word starting as a typed word starts (its first three
    letters, from the word index), ranked by :func:`timebank.names.suggest`."""
    stems = {w[:3] for w in fold(text).split()}
    if not stems:
        return []
    ranges = [and_(NameWord.word >= s, NameWord.word < prefix_end(s)) for s in stems]
    ids = select(NameWord.owner_id).where(NameWord.timebank_id == tb.id, or_(*ranges)).limit(500)
    rows = await session.execute(
        select(Member.id, Member.name_folded).where(
            Member.timebank_id == tb.id,
            Member.status == MemberStatus.active,
            Member.id.in_(ids),
        )
    )
    orgs = await session.execute(
        select(Organisation.id, Organisation.name_folded).where(
            Organisation.timebank_id == tb.id,
            Organisation.status == OrganisationStatus.active,
            Organisation.id.in_(ids),
        )
    )
    by_name: dict[str, list[uuid.UUID]] = {}
    for i, key in [*rows.tuples(), *orgs.tuples()]:
        by_name.setdefault(key, []).append(i)
    best = suggest(text, by_name, n=n)
    chosen = [i for key in best for i in by_name[key]][: n * 3]
    people = {p.id: p for p in await by_ids(session, tb, chosen)}
    return [people[i] for i in chosen if i in people]


async def by_ids(session: AsyncSession, tb: TimeBank, ids: Sequence[uuid.UUID]) -> list[Person]:
    """The active members and organisations among ``ids``."""
    if not ids:
        return []
    return await _people(
        session, tb, [Member.id.in_(ids)], [Organisation.id.in_(ids)], max(len(ids), 1)
    )


async def lookalikes(
    session: AsyncSession, tb: TimeBank, name: str, not_id: uuid.UUID | None = None
) -> list[Person]:
    """The current (active or suspended) members and organisations whose name is ``name``
    once folded, or looks like it (one look-alike skeleton): registering another is allowed,
    with a warning naming them."""
    key, shape = fold(name), skeleton(name)
    members = union(
        select(Member.id).where(Member.timebank_id == tb.id, Member.name_folded == key),
        select(Member.id).where(Member.timebank_id == tb.id, Member.name_skeleton == shape),
    )
    orgs = union(
        select(Organisation.id).where(
            Organisation.timebank_id == tb.id, Organisation.name_folded == key
        ),
        select(Organisation.id).where(
            Organisation.timebank_id == tb.id, Organisation.name_skeleton == shape
        ),
    )
    member_where: list[Any] = [Member.id.in_(members)]
    org_where: list[Any] = [Organisation.id.in_(orgs)]
    if not_id is not None:
        member_where.append(Member.id != not_id)
        org_where.append(Organisation.id != not_id)
    return await _people(session, tb, member_where, org_where, 10, current=True)


def warnings_for(people: Sequence[Person]) -> list[dict[str, Any]]:
    """The ``warnings`` of a registration: one per look-alike, naming them."""
    return [
        {
            "code": "similar_name",
            "message": f"{p.name} ({p.type}"
            + (f", {p.external_ref}" if p.external_ref else "")
            + ") has the same or a look-alike name",
            "type": p.type,
            "id": str(p.id),
            "name": p.name,
            "external_ref": p.external_ref,
        }
        for p in people
    ]
