"""Members: registration (with account and optional starting grant), profile, status."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, or_, select, union_all, update
from sqlalchemy import literal as sa_literal
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.audit import service as audit
from timebank.audit.models import AuditEvent
from timebank.auth.models import ApiKey, Role
from timebank.auth.principal import STAFF, Principal
from timebank.db import contains_pattern, utcnow, uuid7
from timebank.errors import Duplicate, Forbidden, InvalidInput, NotFound
from timebank.idempotency import IdempotencyRecord
from timebank.ledger import service as ledger
from timebank.ledger.models import Account, Exchange, ExchangeKind, OwnerType, Posting
from timebank.members.models import Member, MemberStatus
from timebank.members.schemas import MemberCreate, MemberPatch
from timebank.organisations.models import Organisation, OrganisationStatus
from timebank.timebanks.models import TimeBank
from timebank.timebanks.service import today

CONTACT_FIELDS = {"email", "phone", "locality", "postcode"}
PERSONAL_FIELDS = (
    "email",
    "phone",
    "locality",
    "postcode",
    "birth_year",
    "gender",
    "disability",
    "ethnicity",
    "external_ref",
)
ERASED_NAME = "Erased member"
REDACTED = "[redacted]"

ALLOWED_STATUS = {
    MemberStatus.active: {MemberStatus.suspended, MemberStatus.left},
    MemberStatus.suspended: {MemberStatus.active, MemberStatus.left},
    MemberStatus.left: {MemberStatus.active},
    MemberStatus.erased: set(),
}


async def _ref_taken(
    session: AsyncSession, tb: TimeBank, ref: str, not_id: uuid.UUID | None
) -> None:
    stmt = select(Member.id).where(Member.timebank_id == tb.id, Member.external_ref == ref)
    if not_id is not None:
        stmt = stmt.where(Member.id != not_id)
    if (await session.execute(stmt)).first():
        raise Duplicate(f"external_ref '{ref}' belongs to another member")


async def create_member(
    session: AsyncSession, principal: Principal, tb: TimeBank, data: MemberCreate
) -> Member:
    """Register a member with an account; when the time bank's ``starting_grant_minutes`` is
    above zero the pool grants it in the same transaction."""
    principal.require(tb.id, *STAFF)
    joined_on = data.joined_on or today(tb)
    if joined_on > today(tb):
        raise InvalidInput("joined_on", "is after today")
    if data.external_ref:
        await _ref_taken(session, tb, data.external_ref, None)
    now = utcnow()
    member_id = uuid7()
    account = Account(
        id=uuid7(),
        timebank_id=tb.id,
        owner_type=OwnerType.member,
        owner_id=member_id,
        created_at=now,
    )
    session.add(account)
    await session.flush()
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
    details: dict[str, Any] = {
        "fields": sorted(k for k, v in fields.items() if v is not None and v is not False)
    }
    if tb.starting_grant_minutes > 0:
        assert tb.pool_account_id is not None
        posted = await ledger.post_exchange(
            session,
            principal,
            tb,
            kind=ExchangeKind.pool_grant,
            legs=[
                ledger.Leg(account.id, tb.starting_grant_minutes),
                ledger.Leg(tb.pool_account_id, -tb.starting_grant_minutes),
            ],
            occurred_on=today(tb),
            description="Starting grant",
            simple_parties=(account.id, tb.pool_account_id),
        )
        details["starting_grant_exchange_id"] = str(posted.exchange.id)
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
    return member


async def get_member(session: AsyncSession, tb: TimeBank, member_id: uuid.UUID) -> Member:
    m = await session.get(Member, member_id)
    if m is None or m.timebank_id != tb.id:
        raise NotFound("No such member in this time bank")
    return m


async def update_member(
    session: AsyncSession,
    principal: Principal,
    tb: TimeBank,
    member_id: uuid.UUID,
    patch: MemberPatch,
) -> Member:
    """Edit a profile or change status (active ↔ suspended, → left with ``left_on``).
    Leaving does not touch the balance. A member key may edit its own contact fields only."""
    principal.require(tb.id, Role.admin, Role.broker, Role.member)
    changes: dict[str, Any] = patch.model_dump(exclude_unset=True)
    if principal.role is Role.member:
        if principal.member_id != member_id:
            raise Forbidden("A member key may edit only its own profile")
        other = sorted(set(changes) - CONTACT_FIELDS)
        if other:
            raise Forbidden(f"A member key may edit contact fields only, not {', '.join(other)}")
    member = await get_member(session, tb, member_id)
    if member.status is MemberStatus.erased:
        raise InvalidInput("status", "an erased member cannot be edited")
    for required in ("display_name", "statistics_consent", "joined_on", "status"):
        if required in changes and changes[required] is None:
            raise InvalidInput(required, "cannot be null")
    status = changes.pop("status", None)
    left_on = changes.pop("left_on", None)
    if status is not None and status is not member.status:
        if status not in ALLOWED_STATUS[member.status]:
            raise InvalidInput(
                "status", f"cannot change from {member.status.value} to {status.value}"
            )
        member.status = status
        if status is MemberStatus.left:
            member.left_on = left_on or today(tb)
        elif status is MemberStatus.active:
            member.left_on = None
    elif left_on is not None:
        if member.status is not MemberStatus.left:
            raise InvalidInput("left_on", "only for a member who has left")
        member.left_on = left_on
    if member.left_on is not None and member.left_on < member.joined_on:
        raise InvalidInput("left_on", "is before joined_on")
    if changes.get("external_ref"):
        await _ref_taken(session, tb, changes["external_ref"], member.id)
    if (
        "statistics_consent" in changes
        and changes["statistics_consent"] != member.statistics_consent
    ):
        member.consent_recorded_at = utcnow()
    for key, value in changes.items():
        setattr(member, key, value)
    member.updated_at = utcnow()
    await session.flush()
    fields = sorted(patch.model_fields_set)
    await audit.record(
        session,
        audit.event(
            principal,
            "member.update",
            timebank_id=tb.id,
            target_type="member",
            target_id=member.id,
            details={"fields": fields},
        ),
    )
    return member


async def list_members(
    session: AsyncSession,
    tb: TimeBank,
    status: MemberStatus | None,
    q: str | None,
    after: uuid.UUID | None,
    limit: int,
) -> list[Member]:
    stmt = select(Member).where(Member.timebank_id == tb.id)
    if status is not None:
        stmt = stmt.where(Member.status == status)
    if q:
        stmt = stmt.where(Member.display_name.ilike(contains_pattern(q), escape="\\"))
    if after is not None:
        stmt = stmt.where(Member.id > after)
    return list((await session.execute(stmt.order_by(Member.id).limit(limit + 1))).scalars())


async def erase_member(
    session: AsyncSession, principal: Principal, tb: TimeBank, member_id: uuid.UUID
) -> Member:
    """Right to erasure: personal and demographic fields nulled, display name replaced,
    status ``erased``. Postings stay (they are the accounting record); the free text of the
    member's exchanges is redacted; the member's API keys are revoked; stored idempotency
    responses that mention the member are purged. The audit event names fields, not values.

    A purged idempotency record keeps its fingerprint: a retry of a request that was carried
    out is then refused (409 ``duplicate``), never carried out a second time.
    """
    principal.require(tb.id, *STAFF)
    member = await get_member(session, tb, member_id)
    if member.status is MemberStatus.erased:
        return member
    now = utcnow()
    # What identifies her in stored responses and free text, captured before nulling.
    identifiers = [str(member.id), str(member.account_id)] + [
        v for v in (member.display_name, member.email, member.phone) if v and len(v) >= 4
    ]
    for field in PERSONAL_FIELDS:
        setattr(member, field, None)
    member.display_name = ERASED_NAME
    member.statistics_consent = False
    member.consent_recorded_at = now
    member.status = MemberStatus.erased
    member.left_on = member.left_on or today(tb)
    member.updated_at = now
    await session.flush()

    mine = or_(
        Exchange.id.in_(select(Posting.exchange_id).where(Posting.account_id == member.account_id)),
        Exchange.provider_account_id == member.account_id,
        Exchange.recipient_account_id == member.account_id,
        Exchange.proposed_by == member.id,
    )
    exchange_ids = [
        str(i) for i in (await session.execute(select(Exchange.id).where(mine))).scalars()
    ]
    for column in (Exchange.description, Exchange.reason, Exchange.override_reason):
        await session.execute(
            update(Exchange)
            .where(mine, column.is_not(None))
            .values({column.key: REDACTED})
            .execution_options(synchronize_session=False)
        )
    for chunk in _chunks(exchange_ids, 500):  # reasons copied into the audit trail
        await session.execute(
            update(AuditEvent)
            .where(
                AuditEvent.target_type == "exchange",
                AuditEvent.target_id.in_(chunk),
                AuditEvent.reason.is_not(None),
            )
            .values(reason=REDACTED)
        )
    member_keys = select(ApiKey.id).where(ApiKey.member_id == member.id)
    await session.execute(
        update(ApiKey)
        .where(ApiKey.member_id == member.id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    await session.execute(
        delete(IdempotencyRecord).where(IdempotencyRecord.api_key_id.in_(member_keys))
    )
    await session.execute(
        update(IdempotencyRecord)
        .where(
            or_(
                IdempotencyRecord.subject_id == member.id,
                *(IdempotencyRecord.response_body.contains(v) for v in identifiers),
            )
        )
        .values(response_body=None)
    )
    await audit.record(
        session,
        audit.event(
            principal,
            "member.erase",
            timebank_id=tb.id,
            target_type="member",
            target_id=member.id,
            details={"fields": [*PERSONAL_FIELDS, "display_name"]},
        ),
    )
    return member


async def directory(
    session: AsyncSession,
    tb: TimeBank,
    q: str | None,
    after: uuid.UUID | None,
    limit: int,
) -> list[tuple[str, uuid.UUID, str]]:
    """Active members and organisations: type, id and display name only, in id order."""
    members = select(
        sa_literal("member").label("type"),
        Member.id.label("id"),
        Member.display_name.label("name"),
    ).where(Member.timebank_id == tb.id, Member.status == MemberStatus.active)
    orgs = select(
        sa_literal("organisation").label("type"),
        Organisation.id.label("id"),
        Organisation.name.label("name"),
    ).where(Organisation.timebank_id == tb.id, Organisation.status == OrganisationStatus.active)
    both = union_all(members, orgs).subquery()
    stmt = select(both.c.type, both.c.id, both.c.name)
    if q:
        stmt = stmt.where(both.c.name.ilike(contains_pattern(q), escape="\\"))
    if after is not None:
        stmt = stmt.where(both.c.id > after)
    rows = await session.execute(stmt.order_by(both.c.id).limit(limit + 1))
    return [(str(t), i, str(n)) for t, i, n in rows.tuples()]


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
