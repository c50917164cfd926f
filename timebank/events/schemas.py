from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class EventOut(BaseModel):
    """One change: what happened (``type``), when, and ``data`` — ids and what changed."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID = Field(description="The event's id; also the webhook-id of its deliveries")
    type: str = Field(examples=["exchange.confirmed"])
    created_at: datetime
    data: dict[str, Any] = Field(
        examples=[{"exchange_id": "01937a4e-6d10-7b9a-8e2f-5a7c1d3e9b40", "status": "recorded"}]
    )


class EventPage(BaseModel):
    items: list[EventOut]
    cursor: str = Field(
        description="The position after the last item (or where the feed stands, when there "
        "are none): send it as `after` to read on from here. Always present."
    )


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000, examples=["https://app.example.org/timebank-hooks"])
    events: list[str] | None = Field(
        default=None,
        max_length=20,
        description="Event types to send (default: every type)",
        examples=[["exchange.confirmed", "exchange.rejected"]],
    )


class WebhookOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    url: str
    events: list[str] | None = Field(description="The types sent; null: every type")
    created_at: datetime
    failing_since: datetime | None = Field(
        description="Since when no delivery has had a 2xx (null: the last one did)"
    )
    disabled_at: datetime | None = Field(
        description="Disabled after days of failure; a redelivery turns it back on"
    )


class WebhookCreated(WebhookOut):
    secret: str = Field(
        description="Signs every delivery (Standard Webhooks). Shown once, never again.",
        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    )


class DeliveryOut(BaseModel):
    id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    status: str = Field(description="pending, succeeded or failed (no tries left)")
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None
