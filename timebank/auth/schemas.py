from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from timebank.access import Role
from timebank.bodies import JsonBody, LeavesOut


class ApiKeyCreate(JsonBody):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "role": "member",
                    "member_id": "01937a4e-58c2-7c3e-9a51-2f0c6f4b8d21",
                    "label": "Alex's phone app",
                }
            ]
        }
    )
    role: Role
    member_id: uuid.UUID | None = None
    label: str | None = Field(default=None, max_length=200)
    expires_at: datetime | None = None


class GlobalApiKeyCreate(JsonBody):
    """A global admin key, or a funder key over several time banks (their slugs)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "role": "funder",
                    "timebanks": ["north-ayrshire", "east-ayrshire"],
                    "label": "Ayrshire health board",
                }
            ]
        }
    )
    role: Role
    timebanks: list[str] | None = Field(default=None, min_length=1, max_length=100)
    label: str | None = Field(default=None, max_length=200)
    expires_at: datetime | None = None


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "01937a40-0000-7000-8000-00000000beef",
                    "prefix": "tbk_3kF9",
                    "role": "member",
                    "timebank": "north-ayrshire",
                    "timebanks": None,
                    "member_id": "01937a4e-58c2-7c3e-9a51-2f0c6f4b8d21",
                    "label": "Alex's phone app",
                    "created_at": "2026-11-02T09:45:00Z",
                    "expires_at": None,
                    "revoked_at": None,
                    "last_used_at": None,
                }
            ]
        }
    )
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
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "01937a40-0000-7000-8000-00000000beef",
                    "prefix": "tbk_3kF9",
                    "role": "member",
                    "timebank": "north-ayrshire",
                    "timebanks": None,
                    "member_id": "01937a4e-58c2-7c3e-9a51-2f0c6f4b8d21",
                    "label": "Alex's phone app",
                    "created_at": "2026-11-02T09:45:00Z",
                    "expires_at": None,
                    "revoked_at": None,
                    "last_used_at": None,
                    "secret": "tbk_3kF9…(shown once)",
                }
            ]
        }
    )
    # Not required: a replay of the creating request (``Idempotent-Replayed: true``) leaves it
    # out, so the secret exists in one response only.
    secret: str | SkipJsonSchema[None] = Field(
        default=None,
        description="Shown once; only a hash is stored. Absent from an idempotent replay "
        "(`Idempotent-Replayed: true`).",
    )


class MeOut(LeavesOut):
    """Who is calling: an API key (or a console user's session), its role and what it may
    reach. Fields that do not apply are left out (not null)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "key",
                    "id": "01937a40-0000-7000-8000-00000000beef",
                    "role": "member",
                    "timebanks": ["north-ayrshire"],
                    "member_id": "01937a4e-58c2-7c3e-9a51-2f0c6f4b8d21",
                    "account_id": "01937a4e-58c2-7c3e-9a51-000000000001",
                }
            ]
        }
    )
    ABSENT_IF_NONE = ("member_id", "account_id")
    type: Literal["key", "user"] = Field(
        description="`key`: an API key; `user`: a console user's session (its cookie)"
    )
    id: uuid.UUID = Field(description="The key's id, or the console user's")
    role: Role
    global_admin: bool = Field(
        default=False, description="An admin over every time bank (then `timebanks` is empty)"
    )
    timebanks: list[str] = Field(
        description="Slugs of the time banks it works in (a funder: those it reports on)"
    )
    member_id: uuid.UUID | SkipJsonSchema[None] = Field(
        default=None, description="Member keys: the member the partner app acts for"
    )
    account_id: uuid.UUID | SkipJsonSchema[None] = Field(
        default=None, description="Member keys: that member's account"
    )
