from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from timebank.db import Base, BigInt, utcnow
from timebank.types import DateTimeUTC


class AuditEvent(Base):
    """Who did what to which target, written in the same transaction as the write.
    Holds ids and field names, never personal values."""

    __tablename__ = "audit_events"
    __table_args__ = (Index(None, "timebank_id", "id"),)

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    timebank_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("timebanks.id"))
    key_id: Mapped[uuid.UUID | None]
    user_id: Mapped[uuid.UUID | None]  # a console user (SPEC §7.2)
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC, default=utcnow)
