"""Organisations: charities, groups, care providers, NHS teams — each with an account."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.access import STAFF, Principal
from timebank.audit import service as audit
from timebank.db import utcnow
from timebank.errors import Duplicate, InvalidInput, NotFound
from timebank.namesearch import name_condition, reindex
from timebank.organisations.models import Organisation, OrganisationStatus
from timebank.organisations.schemas import OrganisationPatch
from timebank.timebanks.models import TimeBank


async def get_organisation(
    session: AsyncSession, tb: TimeBank, organisation_id: uuid.UUID
) -> Organisation:
    org = await session.get(Organisation, organisation_id)
    if org is None or org.timebank_id != tb.id:
        raise NotFound("No such organisation in this time bank")
    return org


async def organisation_ref_taken(
    session: AsyncSession, tb: TimeBank, ref: str, not_id: uuid.UUID | None
) -> None:
    stmt = select(Organisation.id).where(
        Organisation.timebank_id == tb.id, Organisation.external_ref == ref
    )
    if not_id is not None:
        stmt = stmt.where(Organisation.id != not_id)
    if (await session.execute(stmt)).first():
        raise Duplicate(f"external_ref '{ref}' belongs to another organisation")


async def update_organisation(
    session: AsyncSession,
    principal: Principal,
    tb: TimeBank,
    organisation_id: uuid.UUID,
    patch: OrganisationPatch,
) -> Organisation:
    principal.require(tb.id, *STAFF)
    org = await get_organisation(session, tb, organisation_id)
    changes = patch.model_dump(exclude_unset=True)
    for required in ("name", "kind", "status"):
        if required in changes and changes[required] is None:
            raise InvalidInput(required, "cannot be null")
    if changes.get("external_ref"):
        await organisation_ref_taken(session, tb, changes["external_ref"], org.id)
    for key, value in changes.items():
        setattr(org, key, value)
    org.updated_at = utcnow()
    await session.flush()
    if "name" in changes:
        await reindex(session, tb.id, "organisation", org.id, org.name)
    await audit.record(
        session,
        audit.event(
            principal,
            "organisation.update",
            timebank_id=tb.id,
            target_type="organisation",
            target_id=org.id,
            details={"fields": sorted(changes)},
        ),
    )
    await session.commit()
    return org


async def list_organisations(
    session: AsyncSession,
    tb: TimeBank,
    status: OrganisationStatus | None,
    q: str | None,
    after: uuid.UUID | None,
    limit: int,
) -> list[Organisation]:
    stmt = select(Organisation).where(Organisation.timebank_id == tb.id)
    if status is not None:
        stmt = stmt.where(Organisation.status == status)
    if q:
        by_ref = select(Organisation.id).where(
            Organisation.timebank_id == tb.id, Organisation.external_ref == q.strip()
        )
        stmt = stmt.where(name_condition(Organisation.id, tb.id, q, by_ref))
    if after is not None:
        stmt = stmt.where(Organisation.id > after)
    return list((await session.execute(stmt.order_by(Organisation.id).limit(limit + 1))).scalars())
