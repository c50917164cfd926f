from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from timebank.db import Base, utcnow, uuid7
from timebank.types import DateTimeUTC


class TimeBank(Base):
    """A time bank: its settings, and (by id) its community pool account."""

    __tablename__ = "timebanks"
    __table_args__ = (
        CheckConstraint("suppression_threshold >= 5", name="suppression_min"),
        CheckConstraint("max_exchange_minutes > 0", name="max_exchange_positive"),
        CheckConstraint("starting_grant_minutes >= 0", name="starting_grant_nonneg"),
        CheckConstraint("pending_expiry_days > 0", name="pending_expiry_positive"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid7)
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    pool_account_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    member_min_balance_minutes: Mapped[int | None] = mapped_column(Integer, default=None)
    member_max_balance_minutes: Mapped[int | None] = mapped_column(Integer, default=None)
    organisation_min_balance_minutes: Mapped[int | None] = mapped_column(Integer, default=None)
    organisation_max_balance_minutes: Mapped[int | None] = mapped_column(Integer, default=None)
    max_exchange_minutes: Mapped[int] = mapped_column(Integer, default=1440)
    starting_grant_minutes: Mapped[int] = mapped_column(Integer, default=0)
    time_zone: Mapped[str] = mapped_column(String(64), default="Europe/London")
    suppression_threshold: Mapped[int] = mapped_column(Integer, default=10)
    pending_expiry_days: Mapped[int] = mapped_column(Integer, default=30)
    # the console's language for its users who have not chosen one (None: the browser's)
    default_language: Mapped[str | None] = mapped_column(String(16), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTimeUTC, default=utcnow, onupdate=utcnow)


class Category(Base):
    __tablename__ = "categories"
    __table_args__ = (UniqueConstraint("timebank_id", "slug"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid7)
    timebank_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("timebanks.id"))
    slug: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(100))
    name_cy: Mapped[str | None] = mapped_column(String(100), default=None)  # shown on Welsh pages
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC, default=utcnow)
    # retired: kept on the exchanges that used it, never offered or accepted for new ones
    retired_at: Mapped[datetime | None] = mapped_column(DateTimeUTC, default=None)

    def label(self, lang: str) -> str:
        """The name in ``lang`` where one is given, else the English one."""
        return (self.name_cy if lang == "cy" else None) or self.name
