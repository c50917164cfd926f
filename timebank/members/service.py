"""Members: registration (with account and optional starting grant), profile, status."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import literal as sa_literal
from sqlalchemy import select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.access import Principal, Role
from timebank.audit import service as audit
from timebank.db import utcnow
from timebank.errors import Duplicate, Forbidden, InvalidInput, NotFound
from timebank.events.models import EventType
from timebank.events.service import Change, emit, member_change
from timebank.members.models import Member, MemberStatus
from timebank.members.schemas import MemberPatch
from timebank.namesearch import name_condition, reindex
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

ALLOWED_STATUS = {
    MemberStatus.active: {MemberStatus.suspended, MemberStatus.left},
    MemberStatus.suspended: {MemberStatus.active, MemberStatus.left},
    MemberStatus.left: {MemberStatus.active},
    MemberStatus.erased: set(),
}


async def member_ref_taken(
    session: AsyncSession, tb: TimeBank, ref: str, not_id: uuid.UUID | None
) -> None:
    stmt = select(Member.id).where(Member.timebank_id == tb.id, Member.external_ref == ref)
    if not_id is not None:
        stmt = stmt.where(Member.id != not_id)
    if (await session.execute(stmt)).first():
        raise Duplicate(f"external_ref '{ref}' belongs to another member")


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
    was = member.status
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
        await member_ref_taken(session, tb, changes["external_ref"], member.id)
    if (
        "statistics_consent" in changes
        and changes["statistics_consent"] != member.statistics_consent
    ):
        member.consent_recorded_at = utcnow()
    for key, value in changes.items():
        setattr(member, key, value)
    member.updated_at = utcnow()
    await session.flush()
    if "display_name" in changes:
        await reindex(session, tb.id, "member", member.id, member.display_name)
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
    await emit(session, tb.id, member_changes(member.id, fields, was, member.status))
    await session.commit()
    return member


def member_changes(
    member_id: uuid.UUID, fields: list[str], was: MemberStatus, now: MemberStatus
) -> list[Change]:
    """A profile edit's events: ``member.suspended`` when it suspends the member, and
    ``member.updated`` naming the fields sent (and the new status, if it changed)."""
    out: list[Change] = []
    if now is not was and now is MemberStatus.suspended:
        out.append(member_change(EventType.member_suspended, member_id, status=now.value))
    rest = [f for f in fields if not (f == "status" and out)]
    if rest:
        more: dict[str, Any] = {"status": now.value} if now is not was and not out else {}
        out.append(member_change(EventType.member_updated, member_id, changed=rest, **more))
    return out


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
        by_ref = select(Member.id).where(
            Member.timebank_id == tb.id, Member.external_ref == q.strip()
        )
        stmt = stmt.where(name_condition(Member.id, tb.id, q, by_ref))
    if after is not None:
        stmt = stmt.where(Member.id > after)
    return list((await session.execute(stmt.order_by(Member.id).limit(limit + 1))).scalars())


async def directory(
    session: AsyncSession,
    tb: TimeBank,
    q: str | None,
    after: uuid.UUID | None,
    limit: int,
) -> list[tuple[str, uuid.UUID, str]]:
    """Active members and organisations: type, id and display name only, in id order;
    ``q``: each of its words starts a word of the name, folded ("llyr" finds "Siân Llŷr")."""
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
    # each condition inside each branch, so each reads its own index (by the matching ids)
    if q:
        members = members.where(name_condition(Member.id, tb.id, q))
        orgs = orgs.where(name_condition(Organisation.id, tb.id, q))
    if after is not None:
        members = members.where(Member.id > after)
        orgs = orgs.where(Organisation.id > after)
    members = members.order_by(Member.id).limit(limit + 1)
    orgs = orgs.order_by(Organisation.id).limit(limit + 1)
    both = union_all(members.subquery().select(), orgs.subquery().select()).subquery()
    stmt = select(both.c.type, both.c.id, both.c.name)
    rows = await session.execute(stmt.order_by(both.c.id).limit(limit + 1))
    return [(str(t), i, str(n)) for t, i, n in rows.tuples()]
