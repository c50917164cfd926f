"""Registration: the use cases that open an account with its owner — a time bank with its
pool, a member (with the bank's starting grant, if any), an organisation. They span the
parties and the ledger, so they live above both."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.access import STAFF, Principal
from timebank.audit import service as audit
from timebank.db import utcnow, uuid7
from timebank.errors import Duplicate, InvalidInput
from timebank.events.models import EventType
from timebank.events.service import Change, emit, member_change
from timebank.idempotency import Claim
from timebank.ledger.accounts import open_account
from timebank.ledger.models import ExchangeKind, OwnerType
from timebank.ledger.posting import Draft, Leg, post
from timebank.ledger.record import recorded_change
from timebank.members.models import Member, MemberStatus
from timebank.members.schemas import MemberCreate
from timebank.members.service import member_ref_taken
from timebank.namesearch import reindex
from timebank.organisations.models import Organisation, OrganisationStatus
from timebank.organisations.schemas import OrganisationCreate
from timebank.organisations.service import organisation_ref_taken
from timebank.timebanks.models import Category, TimeBank
from timebank.timebanks.schemas import TimeBankSettings
from timebank.timebanks.service import DEFAULT_CATEGORIES, check_settings, today


async def create_timebank(
    session: AsyncSession,
    principal: Principal,
    slug: str,
    name: str,
    settings: dict[str, Any],
    claim: Claim | None = None,
) -> TimeBank:
    """A new time bank with its pool account and the default categories (global admin)."""
    principal.require_global_admin()
    check_settings(settings, principal)
    if (await session.execute(select(TimeBank.id).where(TimeBank.slug == slug))).first():
        raise Duplicate(f"Time bank slug '{slug}' is taken")
    # Every setting is given explicitly, unset ones from the schema's defaults: a column
    # default would also replace an explicit null (unbounded), as SQLAlchemy fills None.
    values = {**TimeBankSettings().model_dump(), **settings}
    tb = TimeBank(id=uuid7(), slug=slug, name=name, created_at=utcnow(), **values)
    session.add(tb)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Duplicate(f"Time bank slug '{slug}' is taken") from exc
    pool = await open_account(session, tb.id, OwnerType.pool, tb.id)
    tb.pool_account_id = pool.id
    session.add_all(
        Category(id=uuid7(), timebank_id=tb.id, slug=s, name=n, created_at=utcnow())
        for s, n in DEFAULT_CATEGORIES
    )
    await session.flush()
    await audit.record(
        session,
        audit.event(
            principal,
            "timebank.create",
            timebank_id=tb.id,
            target_type="timebank",
            target_id=tb.id,
            details={"fields": sorted(settings)},
        ),
    )
    if claim is not None:
        await claim.settle(session, tb)
    await session.commit()
    return tb


async def create_member(
    session: AsyncSession,
    principal: Principal,
    tb: TimeBank,
    data: MemberCreate,
    claim: Claim | None = None,
) -> Member:
    """Register a member with an account; when the time bank's ``starting_grant_minutes`` is
    above zero the pool grants it in the same transaction."""
    principal.require(tb.id, *STAFF)
    joined_on = data.joined_on or today(tb)
    if joined_on > today(tb):
        raise InvalidInput("joined_on", "is after today")
    if data.external_ref:
        await member_ref_taken(session, tb, data.external_ref, None)
    now = utcnow()
    member_id = uuid7()
    account = await open_account(session, tb.id, OwnerType.member, member_id)
    fields = data.model_dump(exclude={"joined_on"})
    member = Member(
        id=member_id,
        timebank_id=tb.id,
        account_id=account.id,
        joined_on=joined_on,
        consent_recorded_at=now if data.statistics_consent else None,
        status=MemberStatus.active,
        created_at=now,
        updated_at=now,
        **fields,
    )
    session.add(member)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Duplicate("external_ref belongs to another member") from exc
    await reindex(session, tb.id, "member", member.id, member.display_name)
    details: dict[str, Any] = {
        "fields": sorted(k for k, v in fields.items() if v is not None and v is not False)
    }
    changes: list[Change] = [member_change(EventType.member_created, member.id)]
    if tb.starting_grant_minutes > 0:
        assert tb.pool_account_id is not None
        grant = Draft(
            ExchangeKind.pool_grant,
            [
                Leg(account.id, tb.starting_grant_minutes),
                Leg(tb.pool_account_id, -tb.starting_grant_minutes),
            ],
            today(tb),
            description="Starting grant",
            simple_parties=(account.id, tb.pool_account_id),
        )
        posted = await post(session, principal, tb, grant)
        details["starting_grant_exchange_id"] = str(posted.exchange.id)
        changes.append(recorded_change(posted.exchange.id, [member.id]))
    await audit.record(
        session,
        audit.event(
            principal,
            "member.create",
            timebank_id=tb.id,
            target_type="member",
            target_id=member.id,
            details=details,
        ),
    )
    if claim is not None:
        await claim.settle(session, member)
    await emit(session, tb.id, changes)
    await session.commit()
    return member


async def create_organisation(
    session: AsyncSession,
    principal: Principal,
    tb: TimeBank,
    data: OrganisationCreate,
    claim: Claim | None = None,
) -> Organisation:
    """An organisation with its account (broker)."""
    principal.require(tb.id, *STAFF)
    if data.external_ref:
        await organisation_ref_taken(session, tb, data.external_ref, None)
    now = utcnow()
    org_id = uuid7()
    account = await open_account(session, tb.id, OwnerType.organisation, org_id)
    org = Organisation(
        id=org_id,
        timebank_id=tb.id,
        account_id=account.id,
        status=OrganisationStatus.active,
        created_at=now,
        updated_at=now,
        **data.model_dump(),
    )
    session.add(org)
    await session.flush()
    await reindex(session, tb.id, "organisation", org.id, org.name)
    await audit.record(
        session,
        audit.event(
            principal,
            "organisation.create",
            timebank_id=tb.id,
            target_type="organisation",
            target_id=org.id,
        ),
    )
    if claim is not None:
        await claim.settle(session, org)
    await session.commit()
    return org
