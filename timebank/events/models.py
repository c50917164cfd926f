"""The events of each time bank, in one order per bank, and the webhook endpoints and
deliveries that carry them out.

Order: each write takes the next numbers from its bank's row of ``event_counters`` in its
own transaction and holds that row until it commits, so numbers are handed out in commit
order — a reader that has seen number *n* never later finds a smaller one appear. The
counter's committed value is therefore a horizon: every event at or below it is visible.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from timebank.db import Base, BigInt, utcnow, uuid7
from timebank.types import DateTimeUTC, str_enum


class EventType(enum.StrEnum):
    exchange_proposed = "exchange.proposed"
    exchange_recorded = "exchange.recorded"
    exchange_confirmed = "exchange.confirmed"
    exchange_rejected = "exchange.rejected"
    exchange_cancelled = "exchange.cancelled"
    exchange_expired = "exchange.expired"
    exchange_reversed = "exchange.reversed"
    member_created = "member.created"
    member_updated = "member.updated"
    member_suspended = "member.suspended"
    member_erased = "member.erased"
    webhook_disabled = "webhook.disabled"


class EventCounter(Base):
    """A bank's last event number, and the number up to which events were pruned."""

    __tablename__ = "event_counters"

    timebank_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("timebanks.id"), primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInt, default=0)
    pruned_through: Mapped[int] = mapped_column(BigInt, default=0)


class Event(Base):
    """One change. ``data`` holds ids and what changed (field names, a new status), never a
    name, a balance or any other personal value."""

    __tablename__ = "events"
    __table_args__ = (UniqueConstraint("timebank_id", "seq"), Index(None, "created_at"))

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid7)
    timebank_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("timebanks.id"))
    seq: Mapped[int] = mapped_column(BigInt)
    type: Mapped[str] = mapped_column(String(48))
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC, default=utcnow)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class EventMember(Base):
    """Which members an event is about: what a member key's feed may show."""

    __tablename__ = "event_members"

    member_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(BigInt, primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id"), index=True)


class DeliveryStatus(enum.StrEnum):
    pending = "pending"
    succeeded = "succeeded"
    failed = "failed"


class WebhookEndpoint(Base):
    """Where a bank's events are sent. ``last_seq``: the event number up to which deliveries
    were queued (new endpoints start at the bank's current number). ``secret`` signs; it
    is needed in clear to sign, so it is stored as given and shown once."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid7)
    timebank_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("timebanks.id"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[str] | None] = mapped_column(JSON)  # None: every type
    secret: Mapped[str] = mapped_column(String(100))
    last_seq: Mapped[int] = mapped_column(BigInt, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC, default=utcnow)
    created_by_key_id: Mapped[uuid.UUID | None]
    created_by_user_id: Mapped[uuid.UUID | None]
    failing_since: Mapped[datetime | None] = mapped_column(DateTimeUTC)
    disabled_at: Mapped[datetime | None] = mapped_column(DateTimeUTC)


class WebhookDelivery(Base):
    """One event to one endpoint: retried on its schedule until a 2xx or the last try."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id"),
        Index(None, "status", "next_attempt_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid7)
    endpoint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_endpoints.id"))
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id"), index=True)
    status: Mapped[DeliveryStatus] = mapped_column(str_enum(DeliveryStatus, "delivery_status"))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTimeUTC)
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTimeUTC)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC, default=utcnow)
