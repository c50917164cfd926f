"""Accounts, exchanges (journal entries) and postings (ledger lines).

Money-flow rules: every amount is integer minutes; the providers of an exchange are credited
(+), its recipients debited (−); an exchange's postings sum to zero and none is zero;
postings are append-only. The database enforces these (see the initial migration).
"""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from timebank.db import Base, BigInt, record_key, utcnow, uuid7
from timebank.types import DateTimeUTC, str_enum


class OwnerType(enum.StrEnum):
    member = "member"
    organisation = "organisation"
    pool = "pool"


class ExchangeStatus(enum.StrEnum):
    pending = "pending"
    recorded = "recorded"
    rejected = "rejected"
    expired = "expired"
    cancelled = "cancelled"


class ExchangeKind(enum.StrEnum):
    p2p = "p2p"
    p2o = "p2o"
    o2p = "o2p"
    o2o = "o2o"
    pool_grant = "pool_grant"
    pool_donation = "pool_donation"
    reversal = "reversal"


class Account(Base):
    """One per member, organisation and time-bank pool; holds the maintained balance.

    ``min/max_balance_minutes`` are used when ``custom_limits`` is set; otherwise the time
    bank's defaults for the owner type apply.
    """

    __tablename__ = "accounts"
    __table_args__ = (
        UniqueConstraint("owner_type", "owner_id"),
        CheckConstraint("balance_minutes = earned_minutes - spent_minutes", name="balance_sum"),
        CheckConstraint("earned_minutes >= 0 AND spent_minutes >= 0", name="flows_nonneg"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid7)
    timebank_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("timebanks.id"), index=True)
    owner_type: Mapped[OwnerType] = mapped_column(str_enum(OwnerType, "owner_type"))
    owner_id: Mapped[uuid.UUID]
    balance_minutes: Mapped[int] = mapped_column(BigInteger, default=0)
    earned_minutes: Mapped[int] = mapped_column(BigInteger, default=0)
    spent_minutes: Mapped[int] = mapped_column(BigInteger, default=0)
    custom_limits: Mapped[bool] = mapped_column(Boolean, default=False)
    min_balance_minutes: Mapped[int | None] = mapped_column(Integer, default=None)
    max_balance_minutes: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC, default=utcnow)


_PENDING: dict[str, Any] = {
    "postgresql_where": text("status = 'pending'"),
    "sqlite_where": text("status = 'pending'"),
}


class Exchange(Base):
    """One business event. Amounts and parties never change once recorded; only a pending
    exchange changes status (once), and free text may be redacted on erasure."""

    __tablename__ = "exchanges"
    __table_args__ = (
        UniqueConstraint("timebank_id", "external_ref"),
        CheckConstraint("minutes > 0", name="minutes_positive"),
        Index(None, "timebank_id", "occurred_on"),
        Index(None, "timebank_id", "status", "recorded_at"),
        Index(None, "timebank_id", "kind", "occurred_on"),  # pool figures in reports
        Index(None, "timebank_id", "updated_at"),  # lists' updated_since
        # a balance's pending flows: only the few pending proposals of the account
        Index(None, "provider_account_id", "recorded_at", **_PENDING),
        Index(None, "recipient_account_id", "recorded_at", **_PENDING),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid7)
    timebank_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("timebanks.id"))
    status: Mapped[ExchangeStatus] = mapped_column(str_enum(ExchangeStatus, "exchange_status"))
    kind: Mapped[ExchangeKind] = mapped_column(str_enum(ExchangeKind, "exchange_kind"))
    minutes: Mapped[int] = mapped_column(Integer)
    category_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("categories.id"), default=None)
    occurred_on: Mapped[date] = mapped_column(Date)
    recorded_at: Mapped[datetime] = mapped_column(DateTimeUTC, default=utcnow)
    description: Mapped[str | None] = mapped_column(Text, default=None)
    external_ref: Mapped[str | None] = mapped_column(String(200), default=None)
    reverses: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("exchanges.id"), unique=True, default=None
    )
    provider_account_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("accounts.id"), default=None, index=True
    )
    recipient_account_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("accounts.id"), default=None, index=True
    )
    logged_by_key_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    logged_by_user_id: Mapped[uuid.UUID | None] = mapped_column(default=None)  # console user
    logged_by_role: Mapped[str] = mapped_column(String(16))
    proposed_by: Mapped[uuid.UUID | None] = mapped_column(default=None)
    decided_by: Mapped[uuid.UUID | None] = mapped_column(default=None)
    decided_at: Mapped[datetime | None] = mapped_column(DateTimeUTC, default=None)
    override_reason: Mapped[str | None] = mapped_column(Text, default=None)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    record_key: Mapped[int] = mapped_column(BigInt, default=record_key)  # never shown
    # when it was created (proposed, or recorded at once) and last changed (decided,
    # expired, reversed, redacted); ``recorded_at`` is when it was recorded. Always set.
    created_at: Mapped[datetime | None] = mapped_column(DateTimeUTC, default=utcnow)
    updated_at: Mapped[datetime | None] = mapped_column(DateTimeUTC, default=utcnow)


class Posting(Base):
    """A ledger line. ``id`` is the ledger order; ``balance_after_minutes`` is fixed when
    posted. Append-only: the database refuses UPDATE and DELETE."""

    __tablename__ = "postings"
    __table_args__ = (
        CheckConstraint("minutes <> 0", name="minutes_nonzero"),
        Index(None, "account_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    exchange_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("exchanges.id", deferrable=True, initially="DEFERRED"), index=True
    )
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    minutes: Mapped[int] = mapped_column(Integer)
    balance_after_minutes: Mapped[int] = mapped_column(BigInteger)
    # set by the database (PostgreSQL's postings_sealed): the posting was added to an
    # existing proposal, so its exchange's balance is checked again at commit (0011)
    onto_pending: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
