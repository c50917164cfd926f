"""Accounts: opened with their owner (member, organisation, the bank's pool), read, and
given limits of their own by a broker."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.access import STAFF, Principal
from timebank.audit import service as audit
from timebank.db import utcnow, uuid7
from timebank.errors import InvalidInput, NotFound
from timebank.ledger.models import Account, OwnerType
from timebank.ledger.rules import effective_limits
from timebank.ledger.schemas import AccountOut, AccountPatch
from timebank.timebanks.models import TimeBank


async def open_account(
    session: AsyncSession, timebank_id: uuid.UUID, owner_type: OwnerType, owner_id: uuid.UUID
) -> Account:
    """A new account at balance zero, in the caller's transaction."""
    account = Account(
        id=uuid7(),
        timebank_id=timebank_id,
        owner_type=owner_type,
        owner_id=owner_id,
        created_at=utcnow(),
    )
    session.add(account)
    await session.flush()
    return account


async def get_account(session: AsyncSession, tb: TimeBank, account_id: uuid.UUID) -> Account:
    acc = await session.get(Account, account_id)
    if acc is None or acc.timebank_id != tb.id:
        raise NotFound("No such account in this time bank")
    return acc


def account_view(acc: Account, tb: TimeBank) -> AccountOut:
    lo, hi = effective_limits(acc, tb)
    return AccountOut(
        id=acc.id,
        owner={"type": acc.owner_type.value, "id": str(acc.owner_id)},
        balance_minutes=acc.balance_minutes,
        min_balance_minutes=lo,
        max_balance_minutes=hi,
        custom_limits=acc.custom_limits,
    )


async def patch_account(
    session: AsyncSession,
    principal: Principal,
    tb: TimeBank,
    account_id: uuid.UUID,
    patch: AccountPatch,
    fields: set[str],
) -> Account:
    """Set an account's own limits (broker, audited). A limit that the balance is already
    outside of is allowed: the account can then only move back towards its range."""
    principal.require(tb.id, *STAFF)
    acc = (
        await session.execute(select(Account).where(Account.id == account_id).with_for_update())
    ).scalar_one_or_none()
    if acc is None or acc.timebank_id != tb.id:
        raise NotFound("No such account in this time bank")
    if patch.use_defaults:
        acc.custom_limits = False
        acc.min_balance_minutes = acc.max_balance_minutes = None
    else:
        lo, hi = effective_limits(acc, tb)
        if "min_balance_minutes" in fields:
            lo = patch.min_balance_minutes
        if "max_balance_minutes" in fields:
            hi = patch.max_balance_minutes
        if lo is not None and hi is not None and lo > hi:
            raise InvalidInput("min_balance_minutes", "greater than max_balance_minutes")
        acc.custom_limits = True
        acc.min_balance_minutes, acc.max_balance_minutes = lo, hi
    await session.flush()
    await audit.record(
        session,
        audit.event(
            principal,
            "account.limits",
            timebank_id=tb.id,
            target_type="account",
            target_id=acc.id,
            details={"fields": sorted(fields)},
        ),
    )
    await session.commit()
    return acc
