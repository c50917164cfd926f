from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from timebank.db import Base, utcnow, uuid7
from timebank.types import DateTimeUTC, str_enum


class ImportStatus(enum.StrEnum):
    preview = "preview"
    committed = "committed"
    discarded = "discarded"


class SheetImport(Base):
    """An uploaded time sheet: its lines as resolved at upload (the preview), then as
    recorded at commit. Lives in the database, so any worker can show or commit it."""

    __tablename__ = "sheet_imports"
    __table_args__ = (Index(None, "timebank_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid7)
    timebank_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("timebanks.id"))
    sheet: Mapped[str] = mapped_column(String(100))
    filename: Mapped[str | None] = mapped_column(String(255), default=None)
    status: Mapped[ImportStatus] = mapped_column(
        str_enum(ImportStatus, "import_status"), default=ImportStatus.preview
    )
    created_by_key_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    created_by_role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC, default=utcnow)
    committed_at: Mapped[datetime | None] = mapped_column(DateTimeUTC, default=None)
    atomic: Mapped[bool | None] = mapped_column(Boolean, default=None)
    columns: Mapped[dict[str, str]] = mapped_column(JSON)
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
