"""Proposals from members (partner apps) and their decisions.

A pending exchange moves no balance. The counterparty member confirms or rejects it; a
broker decides when the counterparty is an organisation or the pool, and may decide any;
the proposer may cancel. Each decision is one conditional update (``WHERE status =
'pending'``), so it happens once. Confirming re-checks party status, limits and category in
the posting transaction; a refused confirmation leaves the exchange pending. Proposals older
than the time bank's ``pending_expiry_days`` become ``expired``.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from enum import StrEnum

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.audit import service as audit
from timebank.auth.models import Role
from timebank.auth.principal import STAFF, Principal
from timebank.db import run_write, table_of, utcnow
from timebank.errors import Forbidden, InvalidInput, NotPending, PartyInactive
from timebank.ledger.models import Account, Exchange, ExchangeStatus, OwnerType, Posting
from timebank.ledger.schemas import ExchangeOut
from timebank.ledger.service import (
    POOL_KINDS,
    Book,
    Leg,
    _get_exchange,
    load_views,
    lock_accounts,
    party_members,
)
from timebank.members.models import Member, MemberStatus
from timebank.organisations.models import Organisation, OrganisationStatus
from timebank.timebanks.models import Category, TimeBank
from timebank.timebanks.service import get_by_slug


class Decision(StrEnum):
    confirm = "confirm"
    reject = "reject"
    cancel = "cancel"


async def expire_stale(session: AsyncSession, timebank_id: uuid.UUID, expiry_days: int) -> int:
    """Mark this time bank's proposals older than ``expiry_days`` as expired (caller
    commits). Idempotent; returns how many changed."""
    cutoff = utcnow() - timedelta(days=expiry_days)
    result = await session.execute(
        update(Exchange)
        .where(
            Exchange.timebank_id == timebank_id,
            Exchange.status == ExchangeStatus.pending,
            Exchange.recorded_at < cutoff,
        )
        .values(status=ExchangeStatus.expired, decided_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def has_stale(session: AsyncSession, tb: TimeBank) -> bool:
    cutoff = utcnow() - timedelta(days=tb.pending_expiry_days)
    row = await session.execute(
        select(Exchange.id)
        .where(
            Exchange.timebank_id == tb.id,
            Exchange.status == ExchangeStatus.pending,
            Exchange.recorded_at < cutoff,
        )
        .limit(1)
    )
    return row.first() is not None


async def _owner(session: AsyncSession, account_id: uuid.UUID) -> Account:
    acc = await session.get(Account, account_id)
    assert acc is not None
    return acc


async def _counterparty(session: AsyncSession, ex: Exchange) -> Account:
    """The party that did not propose the exchange."""
    assert ex.provider_account_id is not None
    assert ex.recipient_account_id is not None
    provider = await _owner(session, ex.provider_account_id)
    if provider.owner_type is OwnerType.member and provider.owner_id == ex.proposed_by:
        return await _owner(session, ex.recipient_account_id)
    return provider


async def _authorize(
    session: AsyncSession, principal: Principal, ex: Exchange, decision: Decision
) -> None:
    if principal.role in STAFF:
        return
    if principal.role is not Role.member:
        raise Forbidden(f"A {principal.role.value} key cannot decide exchanges")
    if ex.proposed_by is None or ex.provider_account_id is None:
        # Only a proposal has a proposer and a counterparty (a group exchange has neither).
        raise NotPending(f"This exchange is {ex.status.value}, not pending")
    # Who may decide is checked before the state, so the answer to a member does not
    # depend on whether someone else decided first (a stranger is refused either way).
    if decision is Decision.cancel:
        if ex.proposed_by != principal.member_id:
            raise Forbidden("Only the proposer (or a broker) may cancel a proposal")
        return
    if ex.proposed_by == principal.member_id:
        raise Forbidden("The proposer cannot confirm or reject their own proposal; cancel it")
    other = await _counterparty(session, ex)
    if other.owner_type is not OwnerType.member or other.owner_id != principal.member_id:
        raise Forbidden("Only the counterparty member (or a broker) may decide this exchange")


async def _recheck_parties(session: AsyncSession, ex: Exchange) -> None:
    if ex.kind in POOL_KINDS:
        return
    for account_id in (ex.provider_account_id, ex.recipient_account_id):
        assert account_id is not None
        acc = await _owner(session, account_id)
        if acc.owner_type is OwnerType.member:
            m = await session.get(Member, acc.owner_id)
            if m is None or m.status is not MemberStatus.active:
                raise PartyInactive("A party is no longer active (suspended, left or erased)")
        elif acc.owner_type is OwnerType.organisation:
            o = await session.get(Organisation, acc.owner_id)
            if o is None or o.status is not OrganisationStatus.active:
                raise PartyInactive("An organisation party is no longer active")
    if ex.category_id is not None and await session.get(Category, ex.category_id) is None:
        raise InvalidInput("category", "the category no longer exists")


async def decide(
    session: AsyncSession,
    principal: Principal,
    tb: TimeBank,
    exchange_id: uuid.UUID,
    decision: Decision,
    reason: str | None = None,
) -> ExchangeOut:
    """Confirm, reject or cancel a pending exchange (caller commits)."""
    principal.require(tb.id, Role.admin, Role.broker, Role.member)
    ex = await _get_exchange(session, tb, exchange_id)
    if principal.role is Role.member and principal.member_id not in await party_members(
        session, ex
    ):
        raise Forbidden("This exchange does not involve the key's member")
    await _authorize(session, principal, ex, decision)
    locked = (
        await session.execute(
            select(Exchange)
            .where(Exchange.id == exchange_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    if locked.status is not ExchangeStatus.pending:
        raise NotPending(f"This exchange is {locked.status.value}, not pending")
    now = utcnow()
    values: dict[str, object] = {"decided_by": principal.key_id, "decided_at": now}
    if decision is Decision.confirm:
        await _recheck_parties(session, locked)
        assert locked.provider_account_id is not None
        assert locked.recipient_account_id is not None
        legs = [
            Leg(locked.provider_account_id, locked.minutes),
            Leg(locked.recipient_account_id, -locked.minutes),
        ]
        book = Book(tb, await lock_accounts(session, (leg.account_id for leg in legs)))
        after = book.apply(legs, enforce_limits=True)
        await book.save(session)
        await session.execute(
            insert(table_of(Posting)),
            [
                {
                    "exchange_id": locked.id,
                    "account_id": leg.account_id,
                    "minutes": leg.minutes,
                    "balance_after_minutes": after[leg.account_id],
                }
                for leg in legs
            ],
        )
        values.update(status=ExchangeStatus.recorded, recorded_at=now)
    elif decision is Decision.reject:
        values.update(status=ExchangeStatus.rejected, reason=reason)
    else:
        values.update(status=ExchangeStatus.cancelled, reason=reason)
    result = await session.execute(
        update(Exchange)
        .where(Exchange.id == exchange_id, Exchange.status == ExchangeStatus.pending)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 1) != 1:
        raise NotPending("This exchange was decided by someone else just now")
    await audit.record(
        session,
        audit.event(
            principal,
            f"exchange.{decision.value}",
            timebank_id=tb.id,
            target_type="exchange",
            target_id=exchange_id,
            reason=reason,
        ),
    )
    fresh = (
        await session.execute(
            select(Exchange)
            .where(Exchange.id == exchange_id)
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    return (await load_views(session, [fresh]))[0]


async def fresh_timebank(session: AsyncSession, principal: Principal, slug: str) -> TimeBank:
    """The time bank in the path, after lazily expiring its stale proposals (a small write,
    made only when there is something to expire)."""
    tb = await get_by_slug(session, principal, slug)
    if await has_stale(session, tb):
        tb_id, days = tb.id, tb.pending_expiry_days

        async def work(s: AsyncSession) -> int:
            return await expire_stale(s, tb_id, days)

        await run_write(session, work)
    return tb
