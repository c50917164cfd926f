"""``GET /v1/me``: who the caller is, so a partner app holding only its key learns its
member, account and time bank without guessing ids."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.access import Principal, Role
from timebank.auth.schemas import MeOut
from timebank.auth.users import SignedIn
from timebank.members.models import Member
from timebank.timebanks.models import TimeBank


async def _slugs(session: AsyncSession, ids: Iterable[uuid.UUID]) -> list[str]:
    wanted = set(ids)
    if not wanted:
        return []
    rows = await session.execute(
        select(TimeBank.slug).where(TimeBank.id.in_(wanted)).order_by(TimeBank.slug)
    )
    return list(rows.scalars())


async def key_me(session: AsyncSession, principal: Principal) -> MeOut:
    """An API key as it sees itself."""
    assert principal.key_id is not None
    banks = set(principal.report_timebanks)
    if principal.timebank_id is not None:
        banks.add(principal.timebank_id)
    me = MeOut(
        type="key",
        id=principal.key_id,
        role=principal.role,
        global_admin=principal.is_global_admin,
        timebanks=await _slugs(session, banks),
    )
    if principal.role is Role.member and principal.member_id is not None:
        me.member_id = principal.member_id
        me.account_id = (
            await session.execute(select(Member.account_id).where(Member.id == principal.member_id))
        ).scalar_one()
    return me


async def user_me(session: AsyncSession, who: SignedIn) -> MeOut:
    """A console user's session as it sees itself."""
    return MeOut(
        type="user",
        id=who.user.id,
        role=who.user.role,
        global_admin=who.is_global_admin,
        timebanks=await _slugs(session, who.timebank_ids),
    )
