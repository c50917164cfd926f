"""The events of the ledger's use cases (``timebank.events``): which members an exchange is
about, from the parties a request named or from its accounts."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.ledger.models import Account, OwnerType
from timebank.ledger.validate import Prepared


def prepared_members(prepared: Prepared) -> list[uuid.UUID]:
    """The members among a validated request's parties."""
    return [p.owner_id for p in prepared.parties if p.owner_type is OwnerType.member]


async def account_members(
    session: AsyncSession, account_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, uuid.UUID]:
    """Account id → member id, for the members' accounts among ``account_ids`` (one query)."""
    ids = sorted(set(account_ids))
    if not ids:
        return {}
    rows = await session.execute(
        select(Account.id, Account.owner_id).where(
            Account.id.in_(ids), Account.owner_type == OwnerType.member
        )
    )
    return dict(rows.tuples().all())
