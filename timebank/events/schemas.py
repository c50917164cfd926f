from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_EVENT: dict[str, Any] = {
    "id": "01937a4f-1c2d-7e3f-8a4b-5c6d7e8f9a0b",
    "type": "exchange.confirmed",
    "created_at": "2026-11-30T10:15:00Z",
    "data": {"exchange_id": "01937a4e-6d10-7b9a-8e2f-5a7c1d3e9b40", "status": "recorded"},
}
_WEBHOOK: dict[str, Any] = {
    "id": "01937a50-2b3c-7d4e-9f5a-6b7c8d9e0f1a",
    "url": "https://app.example.org/timebank-hooks",
    "events": ["exchange.confirmed", "exchange.rejected"],
    "created_at": "2026-11-30T09:00:00Z",
    "failing_since": None,
    "disabled_at": None,
}
_DELIVERY: dict[str, Any] = {
    "id": "01937a51-3c4d-7e5f-8a6b-7c8d9e0f1a2b",
    "event_id": _EVENT["id"],
    "event_type": "exchange.confirmed",
    "status": "pending",
    "attempts": 1,
    "next_attempt_at": "2026-11-30T10:15:05Z",
    "last_attempt_at": "2026-11-30T10:15:00Z",
    "last_status_code": 500,
    "last_error": "answered 500",
    "created_at": "2026-11-30T10:15:00Z",
}


class EventOut(BaseModel):
    """One change: what happened (``type``), when, and ``data`` — ids and what changed."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [_EVENT]})

    id: uuid.UUID = Field(description="The event's id; also the webhook-id of its deliveries")
    type: str = Field(description="e.g. `exchange.confirmed`, `member.updated` (docs/events.md)")
    created_at: datetime
    data: dict[str, Any] = Field(description="Ids and what changed, never names or balances")


class EventPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [_EVENT], "cursor": "MTI"}]}
    )

    items: list[EventOut]
    cursor: str = Field(
        description="The position after the last item (or where the feed stands, when there "
        "are none): send it as `after` to read on from here. Always present."
    )


class WebhookCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://app.example.org/timebank-hooks",
                    "events": ["exchange.confirmed", "exchange.rejected"],
                }
            ]
        },
    )

    url: str = Field(max_length=2000)
    events: list[str] | None = Field(
        default=None, max_length=20, description="Event types to send (default: every type)"
    )


class WebhookOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [_WEBHOOK]})

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
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{**_WEBHOOK, "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}]
        }
    )

    secret: str = Field(
        description="Signs every delivery (Standard Webhooks). Shown once, never again."
    )


class WebhookList(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [_WEBHOOK]}]})

    items: list[WebhookOut]


class DeliveryOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_DELIVERY]})

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
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [_DELIVERY], "next_cursor": None}]}
    )

    items: list[DeliveryOut]
    next_cursor: str | None
