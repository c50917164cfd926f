from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field

from timebank.auth.models import Role
from timebank.bodies import JsonBody


class ApiKeyCreate(JsonBody):
    role: Role
    member_id: uuid.UUID | None = None
    label: str | None = Field(default=None, max_length=200)
    expires_at: datetime | None = None


class GlobalApiKeyCreate(JsonBody):
    """A global admin key, or a funder key over several time banks (their slugs)."""

    role: Role
    timebanks: list[str] | None = Field(default=None, min_length=1, max_length=100)
    label: str | None = Field(default=None, max_length=200)
    expires_at: datetime | None = None


class ApiKeyOut(BaseModel):
    id: uuid.UUID
    prefix: str
    role: Role
    timebank: str | None
    timebanks: list[str] | None = None
    member_id: uuid.UUID | None
    label: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    secret: str = Field(description="Shown once; only a hash is stored.")
