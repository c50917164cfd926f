"""Reversing a recorded exchange: a correcting exchange, never an edit."""

from __future__ import annotations

import uuid

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.access import STAFF, Principal
from timebank.audit import service as audit
from timebank.errors import AlreadyReversed, NotReversible
from timebank.events.models import EventType
from timebank.events.service import emit, exchange_change
from timebank.idempotency import Claim
from timebank.ledger.changes import account_members
from timebank.ledger.models import Exchange, ExchangeKind, ExchangeStatus, Posting
from timebank.ledger.posting import Draft, Leg, post
from timebank.ledger.reads import find_exchange, reversed_by, view
from timebank.ledger.schemas import ExchangeOut
from timebank.timebanks.models import TimeBank
from timebank.timebanks.service import today


async def reverse_exchange(
    session: AsyncSession,
    principal: Principal,
    tb: TimeBank,
    exchange_id: uuid.UUID,
    reason: str,
    claim: Claim | None = None,
) -> ExchangeOut:
    """Post the mirror image of a recorded exchange, once, and commit. Ignores limits and
    party status (a correction must always go through)."""
    principal.require(tb.id, *STAFF)
    original = await find_exchange(session, tb, exchange_id)
    if original.kind is ExchangeKind.reversal:
        raise NotReversible("A reversal cannot be reversed")
    if original.status is not ExchangeStatus.recorded:
        raise NotReversible(
            f"Only a recorded exchange can be reversed (this one is {original.status.value})"
        )
    if await reversed_by(session, [original.id]):
        raise AlreadyReversed("This exchange was already reversed")
    rows = (
        await session.execute(
            select(Posting.account_id, Posting.minutes)
            .where(Posting.exchange_id == original.id)
            .order_by(Posting.id)
        )
    ).all()
    legs = [Leg(account_id, -minutes) for account_id, minutes in rows]
    reversal = Draft(
        ExchangeKind.reversal,
        legs,
        today(tb),
        description=f"Reversal of {original.id}",
        reverses=original.id,
        reason=reason,
        enforce_limits=False,
    )
    result = await post(session, principal, tb, reversal)
    # the original now shows its reversal (``reversed_by``): a change to it
    await session.execute(
        update(Exchange)
        .where(Exchange.id == original.id)
        .values(updated_at=result.exchange.recorded_at)
        .execution_options(synchronize_session=False)
    )
    await audit.record(
        session,
        audit.event(
            principal,
            "exchange.reverse",
            timebank_id=tb.id,
            target_type="exchange",
            target_id=original.id,
            reason=reason,
            details={"reversal_id": str(result.exchange.id)},
        ),
    )
    out = view(result)
    if claim is not None:
        await claim.settle(session, out)
    members = (await account_members(session, (leg.account_id for leg in legs))).values()
    change = exchange_change(
        EventType.exchange_reversed,
        original.id,
        "recorded",
        members,
        reversal_id=result.exchange.id,
    )
    await emit(session, tb.id, [change])
    await session.commit()
    return out
