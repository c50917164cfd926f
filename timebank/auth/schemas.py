from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

from timebank.access import Role
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
    # Not required: a replay of the creating request (``Idempotent-Replayed: true``) leaves it
    # out, so the secret exists in one response only.
    secret: str | SkipJsonSchema[None] = Field(
        default=None,
        description="Shown once; only a hash is stored. Absent from an idempotent replay "
        "(`Idempotent-Replayed: true`).",
    )
