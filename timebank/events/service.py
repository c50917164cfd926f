"""Writing events: :func:`emit` appends a bank's events in the caller's transaction, with
the next numbers of its counter. Call it last before the commit: the counter's row stays
locked from here to the commit (that is what keeps the numbers in commit order), so the
shorter that stretch, the less concurrent writers of the bank wait."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.db import table_of, utcnow, uuid7
from timebank.events.models import Event, EventCounter, EventMember, EventType


@dataclass(frozen=True)
class Change:
    """An event to write: its type, its data (ids and what changed) and the members it is
    about (whose member keys may read it)."""

    type: EventType
    data: dict[str, Any]
    members: tuple[uuid.UUID, ...] = field(default=())


def exchange_change(
    type: EventType,
    exchange_id: uuid.UUID,
    status: str,
    members: Iterable[uuid.UUID],
    **more: Any,
) -> Change:
    """An exchange's event: its id and new status (and e.g. ``reversal_id``); the app reads
    the exchange itself for the rest, with what its key may see."""
    data = {"exchange_id": str(exchange_id), "status": status}
    data.update({k: str(v) if isinstance(v, uuid.UUID) else v for k, v in more.items()})
    return Change(type, data, tuple(sorted(set(members))))


def member_change(type: EventType, member_id: uuid.UUID, **more: Any) -> Change:
    return Change(type, {"member_id": str(member_id), **more}, (member_id,))


async def take_numbers(session: AsyncSession, timebank_id: uuid.UUID, n: int) -> int:
    """Advance the bank's counter by ``n`` (making its row on first use) and return the new
    last number; the row is locked until the transaction ends."""
    table = table_of(EventCounter)
    dialect = session.get_bind().dialect.name
    make = pg_insert if dialect == "postgresql" else sqlite_insert
    upsert = (
        make(table)
        .values(timebank_id=timebank_id, last_seq=n, pruned_through=0)
        .on_conflict_do_update(
            index_elements=[table.c.timebank_id], set_={"last_seq": table.c.last_seq + n}
        )
        .returning(table.c.last_seq)
    )
    return int((await session.execute(upsert)).scalar_one())


async def emit(
    session: AsyncSession,
    timebank_id: uuid.UUID,
    changes: Sequence[Change],
    *,
    now: datetime | None = None,
) -> None:
    """Append ``changes`` as the bank's next events, in the caller's transaction."""
    if not changes:
        return
    last = await take_numbers(session, timebank_id, len(changes))
    at = now or utcnow()
    rows: list[dict[str, Any]] = []
    subjects: list[dict[str, Any]] = []
    for seq, change in enumerate(changes, start=last - len(changes) + 1):
        event_id = uuid7()
        rows.append(
            {
                "id": event_id,
                "timebank_id": timebank_id,
                "seq": seq,
                "type": change.type.value,
                "created_at": at,
                "data": change.data,
            }
        )
        subjects += [{"member_id": m, "seq": seq, "event_id": event_id} for m in change.members]
    await session.execute(insert(table_of(Event)), rows)
    if subjects:
        await session.execute(insert(table_of(EventMember)), subjects)
