from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from timebank.access import Role
from timebank.db import Base, utcnow, uuid7
from timebank.types import DateTimeUTC, str_enum


class ApiKey(Base):
    """An API key. Only the SHA-256 of the secret is stored; ``prefix`` lets people tell
    keys apart in lists without revealing them."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid7)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    role: Mapped[Role] = mapped_column(str_enum(Role, "role"))
    timebank_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("timebanks.id"), default=None, index=True
    )
    member_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("members.id"), default=None)
    label: Mapped[str | None] = mapped_column(String(200), default=None)
    created_by_key_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTimeUTC, default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTimeUTC, default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTimeUTC, default=None)


class ApiKeyTimeBank(Base):
    """The time banks a funder key may report on (a funder key may span several)."""

    __tablename__ = "api_key_timebanks"

    api_key_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("api_keys.id"), primary_key=True)
    timebank_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("timebanks.id"), primary_key=True)
