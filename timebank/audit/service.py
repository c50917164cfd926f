from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.audit.models import AuditEvent
from timebank.auth.principal import Principal
from timebank.db import utcnow
from timebank.logs import request_id_var


async def record(
    session: AsyncSession,
    principal: Principal,
    action: str,
    *,
    timebank_id: uuid.UUID | None,
    target_type: str,
    target_id: Any,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Append an audit event in the caller's transaction. ``details`` holds ids and field
    names only, never personal values."""
    await session.execute(
        insert(AuditEvent).values(
            timebank_id=timebank_id,
            key_id=principal.key_id,
            role=principal.role.value,
            action=action,
            target_type=target_type,
            target_id=str(target_id),
            request_id=request_id_var.get(),
            reason=reason,
            details=details,
            created_at=utcnow(),
        )
    )
