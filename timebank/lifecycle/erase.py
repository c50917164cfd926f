"""Erasure (the right to be forgotten): a use case that spans the member, the ledger's free
text, the audit trail, API keys and stored idempotent responses."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.access import STAFF, Principal
from timebank.audit import service as audit
from timebank.audit.models import AuditEvent
from timebank.auth.models import ApiKey
from timebank.db import utcnow
from timebank.events.models import EventType
from timebank.events.service import emit, member_change
from timebank.idempotency import IdempotencyRecord
from timebank.ledger.models import Exchange, Posting
from timebank.members.models import Member, MemberStatus
from timebank.members.service import PERSONAL_FIELDS, get_member
from timebank.namesearch import reindex
from timebank.timebanks.models import TimeBank
from timebank.timebanks.service import today

ERASED_NAME = "Erased member"
REDACTED = "[redacted]"


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
    await reindex(session, tb.id, "member", member.id, ERASED_NAME)

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
            .values({column.key: REDACTED, "updated_at": utcnow()})
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
    await emit(session, tb.id, [member_change(EventType.member_erased, member.id)])
    await session.commit()
    return member


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
