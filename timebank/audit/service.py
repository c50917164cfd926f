from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.access import Principal, Role
from timebank.audit.models import AuditEvent
from timebank.db import table_of, utcnow
from timebank.logs import request_id_var


def event(
    principal: Principal,
    action: str,
    *,
    timebank_id: uuid.UUID | None,
    target_type: str,
    target_id: Any,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An audit event's row. ``details`` holds ids and field names only, never personal
    values."""
    return {
        "timebank_id": timebank_id,
        "key_id": principal.key_id,
        "user_id": principal.user_id,
        "role": principal.role.value,
        "action": action,
        "target_type": target_type,
        "target_id": str(target_id),
        "request_id": request_id_var.get(),
        "reason": reason,
        "details": details,
        "created_at": utcnow(),
    }


async def record(session: AsyncSession, row: dict[str, Any]) -> None:
    """Append an audit event (a row from :func:`event`) in the caller's transaction."""
    await record_many(session, [row])


async def record_many(session: AsyncSession, events: list[dict[str, Any]]) -> None:
    """Append audit events (rows from :func:`event`) with one statement."""
    if events:
        await session.execute(insert(table_of(AuditEvent)), events)


async def list_events(
    session: AsyncSession,
    principal: Principal,
    timebank_id: uuid.UUID,
    *,
    action: str | None,
    target: str | None,
    date_from: date | None,
    date_to: date | None,
    after: int | None,
    limit: int,
) -> list[AuditEvent]:
    """A time bank's audit trail in the order written (admin only). ``to`` is inclusive."""
    principal.require(timebank_id, Role.admin)
    stmt = select(AuditEvent).where(AuditEvent.timebank_id == timebank_id)
    if action:
        stmt = stmt.where(AuditEvent.action == action)
    if target:
        stmt = stmt.where(AuditEvent.target_id == target)
    if date_from:
        stmt = stmt.where(AuditEvent.created_at >= datetime.combine(date_from, time(), UTC))
    if date_to:
        end = datetime.combine(date_to + timedelta(days=1), time(), UTC)
        stmt = stmt.where(AuditEvent.created_at < end)
    if after is not None:
        stmt = stmt.where(AuditEvent.id > after)
    return list((await session.execute(stmt.order_by(AuditEvent.id).limit(limit + 1))).scalars())
