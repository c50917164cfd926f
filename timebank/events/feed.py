"""Reading a bank's events in order: the feed a partner app follows (``after=`` a cursor),
optionally waiting a while for the next one (long poll).

Every read first takes the bank's *horizon* — the committed value of its event counter —
and then the events up to it. Numbers are handed out in commit order
(:mod:`timebank.events.models`), so every event at or below the horizon is already visible:
a page never misses one that commits later with a smaller number, and the cursor it gives
(the last item's number, or the horizon when the page is not full) is safe to resume from.
A member key reads only the events about its own member; the others' numbers are passed
over, so its cursor moves on too.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.access import Principal, Role
from timebank.clock import Clock
from timebank.errors import CursorExpired, InvalidInput
from timebank.events.models import Event, EventCounter, EventMember, WebhookDelivery

RETENTION = timedelta(days=90)
MAX_WAIT_SECONDS = 30


@dataclass
class FeedPage:
    items: list[Event]
    cursor: int


async def _position(session: AsyncSession, timebank_id: uuid.UUID) -> tuple[int, int]:
    row = (
        await session.execute(
            select(EventCounter.last_seq, EventCounter.pruned_through).where(
                EventCounter.timebank_id == timebank_id
            )
        )
    ).first()
    return (int(row[0]), int(row[1])) if row else (0, 0)


async def read(
    session: AsyncSession,
    principal: Principal,
    timebank_id: uuid.UUID,
    after: int | None,
    limit: int,
) -> FeedPage:
    """Up to ``limit`` events after ``after`` (from the oldest kept, if ``None``) that the
    key may read. 410 ``cursor_expired`` when events after the cursor were pruned."""
    principal.require(timebank_id, Role.admin, Role.broker, Role.member)
    horizon, pruned = await _position(session, timebank_id)
    if after is not None and after < pruned:
        raise CursorExpired(
            f"Events after this cursor were deleted (they are kept {RETENTION.days} days): "
            "read the current state again, then follow the feed from the cursor it gives now"
        )
    if after is not None and after > horizon:
        raise InvalidInput("after", "is not a position this feed has reached")
    start = pruned if after is None else after
    stmt = select(Event).where(
        Event.timebank_id == timebank_id, Event.seq > start, Event.seq <= horizon
    )
    if principal.role is Role.member:
        stmt = stmt.join(EventMember, EventMember.event_id == Event.id).where(
            EventMember.member_id == principal.member_id,
            EventMember.seq > start,
            EventMember.seq <= horizon,
        )
    rows = list((await session.execute(stmt.order_by(Event.seq).limit(limit + 1))).scalars())
    if len(rows) > limit:
        rows = rows[:limit]
        return FeedPage(rows, rows[-1].seq)
    return FeedPage(rows, horizon)


async def wait_for(
    session: AsyncSession,
    principal: Principal,
    timebank_id: uuid.UUID,
    after: int | None,
    limit: int,
    *,
    wait: float,
    clock: Clock,
    interval: float,
) -> FeedPage:
    """:func:`read`, and if nothing is there yet, look again every ``interval`` seconds for
    up to ``wait`` seconds (the session's transaction ended in between, so a waiting
    reader holds no connection and no snapshot)."""
    deadline = clock.monotonic() + min(wait, MAX_WAIT_SECONDS)
    while True:
        found = await read(session, principal, timebank_id, after, limit)
        remaining = deadline - clock.monotonic()
        if found.items or remaining <= 0:
            return found
        after = found.cursor
        await session.rollback()
        await clock.sleep(min(interval, remaining))


async def prune(session: AsyncSession, now: datetime, retention: timedelta = RETENTION) -> int:
    """Delete every bank's events older than ``retention`` (and their deliveries), and
    remember how far each bank's were deleted, so an older cursor is told so (410).
    Caller commits. Returns how many events went."""
    cutoff = now - retention
    ends = (
        await session.execute(
            select(Event.timebank_id, func.max(Event.seq))
            .where(Event.created_at < cutoff)
            .group_by(Event.timebank_id)
        )
    ).all()
    total = 0
    for timebank_id, last in ends:
        old = select(Event.id).where(Event.timebank_id == timebank_id, Event.seq <= last)
        await session.execute(delete(WebhookDelivery).where(WebhookDelivery.event_id.in_(old)))
        await session.execute(delete(EventMember).where(EventMember.event_id.in_(old)))
        gone = await session.execute(
            delete(Event).where(Event.timebank_id == timebank_id, Event.seq <= last)
        )
        total += int(getattr(gone, "rowcount", 0) or 0)
        await session.execute(
            update(EventCounter)
            .where(EventCounter.timebank_id == timebank_id, EventCounter.pruned_through < last)
            .values(pruned_through=last)
        )
    return total
